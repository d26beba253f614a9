package dev.loragateway.bench;

import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cpu.NativeCpu;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Prompt processing ({@code lora-gateway bench pp}): tokens/s of one N-token prefill, one forward
 * step over all N rows of one fresh sequence with logits for the last row only, as llama.cpp's
 * {@code llama-bench -p N} measures it. Each kernel set asked for is measured in the same run,
 * alternating between them so drift on a shared machine hits both alike, and printed as a
 * Markdown table with the ratio to the first.
 *
 * @param tokens  prompt length N
 * @param runs    measured prefills per kernel set; the median is reported
 * @param threads kernel threads
 * @param kernels the kernel sets, e.g. {@code [JAVA, NATIVE]}
 */
public record PrefillBench(int tokens, int runs, int threads, List<CpuBackend.Kernels> kernels) {

    /** The kernel sets this machine can run, Vector API first: {@code java}, and {@code native} where available. */
    public static List<CpuBackend.Kernels> everyAvailable() {
        List<CpuBackend.Kernels> k = new ArrayList<>(List.of(CpuBackend.Kernels.JAVA));
        if (NativeCpu.available()) {
            k.add(CpuBackend.Kernels.NATIVE);
        }
        return k;
    }

    /** Loads the model, warms each kernel set up with one prefill, measures and prints the table. */
    public void run(Path dir) throws IOException {
        LlamaModel llama = LlamaModel.load(dir);
        DecodeBench.printModel(dir, llama, threads);
        System.out.println("CPU kernels: " + NativeCpu.describe());
        int n = kernels.size();
        CpuBackend[] cpus = new CpuBackend[n];
        ForwardPass[] fps = new ForwardPass[n];
        double[][] tps = new double[n][runs];
        try {
            for (int i = 0; i < n; i++) {
                cpus[i] = new CpuBackend(threads, kernels.get(i));
                fps[i] = new ForwardPass(llama, cpus[i]);
                prefill(fps[i], llama, 100 + i); // warm-up: JIT and page cache
            }
            for (int r = 0; r < runs; r++) {
                for (int i = 0; i < n; i++) {
                    tps[i][r] = prefill(fps[i], llama, r);
                }
            }
        } finally {
            for (CpuBackend c : cpus) {
                if (c != null) {
                    c.close();
                }
            }
        }
        double first = 0;
        System.out.println();
        System.out.println("| kernels | pp" + tokens + " tokens/s (median of " + runs + ") | min | max | ratio to " + label(kernels.get(0)) + " |");
        System.out.println("|---|---|---|---|---|");
        for (int i = 0; i < n; i++) {
            double[] t = tps[i].clone();
            Arrays.sort(t);
            double med = t[runs / 2];
            if (i == 0) {
                first = med;
            }
            System.out.printf("| %s | %.1f | %.1f | %.1f | %.2f |%n", label(kernels.get(i)), med, t[0], t[runs - 1], med / first);
        }
    }

    private static String label(CpuBackend.Kernels k) {
        return k == CpuBackend.Kernels.JAVA ? "java (Vector API)" : k == CpuBackend.Kernels.NATIVE ? "native" : "auto";
    }

    /** Tokens/s of one prefill of {@link #tokens} random tokens into a fresh cache. */
    private double prefill(ForwardPass fp, LlamaModel llama, long seed) {
        var cfg = llama.config();
        SplittableRandom r = new SplittableRandom(seed);
        KvCache cache = new KvCache(cfg, tokens + 1);
        StepBatch b = new StepBatch();
        for (int i = 0; i < tokens; i++) {
            b.add(cache, r.nextInt(cfg.vocabSize()), i == tokens - 1);
        }
        float[] logits = new float[cfg.vocabSize()];
        long t0 = System.nanoTime();
        fp.step(b, logits);
        return tokens / ((System.nanoTime() - t0) / 1e9);
    }
}
