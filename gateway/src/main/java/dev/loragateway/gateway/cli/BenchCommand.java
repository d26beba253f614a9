package dev.loragateway.gateway.cli;

import dev.loragateway.gateway.demo.DemoCache;
import dev.loragateway.gateway.LoraBench;
import dev.loragateway.gateway.ConcurrencyBench;

import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cuda.CudaDevice;
import dev.loragateway.kernels.cuda.bench.DecodeBench;
import dev.loragateway.kernels.cuda.bench.GpuBench;
import dev.loragateway.kernels.cuda.bench.GpuBenchConfig;
import dev.loragateway.kernels.cuda.bench.GpuBenchOptions;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code bench}: single-sequence decode speed of the engine in-process, set beside the machine's
 * memory bandwidth measured in the same run. Decode reads every weight once per token, so
 * {@code tokens/s × weight bytes per token} is the bandwidth the forward pass achieves; the
 * reference is a plain large buffer copy (bytes read + bytes written per second).
 *
 * <p>{@code --gpu} runs the GPU bench instead ({@link GpuBench}: SGMV latency, GEMV bandwidth,
 * decode throughput on the CUDA device), with the {@code --gpu-*} options of {@link GpuBenchOptions};
 * without a usable device it exits 2 naming the probe's reason.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
    description = {"Measure single-sequence decode tokens/s and the memory bandwidth it implies, beside a plain copy.",
        "With --adapters N: multi-LoRA step throughput. With --concurrency C,...: the engine under closed-loop clients (TTFT, TPOT, tokens/s, knee).",
        "With --gpu: the CUDA device's tables (SGMV vs gather+bmm, GEMV bandwidth vs a device copy, decode throughput); options --gpu-*; exit 2 without a usable device."})
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", paramLabel = "DIR", description = "Model directory (default: a generated 254M-parameter bf16 Llama, ~508 MB, cached).")
    Path model;

    @Option(names = "--tokens", description = "Tokens decoded per run; with --concurrency, max tokens per request (default: 64; 16 with --concurrency).")
    Integer tokens;

    @Option(names = "--prompt-tokens", description = "Prompt length before decoding; with --concurrency, the mean of a uniform [P/2, 3P/2] (default: 16; 64 with --concurrency).")
    Integer promptTokens;

    @Option(names = "--runs", defaultValue = "3", description = "Measured runs; the median is reported (default: ${DEFAULT-VALUE}).")
    int runs;

    @Option(names = "--threads", description = "Kernel threads (default: one per processor).")
    Integer threads;

    @Option(names = "--copy-mb", defaultValue = "512", description = "Size of the copied buffer for the bandwidth reference (default: ${DEFAULT-VALUE}).")
    int copyMb;

    @Option(names = "--adapters", paramLabel = "N", description = "Multi-LoRA mode: N random adapters; prints base vs mixed vs per-adapter batches. "
        + "With --concurrency: N random adapters, one picked uniformly per request (0: base model only, the default).")
    Integer adapters;

    @Option(names = "--concurrency", paramLabel = "C,...", split = ",",
        description = "Serving mode: closed-loop clients driving the engine at each level in turn (e.g. 1,4,16,32,64); prints TTFT, TPOT, tokens/s and the knee.")
    List<Integer> concurrency;

    @Option(names = "--requests", description = "Serving mode: requests measured per level (default: 2 x concurrency, at least 16 and at most 96).")
    Integer requests;

    @Option(names = "--think-ms", defaultValue = "20", description = "Serving mode: mean exponential think time before each request, ms (default: ${DEFAULT-VALUE}).")
    double thinkMs;

    @Option(names = "--max-batch", defaultValue = "32", description = "Serving mode: most sequences in the engine's running batch, as serve's --max-batch (default: ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--warmup", defaultValue = "4", description = "Serving mode: warm-up requests before measuring, not counted (default: ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--batch", defaultValue = "32", description = "Multi-LoRA mode: rows per decode step (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--rank", defaultValue = "16", description = "Multi-LoRA and serving modes: adapter rank, on all seven projections (default: ${DEFAULT-VALUE}).")
    int rank;

    @Option(names = "--distribution", defaultValue = "distinct",
        description = "Multi-LoRA mode: how rows pick adapters: distinct, uniform, zipf (1.5) or identical (default: ${DEFAULT-VALUE}).")
    String distribution;

    @Option(names = "--steps", defaultValue = "8", description = "Multi-LoRA mode: timed decode steps per measurement (default: ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--gpu", description = "GPU bench on the CUDA device: SGMV latency vs distinct adapters beside BGMV and gather+bmm, "
        + "batch-1 GEMV bandwidth beside a device-to-device copy, decode throughput (needs the CUDA forward pass). "
        + "Exits 2 naming the reason when no CUDA device is usable.")
    boolean gpu;

    @Mixin
    GpuBenchOptions gpuOptions;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (gpu) {
            return gpuBench();
        }
        var gpuOnly = spec.commandLine().getParseResult().matchedOptions().stream()
            .map(o -> o.longestName()).filter(n -> n.startsWith(GpuBenchOptions.PREFIX)).toList();
        if (!gpuOnly.isEmpty()) {
            throw new ParameterException(spec.commandLine(), String.join(", ", gpuOnly)
                + (gpuOnly.size() == 1 ? " applies" : " apply") + " only with --gpu");
        }
        if (concurrency != null) {
            return concurrencyBench();
        }
        if (adapters != null) {
            return loraBench();
        }
        int tokens = this.tokens != null ? this.tokens : 64;
        Path dir = modelDir();
        long rssBefore = rssKb();
        LlamaModel llama = LlamaModel.load(dir);
        int nThreads = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        printModel(dir, llama, nThreads);
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

    /** {@code --gpu}: the GPU bench on this machine's CUDA device, or exit 2 with the probe's reason. */
    private int gpuBench() {
        var cl = spec.commandLine();
        if (concurrency != null || adapters != null || model != null) {
            throw new ParameterException(cl, "--gpu runs the GPU bench alone: drop --concurrency, --adapters and --model "
                + "(its shapes are --gpu-models)");
        }
        GpuBenchConfig config;
        try {
            config = gpuOptions.resolve();
        } catch (IllegalArgumentException e) {
            throw new ParameterException(cl, e.getMessage(), e);
        }
        return GpuBench.run(config, CudaDevice.probe(), DecodeBench.find(), cl.getOut(), cl.getErr());
    }

    private int loraBench() throws Exception {
        if (adapters < 1 || batch < 1 || rank < 1 || steps < 1 || runs < 1) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this),
                "--adapters, --batch, --rank, --steps and --runs must be at least 1");
        }
        LoraBench.rowAdapters(distribution, 1, 1, new SplittableRandom(1)); // validates --distribution
        Path dir = modelDir();
        LlamaModel llama = LlamaModel.load(dir);
        int nThreads = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        printModel(dir, llama, nThreads);
        try (CpuBackend cpu = new CpuBackend(nThreads)) {
            new LoraBench(llama, adapters, batch, rank, distribution, steps, runs).run(cpu);
        }
        return 0;
    }

    /** Serving mode: the engine under closed-loop clients at each {@code --concurrency} level. */
    private int concurrencyBench() throws Exception {
        int[] levels = validateConcurrency();
        int n = adapters != null ? adapters : 0;
        int tokens = this.tokens != null ? this.tokens : 16;
        int prompt = promptTokens != null ? promptTokens : 64;
        Path dir = modelDir();
        if (model != null && !Files.isDirectory(dir)) {
            throw new ParameterException(spec.commandLine(), "--model " + dir + " is not a directory");
        }
        LlamaModel llama;
        try {
            llama = LlamaModel.load(dir);
        } catch (RuntimeException | java.io.IOException e) {
            throw new ParameterException(spec.commandLine(), "cannot load model from " + dir + ": " + e.getMessage());
        }
        int longest = ConcurrencyBench.Workload.maxPrompt(prompt) + tokens;
        if (longest > llama.config().maxPositionEmbeddings()) {
            throw new ParameterException(spec.commandLine(), String.format("the longest prompt (%d) plus --tokens (%d) exceeds the model's %d positions",
                ConcurrencyBench.Workload.maxPrompt(prompt), tokens, llama.config().maxPositionEmbeddings()));
        }
        int nThreads = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        printModel(dir, llama, nThreads);
        new ConcurrencyBench(llama, n, rank, maxBatch, warmup, requests, prompt, tokens, thinkMs)
            .run(new CpuBackend(nThreads), levels); // the engine closes the backend
        return 0;
    }

    /** Checks the serving-mode options; returns the levels in increasing order, without repeats. */
    private int[] validateConcurrency() {
        var cl = spec.commandLine();
        if (concurrency.isEmpty()) {
            throw new ParameterException(cl, "--concurrency needs at least one level, e.g. 1,4,16");
        }
        for (Integer c : concurrency) {
            if (c == null || c < 1) {
                throw new ParameterException(cl, "--concurrency values must be at least 1, got " + c);
            }
        }
        if (adapters != null && adapters < 0) {
            throw new ParameterException(cl, "--adapters must be at least 0 with --concurrency, got " + adapters);
        }
        if (requests != null && requests < 1) {
            throw new ParameterException(cl, "--requests must be at least 1, got " + requests);
        }
        if (tokens != null && tokens < 1) {
            throw new ParameterException(cl, "--tokens must be at least 1, got " + tokens);
        }
        if (promptTokens != null && promptTokens < 1) {
            throw new ParameterException(cl, "--prompt-tokens must be at least 1, got " + promptTokens);
        }
        if (!(thinkMs >= 0) || Double.isInfinite(thinkMs)) {
            throw new ParameterException(cl, "--think-ms must be a finite number >= 0, got " + thinkMs);
        }
        if (rank < 1 || maxBatch < 1) {
            throw new ParameterException(cl, "--rank and --max-batch must be at least 1");
        }
        if (warmup < 0) {
            throw new ParameterException(cl, "--warmup must be at least 0, got " + warmup);
        }
        if (threads != null && threads < 1) {
            throw new ParameterException(cl, "--threads must be at least 1, got " + threads);
        }
        return concurrency.stream().mapToInt(Integer::intValue).sorted().distinct().toArray();
    }

    private Path modelDir() throws java.io.IOException {
        return model != null ? model : DemoCache.get("bench-h1024-l16-bf16",
            new DemoModel.Options(1024, 2816, 16, 16, 8, 32000, DType.BF16, 7L));
    }

    private static void printModel(Path dir, LlamaModel llama, int nThreads) {
        System.out.printf("model %s: %d layers, hidden %d, vocab %d, %s weights %.1f MB; %d threads; Java %s%n", dir,
            llama.config().numLayers(), llama.config().hiddenSize(), llama.config().vocabSize(),
            llama.embedding().dtype(), llama.weightBytes() / 1e6, nThreads, Runtime.version());
    }

    private double decodeRun(ForwardPass fp, LlamaModel llama, int n, long seed) {
        var cfg = llama.config();
        int promptTokens = this.promptTokens != null ? this.promptTokens : 16;
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
