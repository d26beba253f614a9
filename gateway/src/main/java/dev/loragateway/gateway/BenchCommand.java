package dev.loragateway.gateway;

import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.kernels.CpuBackend;
import dev.loragateway.kernels.DType;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code bench}: single-sequence decode speed of the engine in-process, set beside the machine's
 * memory bandwidth measured in the same run. Decode reads every weight once per token, so
 * {@code tokens/s × weight bytes per token} is the bandwidth the forward pass achieves; the
 * reference is a plain large buffer copy (bytes read + bytes written per second).
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
    description = "Measure single-sequence decode tokens/s and the memory bandwidth it implies, beside a plain copy.")
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", paramLabel = "DIR", description = "Model directory (default: a generated 254M-parameter bf16 Llama, ~508 MB, cached).")
    Path model;

    @Option(names = "--tokens", defaultValue = "64", description = "Tokens decoded per run (default: ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--prompt-tokens", defaultValue = "16", description = "Prompt length before decoding (default: ${DEFAULT-VALUE}).")
    int promptTokens;

    @Option(names = "--runs", defaultValue = "3", description = "Measured runs; the median is reported (default: ${DEFAULT-VALUE}).")
    int runs;

    @Option(names = "--threads", description = "Kernel threads (default: one per processor).")
    Integer threads;

    @Option(names = "--copy-mb", defaultValue = "512", description = "Size of the copied buffer for the bandwidth reference (default: ${DEFAULT-VALUE}).")
    int copyMb;

    @Option(names = "--adapters", paramLabel = "N", description = "Multi-LoRA mode: N random adapters; prints base vs mixed vs per-adapter batches.")
    Integer adapters;

    @Option(names = "--batch", defaultValue = "32", description = "Multi-LoRA mode: rows per decode step (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--rank", defaultValue = "16", description = "Multi-LoRA mode: adapter rank, on all seven projections (default: ${DEFAULT-VALUE}).")
    int rank;

    @Option(names = "--distribution", defaultValue = "distinct",
        description = "Multi-LoRA mode: how rows pick adapters: distinct, uniform, zipf (1.5) or identical (default: ${DEFAULT-VALUE}).")
    String distribution;

    @Option(names = "--steps", defaultValue = "8", description = "Multi-LoRA mode: timed decode steps per measurement (default: ${DEFAULT-VALUE}).")
    int steps;

    @Override
    public Integer call() throws Exception {
        if (adapters != null) {
            return loraBench();
        }
        Path dir = model != null ? model : DemoCache.get("bench-h1024-l16-bf16",
            new DemoModel.Options(1024, 2816, 16, 16, 8, 32000, DType.BF16, 7L));
        long rssBefore = rssKb();
        LlamaModel llama = LlamaModel.load(dir);
        int nThreads = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        System.out.printf("model %s: %d layers, hidden %d, vocab %d, %s weights %.1f MB; %d threads; Java %s%n", dir,
            llama.config().numLayers(), llama.config().hiddenSize(), llama.config().vocabSize(),
            llama.embedding().dtype(), llama.weightBytes() / 1e6, nThreads, Runtime.version());
        double[] tps = new double[runs];
        try (CpuBackend cpu = new CpuBackend(nThreads)) {
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
        return 0;
    }

    private int loraBench() throws Exception {
        if (adapters < 1 || batch < 1 || rank < 1 || steps < 1 || runs < 1) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this),
                "--adapters, --batch, --rank, --steps and --runs must be at least 1");
        }
        LoraBench.rowAdapters(distribution, 1, 1, new SplittableRandom(1)); // validates --distribution
        Path dir = model != null ? model : DemoCache.get("bench-h1024-l16-bf16",
            new DemoModel.Options(1024, 2816, 16, 16, 8, 32000, DType.BF16, 7L));
        LlamaModel llama = LlamaModel.load(dir);
        int nThreads = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        System.out.printf("model %s: %d layers, hidden %d, vocab %d, %s weights %.1f MB; %d threads; Java %s%n", dir,
            llama.config().numLayers(), llama.config().hiddenSize(), llama.config().vocabSize(),
            llama.embedding().dtype(), llama.weightBytes() / 1e6, nThreads, Runtime.version());
        try (CpuBackend cpu = new CpuBackend(nThreads)) {
            new LoraBench(llama, adapters, batch, rank, distribution, steps, runs).run(cpu);
        }
        return 0;
    }

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
