package dev.loragateway.bench;

import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.KvBlockPool;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cpu.NativeCpu;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Time to first token of a chat workload with a shared system prompt, prefix caching on against
 * off, in one run ({@code lora-gateway bench prefix}): every request is one tenant's system prompt
 * of {@code systemTokens} tokens, then a user turn of its own ({@code userTokens} random tokens),
 * sent one after the other to the engine; a fresh engine per round, rounds alternating off and on
 * so drift on a shared machine hits both alike. The first request of an "on" round finds nothing
 * cached (it computes the system prompt), the rest reuse it; the table reports both.
 *
 * @param systemTokens the shared prompt's length
 * @param userTokens   each request's own tokens after it
 * @param requests     requests per round
 * @param maxTokens    tokens generated per request
 * @param rounds       rounds per setting
 * @param threads      kernel threads
 * @param kernels      the CPU kernels
 */
public record PrefixCacheBench(int systemTokens, int userTokens, int requests, int maxTokens, int rounds, int threads,
                               CpuBackend.Kernels kernels) {
    private static final int BLOCK = 16;

    public void run(Path dir) throws IOException, Exception {
        LlamaModel llama = LlamaModel.load(dir);
        DecodeBench.printModel(dir, llama, threads);
        System.out.println("CPU kernels: " + NativeCpu.describe());
        int vocab = llama.config().vocabSize();
        SplittableRandom rnd = new SplittableRandom(17);
        int[] system = random(rnd, vocab, systemTokens);
        int[][] users = new int[requests][];
        for (int i = 0; i < requests; i++) {
            users[i] = random(rnd, vocab, userTokens);
        }
        round(llama, false, random(rnd, vocab, systemTokens), users); // warm-up: JIT and page cache, both settings
        round(llama, true, random(rnd, vocab, systemTokens), users);
        double[][] off = new double[rounds][];
        double[][] on = new double[rounds][];
        long hits = 0;
        long queries = 0;
        for (int r = 0; r < rounds; r++) {
            off[r] = round(llama, false, system, users).ttft;
            Result res = round(llama, true, system, users);
            on[r] = res.ttft;
            hits += res.hits;
            queries += res.queries;
        }
        double offFirst = median(column(off, 0, 1));
        double offRest = median(column(off, 1, requests));
        double onFirst = median(column(on, 0, 1));
        double onRest = median(column(on, 1, requests));
        System.out.printf("%nchat workload: a %d-token system prompt, then %d tokens of each request's own; %d requests per round, one "
            + "at a time, %d tokens generated each; %d rounds per setting, alternating%n", systemTokens, userTokens, requests, maxTokens, rounds);
        System.out.println();
        System.out.println("| prefix caching | first request TTFT, ms | later requests TTFT, ms (median) | mean of all, ms |");
        System.out.println("|---|---|---|---|");
        System.out.printf("| off | %.1f | %.1f | %.1f |%n", offFirst, offRest, mean(off));
        System.out.printf("| on | %.1f | %.1f | %.1f |%n", onFirst, onRest, mean(on));
        System.out.printf("%nlater requests: TTFT on / off = %.3f (%.1fx faster); prompt tokens found cached with caching on: %d of %d (%.0f%%)%n",
            onRest / offRest, offRest / onRest, hits, queries, 100.0 * hits / Math.max(1, queries));
    }

    private record Result(double[] ttft, long hits, long queries) {
    }

    /** One fresh engine, the requests one after the other; each one's time to first token in ms. */
    private Result round(LlamaModel llama, boolean caching, int[] system, int[][] users) throws Exception {
        int len = systemTokens + userTokens + maxTokens;
        long kv = KvBlockPool.bytesPerBlock(llama.config(), BLOCK) * (2L * ((len + BLOCK - 1) / BLOCK) + 2);
        Engine.Options o = Engine.Options.builder().maxBatch(1).maxQueued(4).blockSize(BLOCK).kvCacheBytes(kv).maxModelLen(len)
            .prefixCaching(caching).build();
        double[] ttft = new double[users.length];
        try (Engine engine = new Engine(llama, new CpuBackend(threads, kernels), null, o)) {
            for (int i = 0; i < users.length; i++) {
                int[] prompt = Arrays.copyOf(system, system.length + users[i].length);
                System.arraycopy(users[i], 0, prompt, system.length, users[i].length);
                long[] first = {0};
                long t0 = System.nanoTime();
                CompletableFuture<?> f = engine.submit(new Engine.Request(prompt, SamplingParams.greedy(maxTokens), null, "bench",
                    (tok, lp) -> {
                        if (first[0] == 0) {
                            first[0] = System.nanoTime();
                        }
                        return true;
                    }));
                f.get(10, TimeUnit.MINUTES);
                ttft[i] = (first[0] - t0) / 1e6;
            }
            return new Result(ttft, engine.prefixCacheHits(), engine.prefixCacheQueries());
        }
    }

    private static int[] random(SplittableRandom rnd, int vocab, int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = 3 + rnd.nextInt(vocab - 3);
        }
        return t;
    }

    private static double[] column(double[][] rows, int from, int to) {
        return Arrays.stream(rows).flatMapToDouble(r -> Arrays.stream(r, from, to)).toArray();
    }

    private static double median(double[] x) {
        double[] s = x.clone();
        Arrays.sort(s);
        return s.length == 0 ? Double.NaN : s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    private static double mean(double[][] rows) {
        return Arrays.stream(rows).flatMapToDouble(Arrays::stream).average().orElse(Double.NaN);
    }
}
