package dev.loragateway.bench;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.ModelShape;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The serving benchmark: the real {@link Engine} under a closed loop of C clients, for each
 * concurrency level C in turn. Each client waits an exponentially distributed think time, sends a
 * prompt of random length (uniform in [P/2, 3P/2]) for greedy decoding of up to T tokens, on an
 * adapter picked uniformly (or the base model), and waits for the whole answer before its next
 * request. Per level it reports output tokens/s over the level's wall time, time to first token
 * (submit to the first token reaching the sink) and time per output token (first to last token,
 * over tokens − 1) at p50 and p99, and the mean running batch (output tokens per engine step);
 * then the knee, the level past which more concurrency buys little throughput.
 *
 * <p>Only {@link #engine} touches the engine's API; the rest sees a {@link Server}.
 */
public record ConcurrencyBench(LlamaModel model, int adapters, int rank, int maxBatch, int warmup, Integer requests,
                               int promptTokens, int maxTokens, double thinkMs) {
    /** Tokens/s must rise by at least this fraction from one level to the next to pass the knee. */
    static final double MIN_GAIN = 0.10;

    /** What the bench drives: a generation service seen through submit and a step counter. */
    interface Server extends AutoCloseable {
        /**
         * Starts a greedy generation of up to {@code maxTokens} tokens; {@code onToken} runs once
         * per generated token. The future completes after the last token reached {@code onToken}.
         */
        CompletableFuture<?> submit(int[] prompt, int maxTokens, AdapterKey adapter, Runnable onToken);

        /** Forward steps run so far. */
        long steps();

        @Override
        void close();
    }

    /** The single place that builds the {@link Engine} and submits to it. */
    static Server engine(LlamaModel model, CpuBackend cpu, DeviceTier<AdapterKey> adapters, int maxBatch, int maxQueued) {
        Engine engine = new Engine(model, cpu, adapters, maxBatch, maxQueued);
        return new Server() {
            @Override
            public CompletableFuture<?> submit(int[] prompt, int maxTokens, AdapterKey adapter, Runnable onToken) {
                return engine.submit(new Engine.Request(prompt, SamplingParams.greedy(maxTokens), adapter, (token, logprobs) -> {
                    onToken.run();
                    return true;
                }));
            }

            @Override
            public long steps() {
                return engine.steps();
            }

            @Override
            public void close() {
                engine.close(); // also closes the CPU backend
            }
        };
    }

    /**
     * What every client sends.
     *
     * @param promptTokens mean prompt length P; lengths are uniform in [P/2, 3P/2] (at least 1)
     * @param maxTokens    tokens to generate per request (fewer if the model emits EOS)
     * @param thinkMs      mean of the exponential wait before each request (0: none)
     * @param vocab        prompt token ids are uniform in [0, vocab)
     * @param adapters     adapter keys picked uniformly per request; empty for the base model
     */
    public record Workload(int promptTokens, int maxTokens, double thinkMs, int vocab, List<AdapterKey> adapters) {
        static int minPrompt(int p) {
            return Math.max(1, p / 2);
        }

        public static int maxPrompt(int p) {
            return Math.max(minPrompt(p), p * 3 / 2);
        }

        int[] prompt(SplittableRandom r) {
            int[] p = new int[r.nextInt(minPrompt(promptTokens), maxPrompt(promptTokens) + 1)];
            for (int i = 0; i < p.length; i++) {
                p[i] = r.nextInt(vocab);
            }
            return p;
        }

        AdapterKey adapter(SplittableRandom r) {
            return adapters.isEmpty() ? null : adapters.get(r.nextInt(adapters.size()));
        }

        long thinkNanos(SplittableRandom r) {
            return thinkMs <= 0 ? 0 : (long) (-Math.log(1 - r.nextDouble()) * thinkMs * 1e6);
        }
    }

    /** One request's clock readings; written by the token callback, read after its future completed. */
    static final class Timing {
        final long submitted = System.nanoTime();
        long first;
        long last;
        int tokens;

        void token() {
            long now = System.nanoTime();
            if (tokens++ == 0) {
                first = now;
            }
            last = now;
        }

        double ttftMs() {
            return (first - submitted) / 1e6;
        }

        /** Mean gap between output tokens, or NaN with fewer than two tokens. */
        double tpotMs() {
            return tokens < 2 ? Double.NaN : (last - first) / 1e6 / (tokens - 1);
        }
    }

    /** One level's figures. */
    record Level(int concurrency, int requests, long tokens, double wallS, double tokensPerS,
                 double ttftP50, double ttftP99, double tpotP50, double tpotP99, double meanBatch) {
        String row() {
            return String.format("| %d | %d | %.1f | %s | %s | %s | %s | %s | %.1f |", concurrency, requests, tokensPerS,
                fmt("%.0f", ttftP50), fmt("%.0f", ttftP99), fmt("%.1f", tpotP50), fmt("%.1f", tpotP99), fmt("%.1f", meanBatch), wallS);
        }

        /** NaN (no sample: e.g. TPOT of one-token requests) prints as "-". */
        private static String fmt(String format, double v) {
            return Double.isNaN(v) ? "-" : String.format(format, v);
        }
    }

    static final String HEADER = "| concurrency | requests | output tokens/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms"
        + " | mean batch | wall s |\n|---|---|---|---|---|---|---|---|---|";

    /** Runs {@code requests} requests from {@code clients} closed-loop clients and measures them. */
    static Level runLevel(Server server, int clients, int requests, Workload w, long seed) throws InterruptedException {
        AtomicInteger issued = new AtomicInteger();
        List<Timing> done = Collections.synchronizedList(new ArrayList<>());
        SplittableRandom master = new SplittableRandom(seed);
        ExecutorService pool = Executors.newFixedThreadPool(clients, r -> {
            Thread t = new Thread(r, "bench-client");
            t.setDaemon(true);
            return t;
        });
        long steps0 = server.steps();
        long t0 = System.nanoTime();
        try {
            List<Future<?>> futures = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                SplittableRandom r = master.split();
                futures.add(pool.submit(() -> {
                    while (issued.getAndIncrement() < requests) {
                        TimeUnit.NANOSECONDS.sleep(w.thinkNanos(r));
                        int[] prompt = w.prompt(r);
                        AdapterKey adapter = w.adapter(r);
                        Timing t = new Timing();
                        server.submit(prompt, w.maxTokens(), adapter, t::token).get();
                        done.add(t);
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() instanceof ExecutionException ee && ee.getCause() != null ? ee.getCause() : e.getCause();
            throw new IllegalStateException("a request at concurrency " + clients + " failed: " + cause, cause);
        } finally {
            pool.shutdownNow();
        }
        double wall = (System.nanoTime() - t0) / 1e9;
        long steps = server.steps() - steps0;
        return summarize(clients, done, wall, steps);
    }

    static Level summarize(int clients, List<Timing> done, double wallS, long steps) {
        double[] ttft = new double[done.size()];
        List<Double> tpot = new ArrayList<>();
        long tokens = 0;
        for (int i = 0; i < done.size(); i++) {
            Timing t = done.get(i);
            tokens += t.tokens;
            ttft[i] = t.tokens > 0 ? t.ttftMs() : Double.NaN;
            if (t.tokens >= 2) {
                tpot.add(t.tpotMs());
            }
        }
        double[] tp = tpot.stream().mapToDouble(Double::doubleValue).toArray();
        return new Level(clients, done.size(), tokens, wallS, tokens / wallS,
            percentile(ttft, 50), percentile(ttft, 99), percentile(tp, 50), percentile(tp, 99),
            steps > 0 ? (double) tokens / steps : Double.NaN);
    }

    /**
     * The nearest-rank percentile: the smallest value with at least {@code p}% of the values at or
     * below it. NaNs are ignored; NaN when no value is left.
     */
    static double percentile(double[] values, double p) {
        if (!(p > 0 && p <= 100)) {
            throw new IllegalArgumentException("percentile must be in (0, 100], got " + p);
        }
        double[] v = java.util.Arrays.stream(values).filter(x -> !Double.isNaN(x)).sorted().toArray();
        if (v.length == 0) {
            return Double.NaN;
        }
        int rank = (int) Math.ceil(p / 100 * v.length - 1e-9);
        return v[Math.max(0, Math.min(v.length, rank) - 1)];
    }

    /**
     * The knee of a series of levels in increasing concurrency: the first level i such that going
     * to level i+1 raises tokens/s by less than {@link #MIN_GAIN}; past it, more concurrency only
     * adds queueing. The p99 TPOT growth of that step is reported beside it (what the extra
     * concurrency costs in latency), not used to place it: on a CPU, where a bigger batch step is
     * compute bound, TPOT grows with every level. {@code index} is −1 when no step qualifies (then
     * gain and growth describe the last step) and when there are fewer than two levels.
     */
    record Knee(int index, double gain, double tpotGrowth) {
    }

    static Knee knee(double[] tokensPerS, double[] p99Tpot) {
        if (tokensPerS.length != p99Tpot.length) {
            throw new IllegalArgumentException("series of different lengths");
        }
        double gain = Double.NaN;
        double growth = Double.NaN;
        for (int i = 0; i + 1 < tokensPerS.length; i++) {
            gain = tokensPerS[i + 1] / tokensPerS[i] - 1;
            growth = p99Tpot[i] > 0 ? p99Tpot[i + 1] / p99Tpot[i] : Double.NaN;
            if (gain < MIN_GAIN) {
                return new Knee(i, gain, growth);
            }
        }
        return new Knee(-1, gain, growth);
    }

    /** The knee as one line, e.g. {@code knee: concurrency 16 (tokens/s +6% from 16 to 32 while p99 TPOT x2.1)}. */
    static String describeKnee(int[] concurrency, Knee k) {
        if (concurrency.length < 2) {
            return "knee: needs at least two concurrency levels";
        }
        int i = k.index() >= 0 ? k.index() : concurrency.length - 2;
        String step = String.format("tokens/s %+.0f%% from %d to %d while p99 TPOT %s", 100 * k.gain(), concurrency[i], concurrency[i + 1],
            Double.isNaN(k.tpotGrowth()) ? "n/a" : String.format("x%.1f", k.tpotGrowth()));
        if (k.index() < 0) {
            return "knee: not reached up to concurrency " + concurrency[concurrency.length - 1] + " (" + step + ")";
        }
        return "knee: concurrency " + concurrency[i] + " (" + step + ")";
    }

    // ---- the run ----------------------------------------------------------------------------

    /**
     * Requests measured at concurrency {@code c}: {@code --requests}, else 2c within [16, 96] (at
     * least 16 samples for the percentiles; at most 96 so that high levels stay within a minute or
     * so on a 2-core machine with the default model).
     */
    static int requestsFor(Integer requests, int c) {
        return requests != null ? requests : Math.max(16, Math.min(2 * c, 96));
    }

    public void run(CpuBackend cpu, int[] levels) throws InterruptedException {
        List<AdapterKey> keys = new ArrayList<>();
        for (int i = 0; i < adapters; i++) {
            keys.add(AdapterKey.system("bench-lora-" + i));
        }
        Workload w = new Workload(promptTokens, maxTokens, thinkMs, model.config().vocabSize(), keys);
        DeviceTier<AdapterKey> tier = adapters > 0 ? adapterTier(keys) : null;
        int top = levels[levels.length - 1];
        System.out.printf("%s; max batch %d; prompts %d..%d tokens (uniform), max_tokens %d (greedy; EOS may end one early); "
                + "think time exponential, mean %.0f ms; requests per level: %s; closed loop, levels in increasing order%n",
            adapters > 0 ? String.format("%d adapters of rank %d on all 7 projections (%s), one picked uniformly per request",
                adapters, rank, model.embedding().dtype() == DType.BF16 ? "bf16" : "float32") : "base model only (no adapters)",
            maxBatch, Workload.minPrompt(w.promptTokens()), Workload.maxPrompt(w.promptTokens()), w.maxTokens(), w.thinkMs(),
            requests != null ? String.valueOf(requests) : "2 x concurrency within [16, 96]");
        try (Server server = engine(model, cpu, tier, maxBatch, 2 * top + warmup + 16)) {
            if (tier != null) {
                preload(tier, keys);
            }
            if (warmup > 0) {
                Level wu = runLevel(server, Math.min(4, top), warmup, w, 99);
                System.out.printf("warm-up: %d requests at concurrency %d in %.1f s (not counted)%n", warmup, Math.min(4, top), wu.wallS());
            }
            List<Level> results = new ArrayList<>();
            System.out.println();
            System.out.println(HEADER);
            for (int i = 0; i < levels.length; i++) {
                Level l = runLevel(server, levels[i], requestsFor(requests, levels[i]), w, 1000L + i);
                results.add(l);
                System.out.println(l.row());
                System.out.flush();
            }
            System.out.println();
            Knee k = knee(results.stream().mapToDouble(Level::tokensPerS).toArray(),
                results.stream().mapToDouble(Level::tpotP99).toArray());
            System.out.println(describeKnee(levels, k));
        }
    }

    /** A device tier as {@code serve} builds one, over random adapters generated on a host-tier miss. */
    private DeviceTier<AdapterKey> adapterTier(List<AdapterKey> keys) {
        ModelShape shape = model.config().shape();
        boolean bf16 = model.embedding().dtype() == DType.BF16;
        long heap = Runtime.getRuntime().maxMemory();
        return new AdapterTiers(shape, keys.size(), heap / 4, heap / 8, key -> {
            int index = keys.indexOf(key);
            if (index < 0) {
                throw new IllegalArgumentException("no bench adapter " + key);
            }
            return LoraBench.randomAdapter(shape, rank, bf16, new SplittableRandom(1000L + index));
        }, AdapterTiers.loaderThread()).device();
    }

    /** Loads every adapter into a slot before timing starts (as far as the slot budget allows). */
    private static void preload(DeviceTier<AdapterKey> tier, List<AdapterKey> keys) throws InterruptedException {
        long t0 = System.nanoTime();
        keys.forEach(tier::prefetch);
        long lastChange = t0;
        int seen = -1;
        // all resident, or none added for 10 s (the slot budget is full; the rest load on demand)
        while (tier.residentCount() < keys.size() && System.nanoTime() - lastChange < TimeUnit.SECONDS.toNanos(10)) {
            int now = tier.residentCount();
            if (now != seen) {
                seen = now;
                lastChange = System.nanoTime();
            }
            Thread.sleep(10);
        }
        System.out.printf("adapters: %d of %d resident in slots (%.1f MB of a %.0f MB budget), loaded in %.1f s%n",
            tier.residentCount(), keys.size(), tier.usedBytes() / 1e6, tier.byteBudget() / 1e6, (System.nanoTime() - t0) / 1e9);
    }
}
