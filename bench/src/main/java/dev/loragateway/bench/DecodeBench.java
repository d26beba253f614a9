package dev.loragateway.bench;

import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Single-sequence decode speed of the CPU forward pass, set beside the machine's memory bandwidth
 * measured in the same run ({@code lora-gateway bench decode}). Decode reads every weight once per
 * token, so {@code tokens/s × weight bytes per token} is the bandwidth the forward pass achieves;
 * the reference is a plain large buffer copy (bytes read + bytes written per second). Prints a
 * Markdown table to standard output.
 *
 * @param tokens       tokens decoded per measured run
 * @param promptTokens random prompt tokens prefilled before each run
 * @param runs         measured runs; the median is reported
 * @param threads      kernel threads
 * @param copyMb       size of the copied buffer for the bandwidth reference
 */
public record DecodeBench(int tokens, int promptTokens, int runs, int threads, int copyMb) {

    /** Loads the model in {@code dir}, decodes a warm-up and {@link #runs} runs, copies, and prints the table. */
    public void run(Path dir) throws IOException {
        long rssBefore = rssKb();
        LlamaModel llama = LlamaModel.load(dir);
        printModel(dir, llama, threads);
        double[] tps = new double[runs];
        try (CpuBackend cpu = new CpuBackend(threads)) {
            ForwardPass fp = new ForwardPass(llama, cpu);
            decodeRun(fp, llama, Math.min(tokens, 16), 1); // warm-up: JIT and page cache
            for (int i = 0; i < runs; i++) {
                tps[i] = decodeRun(fp, llama, tokens, i + 2);
            }
        }
        Arrays.sort(tps);
        double decode = tps[runs / 2];
        double bytesPerToken = llama.bytesPerToken();
        double achieved = decode * bytesPerToken / 1e9;
        double copy = copyBandwidth(copyMb);
        System.gc();
        Runtime rt = Runtime.getRuntime();
        long heapMb = (rt.totalMemory() - rt.freeMemory()) >> 20;
        System.out.println();
        System.out.println("| measure | value |");
        System.out.println("|---|---|");
        System.out.printf("| decode, one sequence (median of %d runs x %d tokens) | %.2f tokens/s |%n", runs, tokens, decode);
        System.out.printf("| weight bytes read per token | %.1f MB |%n", bytesPerToken / 1e6);
        System.out.printf("| implied weight bandwidth | %.2f GB/s |%n", achieved);
        System.out.printf("| plain copy of %d MB (read + write) | %.2f GB/s |%n", copyMb, copy);
        System.out.printf("| ratio decode / copy | %.2f |%n", achieved / copy);
        System.out.printf("| Java heap used after the run | %d MB (max %d MB) |%n", heapMb, rt.maxMemory() >> 20);
        System.out.printf("| process RSS (before load -> after run) | %d MB -> %d MB (weights are mapped, so RSS counts the file pages read) |%n",
            rssBefore >> 10, rssKb() >> 10);
    }

    /** The line every CPU bench prints first: the model, its weights, the threads and the Java version. */
    public static void printModel(Path dir, LlamaModel llama, int nThreads) {
        System.out.printf("model %s: %d layers, hidden %d, vocab %d, %s weights %.1f MB; %d threads; Java %s%n", dir,
            llama.config().numLayers(), llama.config().hiddenSize(), llama.config().vocabSize(),
            llama.embedding().dtype(), llama.weightBytes() / 1e6, nThreads, Runtime.version());
    }

    /** Tokens/s of {@code n} greedy decode steps after a random prompt of {@link #promptTokens}. */
    private double decodeRun(ForwardPass fp, LlamaModel llama, int n, long seed) {
        var cfg = llama.config();
        SplittableRandom r = new SplittableRandom(seed);
        KvCache cache = new KvCache(cfg, promptTokens + n + 1);
        StepBatch b = new StepBatch();
        for (int i = 0; i < promptTokens; i++) {
            b.add(cache, r.nextInt(cfg.vocabSize()), i == promptTokens - 1);
        }
        float[] logits = new float[cfg.vocabSize()];
        fp.step(b, logits);
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            int next = argmax(logits);
            b.clear();
            b.add(cache, next, true);
            fp.step(b, logits);
        }
        return n / ((System.nanoTime() - t0) / 1e9);
    }

    private static int argmax(float[] l) {
        int best = 0;
        for (int i = 1; i < l.length; i++) {
            if (l[i] > l[best]) {
                best = i;
            }
        }
        return best;
    }

    /** Best of five copies of an {@code mb}-MB direct buffer, counted as bytes read + bytes written per second. */
    static double copyBandwidth(int mb) {
        int size = mb << 20;
        ByteBuffer src = ByteBuffer.allocateDirect(size);
        ByteBuffer dst = ByteBuffer.allocateDirect(size);
        for (int i = 0; i < size; i += 4096) {
            src.put(i, (byte) i);
            dst.put(i, (byte) 1);
        }
        double best = 0;
        for (int i = 0; i < 5; i++) {
            src.clear();
            dst.clear();
            long t0 = System.nanoTime();
            dst.put(src);
            double s = (System.nanoTime() - t0) / 1e9;
            best = Math.max(best, 2.0 * size / s / 1e9);
        }
        return best;
    }

    private static long rssKb() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (Exception e) {
            return -1;
        }
        return -1;
    }
}
