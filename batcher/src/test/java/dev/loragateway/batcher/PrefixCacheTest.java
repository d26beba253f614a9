package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cpu.NativeCpu;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * Automatic prefix caching: the block bookkeeping ({@link PrefixIndex} in a {@link KvBlockPool}),
 * and the engine's outputs with caching on against caching off: identical, bit for bit, on the
 * batch-invariant native kernels, also under preemption and forks ({@code n > 1}); never a block
 * of one tenant or adapter served to another; never a block computed with an adapter's old
 * weights served after it was replaced.
 */
class PrefixCacheTest {
    static final int BS = 16;
    static final ExecutorService loader = Executors.newSingleThreadExecutor();

    @AfterAll
    static void stop() {
        loader.shutdownNow();
    }

    // ---- bookkeeping --------------------------------------------------------------------------

    private static final ModelConfig SMALL = RandomModels.config(8, 16, 1, 2, 1, 50);

    private static KvBlockPool cachingPool(int blocks) {
        KvBlockPool pool = new KvBlockPool(SMALL, blocks, 4, false);
        pool.enablePrefixCaching();
        return pool;
    }

    /** A cache of {@code tokens} computed (written and advanced) and its full blocks registered. */
    private static KvCache computed(KvBlockPool pool, String salt, int[] tokens) {
        KvCache c = KvCache.matching(pool, salt, tokens, tokens.length);
        c.ensureCapacity(tokens.length);
        c.advance(tokens.length - c.length());
        c.register(tokens);
        return c;
    }

    private static int[] seq(int... t) {
        return t;
    }

    @Test
    void fullBlocksMatchOnlyUnderTheirSaltAndTheWholeChainBeforeThem() {
        KvBlockPool pool = cachingPool(32);
        int[] a = seq(5, 6, 7, 8, 9, 10, 11, 12, 13, 14); // blocks of 4: two full ones, then 2 positions
        KvCache first = computed(pool, "t1", a);
        int[] table = Arrays.copyOf(first.table(), first.blocks());
        assertEquals(2, pool.cachedKeys(), "only full blocks are keyed");

        KvCache same = KvCache.matching(pool, "t1", a, a.length);
        assertEquals(8, same.length(), "the two full blocks are reused");
        assertEquals(table[0], same.table()[0]);
        assertEquals(table[1], same.table()[1]);
        same.release();

        // the whole prompt cached: its last token is still computed (its logits are needed)
        int[] eight = Arrays.copyOf(a, 8);
        KvCache whole = KvCache.matching(pool, "t1", eight, 8);
        assertEquals(4, whole.length(), "a prompt of exactly two cached blocks reuses one and computes the last block");
        whole.release();

        assertEquals(0, KvCache.matching(pool, "t2", a, a.length).length(), "another salt (tenant or adapter) matches nothing");
        // the second block's tokens after a different first block: the chain differs
        int[] other = seq(99, 6, 7, 8, 9, 10, 11, 12, 13);
        assertEquals(0, KvCache.matching(pool, "t1", other, other.length).length());
        int[] branch = seq(5, 6, 7, 8, 40, 41, 42, 43, 44);
        KvCache b = KvCache.matching(pool, "t1", branch, branch.length);
        assertEquals(4, b.length(), "a shared first block, then a different one");
        first.release();
        b.release();
        assertEquals(0, pool.used());
        assertEquals(32, pool.free(), "cached blocks count as free");
        assertEquals(2, pool.cachedFree());
    }

    @Test
    void cachedBlocksAreTakenLeastRecentlyReleasedFirstOnlyWhenNothingElseIsFree() {
        KvBlockPool pool = cachingPool(6);
        int[] p = seq(1, 2, 3, 4, 5);
        int[] q = seq(9, 9, 9, 9, 1);
        computed(pool, "s", p).release(); // its first block cached
        computed(pool, "s", q).release(); // released later: more recently used
        assertEquals(2, pool.cachedFree());
        assertEquals(6, pool.free());
        // four never-cached blocks go first
        KvCache big = new KvCache(pool);
        big.ensureCapacity(16);
        assertEquals(2, pool.cachedFree(), "no cached block taken while others are free");
        KvCache hit = KvCache.matching(pool, "s", p, p.length);
        assertEquals(4, hit.length());
        hit.release();
        // matched and released again: p's block is now the most recent; q's goes first
        KvCache one = new KvCache(pool);
        one.ensureCapacity(4);
        assertEquals(0, KvCache.matching(pool, "s", q, q.length).length(), "q's block was evicted first");
        KvCache pm = KvCache.matching(pool, "s", p, p.length);
        assertEquals(4, pm.length(), "p's block, used more recently, is still cached");
        pm.release();
        big.release();
        one.release();
        assertEquals(0, pool.used());
    }

    @Test
    void aReleasedSequenceGivesUpItsLastBlocksFirstSoItsPrefixStaysMatchable() {
        KvBlockPool pool = cachingPool(3);
        int[] p = seq(1, 2, 3, 4, 5, 6, 7, 8, 9);
        computed(pool, "s", p).release(); // blocks 0 and 1 of p cached (released last to first), the partial third freed
        KvCache fill = new KvCache(pool);
        fill.ensureCapacity(8); // the free block, then the least recently released cached one: p's second
        assertEquals(1, pool.cachedFree());
        fill.release();
        assertEquals(4, KvCache.matching(pool, "s", p, p.length).length(), "p's first block is still cached");
    }

    @Test
    void keysChainedOffAnEvictedBlockNeverMatchAgain() {
        PrefixIndex index = new PrefixIndex(4);
        long id0 = index.register(0, new PrefixIndex.Key("s", PrefixIndex.ROOT, seq(1, 2)));
        long id1 = index.register(1, new PrefixIndex.Key("s", id0, seq(3, 4)));
        assertEquals(id0, index.register(2, new PrefixIndex.Key("s", PrefixIndex.ROOT, seq(1, 2))), "a duplicate takes the existing id");
        assertTrue(!index.hasKey(2));
        index.park(0);
        index.park(1);
        assertEquals(0, index.evict(), "least recently parked first");
        // block 0 now holds other content; the same first tokens computed again get a new id
        long again = index.register(3, new PrefixIndex.Key("s", PrefixIndex.ROOT, seq(1, 2)));
        assertTrue(again != id0);
        assertEquals(-1, index.lookup(new PrefixIndex.Key("s", again, seq(3, 4))), "a key chained off the evicted block matched");
        assertEquals(1, index.lookup(new PrefixIndex.Key("s", id0, seq(3, 4))), "(reachable only through the old id, which no lookup has)");
        assertEquals(id1, index.id(1));
    }

    @Test
    void randomUseKeepsEveryBlockAccountedFor() {
        Random rnd = new Random(3);
        KvBlockPool pool = cachingPool(40);
        List<KvCache> held = new ArrayList<>();
        int[][] prefixes = {seq(1, 2, 3, 4, 5, 6, 7, 8), seq(1, 2, 3, 4, 9, 9, 9, 9), seq(7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7)};
        for (int i = 0; i < 3000; i++) {
            int op = rnd.nextInt(10);
            if (op < 5 && pool.free() >= 6) {
                int[] pre = prefixes[rnd.nextInt(prefixes.length)];
                int[] t = Arrays.copyOf(pre, pre.length + rnd.nextInt(9));
                for (int j = pre.length; j < t.length; j++) {
                    t[j] = rnd.nextInt(4);
                }
                String salt = "s" + rnd.nextInt(2);
                KvCache c = computed(pool, salt, t);
                held.add(c);
                if (rnd.nextInt(4) == 0 && pool.free() >= 3) {
                    KvCache f = c.fork();
                    f.ensureCapacity(f.length() + 1 + rnd.nextInt(6));
                    held.add(f);
                }
            } else if (!held.isEmpty()) {
                held.remove(rnd.nextInt(held.size())).release();
            }
            int refs = 0;
            for (int b = 0; b < pool.total(); b++) {
                refs += pool.refs(b) > 0 ? 1 : 0;
            }
            assertEquals(refs, pool.used(), "held blocks at operation " + i);
            assertTrue(pool.cachedFree() <= pool.cachedKeys());
        }
        held.forEach(KvCache::release);
        assertEquals(0, pool.used());
        assertEquals(40, pool.free());
    }

    // ---- the engine ---------------------------------------------------------------------------

    /** One request of a workload: whose, which adapter (null: base), its prompt, its choices' sampling. */
    record Job(String tenant, String adapter, int[] prompt, int n, SamplingParams params) {
    }

    /** Each choice's tokens and, per token, its log-probability then its top log-probabilities. */
    record Out(List<int[]> tokens, List<List<float[]>> logprobs) {
    }

    /** A bf16 model with bf16 adapters (every GEMM native where the CPU has AVX-512 BF16). */
    static final class Setup {
        final ModelConfig cfg = RandomModels.config(48, 88, 3, 4, 2, 131);
        final LlamaModel model;
        final Map<AdapterKey, LoraAdapter> disk = new ConcurrentHashMap<>();
        final List<LoraAdapter> adapters;

        Setup(long seed) {
            Random rnd = new Random(seed);
            Map<String, float[]> base = RandomModels.weights(cfg, rnd, DType.BF16);
            model = RandomModels.model(cfg, base, DType.BF16);
            adapters = RandomModels.mixedAdapters(cfg.shape(), rnd);
            adapters.forEach(RandomModels::roundToBf16);
            for (LoraAdapter a : adapters) {
                disk.put(AdapterKey.system(a.name()), a);
            }
        }

        DeviceTier<AdapterKey> tier() {
            return new AdapterTiers(cfg.shape(), 4, Long.MAX_VALUE, 1 << 24, k -> {
                LoraAdapter a = disk.get(k);
                if (a == null) {
                    throw new IllegalArgumentException("no adapter named " + k.name());
                }
                return a;
            }, loader).device();
        }

        Engine engine(CpuBackend.Kernels kernels, boolean caching, int kvBlocks, DeviceTier<AdapterKey> tier) {
            Engine.Options o = Engine.Options.builder().maxBatch(8).maxQueued(200).blockSize(BS).maxStepTokens(64)
                .kvCacheBytes(KvBlockPool.bytesPerBlock(cfg, BS) * kvBlocks).prefixCaching(caching).build();
            return new Engine(model, new CpuBackend(2, kernels), tier, o);
        }
    }

    /** Runs {@code waves} one after the other (each wave's requests at once) and returns every request's choices. */
    static List<Out> run(Engine engine, List<List<Job>> waves) throws Exception {
        List<List<List<Integer>>> tokens = new ArrayList<>();
        List<Out> outs = new ArrayList<>();
        for (List<Job> wave : waves) {
            List<CompletableFuture<Generator.Finish>> futures = new ArrayList<>();
            for (Job j : wave) {
                List<List<Integer>> ts = new ArrayList<>();
                List<List<float[]>> lps = new ArrayList<>();
                List<Engine.Choice> choices = new ArrayList<>();
                for (int c = 0; c < j.n(); c++) {
                    List<Integer> t = new ArrayList<>();
                    List<float[]> l = new ArrayList<>();
                    ts.add(t);
                    lps.add(l);
                    SamplingParams p = j.params();
                    choices.add(new Engine.Choice(new SamplingParams(p.temperature(), p.topP(), p.seed() + c, p.maxTokens(), 3, p.controls()),
                        (tok, lp) -> {
                            t.add(tok);
                            float[] row = new float[1 + lp.topLogprobs().length];
                            row[0] = lp.logprob();
                            System.arraycopy(lp.topLogprobs(), 0, row, 1, lp.topLogprobs().length);
                            l.add(row);
                            return true;
                        }));
                }
                AdapterKey key = j.adapter() == null ? null : AdapterKey.system(j.adapter());
                futures.addAll(engine.submitForks(j.prompt(), key, j.tenant(), choices));
                tokens.add(ts);
                outs.add(new Out(new ArrayList<>(), lps));
            }
            for (CompletableFuture<Generator.Finish> f : futures) {
                f.get(120, TimeUnit.SECONDS);
            }
        }
        for (int r = 0; r < outs.size(); r++) { // the sinks ran on the engine thread; every request is done now
            for (List<Integer> t : tokens.get(r)) {
                outs.get(r).tokens().add(t.stream().mapToInt(Integer::intValue).toArray());
            }
        }
        return outs;
    }

    /** Shared system prompts, per tenant and adapter, each request with its own question after it; some prompts repeated whole. */
    static List<List<Job>> chatWorkload(Random rnd, int vocab, List<String> adapterNames) {
        int[][] systems = new int[3][];
        for (int i = 0; i < systems.length; i++) {
            systems[i] = tokens(rnd, vocab, 37 + 15 * i); // 37, 52, 67 tokens: full blocks and a partial one
        }
        int[] exact = tokens(rnd, vocab, 2 * BS); // a prompt of exactly two blocks, sent again whole
        List<List<Job>> waves = new ArrayList<>();
        for (int w = 0; w < 3; w++) {
            List<Job> wave = new ArrayList<>();
            for (int i = 0; i < 7; i++) {
                int which = (i + w) % systems.length; // each system prompt belongs to one tenant and adapter
                String tenant = which == 2 ? "globex" : "acme";
                String adapter = i % 4 == 3 ? null : adapterNames.get(which);
                int[] sys = systems[which];
                int[] q = tokens(rnd, vocab, 1 + rnd.nextInt(12));
                int[] prompt = Arrays.copyOf(sys, sys.length + q.length);
                System.arraycopy(q, 0, prompt, sys.length, q.length);
                wave.add(new Job(tenant, adapter, prompt, i == 1 ? 3 : 1, new SamplingParams(0.8, 0.95, 100L * w + i, 14, 3)));
            }
            wave.add(new Job("acme", adapterNames.get(0), exact, 1, new SamplingParams(0, 1, 0, 6, 3)));
            waves.add(wave);
        }
        // pressure: 8 sequences of 20 + 44 positions (4 blocks each, 32 in all) outgrow a pool of 30 blocks
        // whatever the cache holds, so the newest is preempted, recomputed, and finds its own blocks cached
        SamplingParams.Controls noEos = new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1, 0, 0, 0, true, new int[0], 0);
        List<Job> pressure = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            pressure.add(new Job(i % 2 == 0 ? "acme" : "globex", null, tokens(rnd, vocab, 20), 1,
                new SamplingParams(0.8, 1, 500L + i, 44, 3, noEos)));
        }
        waves.add(pressure);
        return waves;
    }

    static int[] tokens(Random rnd, int vocab, int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = 3 + rnd.nextInt(vocab - 3);
        }
        return t;
    }

    static void assertSameOutputs(List<Out> expected, List<Out> got, String what) {
        assertEquals(expected.size(), got.size());
        for (int r = 0; r < expected.size(); r++) {
            for (int c = 0; c < expected.get(r).tokens().size(); c++) {
                String where = what + ", request " + r + " choice " + c;
                assertArrayEquals(expected.get(r).tokens().get(c), got.get(r).tokens().get(c), where + ": tokens");
                List<float[]> x = expected.get(r).logprobs().get(c);
                List<float[]> y = got.get(r).logprobs().get(c);
                for (int k = 0; k < x.size(); k++) {
                    assertArrayEquals(x.get(k), y.get(k), where + ", token " + k + ": log-probabilities");
                }
            }
        }
    }

    /**
     * The core invariant with caching on: on the native kernels (each row computed the same way in
     * any batch), a chat workload of shared system prompts over two tenants, three adapters and the
     * base model, with forks and a KV pool small enough to preempt, gives the very bits it gives with
     * caching off, while most of its prompt tokens come from the cache.
     */
    @Test
    void cachingChangesNoBitOfTheOutputsAlsoUnderPreemptionAndForks() throws Exception {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Setup s = new Setup(21);
        List<String> names = List.of(s.adapters.get(1).name(), s.adapters.get(2).name(), s.adapters.get(5).name());
        List<List<Job>> waves = chatWorkload(new Random(8), s.cfg.vocabSize(), names);
        List<Out> off;
        long offPreempted;
        try (Engine e = s.engine(CpuBackend.Kernels.NATIVE, false, 30, s.tier())) {
            off = run(e, waves);
            offPreempted = e.preemptions();
            assertEquals(0, e.prefixCacheQueries());
        }
        DeviceTier<AdapterKey> tier = s.tier();
        try (Engine e = s.engine(CpuBackend.Kernels.NATIVE, true, 30, tier)) {
            List<Out> on = run(e, waves);
            assertSameOutputs(off, on, "caching on vs off");
            assertTrue(offPreempted > 0 && e.preemptions() > 0, "the pool was meant to run dry: preemptions off "
                + offPreempted + ", on " + e.preemptions());
            System.out.printf("prefix cache: %d of %d prompt tokens hit; preemptions %d (off: %d)%n", e.prefixCacheHits(),
                e.prefixCacheQueries(), e.preemptions(), offPreempted);
            assertTrue(e.prefixCacheHits() * 3 > e.prefixCacheQueries(), "few hits: " + e.prefixCacheHits() + " of "
                + e.prefixCacheQueries() + " prompt tokens");
            EngineFixture.assertIdle(e, tier);
            assertTrue(e.kvBlocksCached() > 0, "finished sequences' full blocks stay cached");
        }
    }

    /**
     * On the Vector API kernels (whose GEMMs group rows by batch, so bits may differ): with caching,
     * greedy outputs of every request are those of its adapter's merged-weights twin run alone.
     */
    @Test
    void withCachingGreedyOutputsEqualTheMergedTwinsOnTheVectorApiKernels() throws Exception {
        try (EngineFixture fx = new EngineFixture(31)) {
            List<String> names = List.of(fx.adapters.get(0).name(), fx.adapters.get(3).name(), fx.adapters.get(6).name());
            List<List<Job>> waves = chatWorkload(new Random(9), fx.cfg.vocabSize(), names);
            List<List<Job>> greedy = new ArrayList<>();
            for (List<Job> w : waves) {
                List<Job> g = new ArrayList<>();
                for (Job j : w) {
                    g.add(new Job(j.tenant(), j.adapter(), j.prompt(), 1, new SamplingParams(0, 1, 0, 8, -1)));
                }
                greedy.add(g);
            }
            DeviceTier<AdapterKey> tier = fx.tier(4);
            Engine.Options o = Engine.Options.builder().maxBatch(8).maxQueued(200).blockSize(BS).maxStepTokens(64)
                .kvCacheBytes(KvBlockPool.bytesPerBlock(fx.cfg, BS) * 30).prefixCaching(true).build();
            try (Engine e = new Engine(fx.model, new CpuBackend(2, CpuBackend.Kernels.JAVA), tier, o)) {
                List<Out> on = run(e, greedy);
                int nearTies = 0;
                int r = 0;
                for (List<Job> w : greedy) {
                    for (Job j : w) {
                        EngineFixture.Run ref = fx.alone(j.adapter(), j.prompt(), j.params());
                        nearTies += EngineFixture.assertSameTokens(ref, on.get(r).tokens().get(0), "request " + r);
                        r++;
                    }
                }
                assertTrue(nearTies <= 1, nearTies + " near ties");
                assertTrue(e.prefixCacheHits() > 0, "no prefix was reused");
                EngineFixture.assertIdle(e, tier);
            }
        }
    }

    /** The same prompt for another tenant, another adapter, or the base model finds nothing cached. */
    @Test
    void aPrefixIsNeverServedToAnotherTenantOrAdapter() throws Exception {
        Setup s = new Setup(22);
        CpuBackend.Kernels k = NativeCpu.available() ? CpuBackend.Kernels.NATIVE : CpuBackend.Kernels.JAVA;
        int[] prompt = tokens(new Random(4), s.cfg.vocabSize(), 70);
        String a1 = s.adapters.get(1).name();
        String a2 = s.adapters.get(2).name();
        SamplingParams greedy = new SamplingParams(0, 1, 0, 5, 3);
        List<Job> order = List.of(new Job("acme", a1, prompt, 1, greedy), new Job("globex", a1, prompt, 1, greedy),
            new Job("acme", a2, prompt, 1, greedy), new Job("acme", null, prompt, 1, greedy), new Job("globex", null, prompt, 1, greedy),
            new Job("acme", a1, prompt, 1, greedy));
        DeviceTier<AdapterKey> tier = s.tier();
        try (Engine e = s.engine(k, true, 64, tier); Engine fresh = s.engine(k, false, 64, s.tier())) {
            long[] hits = new long[order.size()];
            for (int i = 0; i < order.size(); i++) {
                long before = e.prefixCacheHits();
                Out got = run(e, List.of(List.of(order.get(i)))).get(0);
                hits[i] = e.prefixCacheHits() - before;
                if (i < order.size() - 1) {
                    // one request alone each time: the same batches with caching off, so the same bits
                    assertSameOutputs(run(fresh, List.of(List.of(order.get(i)))), List.of(got), "request " + i);
                }
            }
            assertEquals(List.of(0L, 0L, 0L, 0L, 0L, 64L).toString(), Arrays.toString(hits),
                "hits per request: only the repeat of the first request's tenant and adapter may reuse its blocks");
        }
    }

    /** An adapter replaced under the same name (its key invalidated): blocks of the old weights are never reused. */
    @Test
    void aReplacedAdapterNeverGetsBlocksComputedWithItsOldWeights() throws Exception {
        Setup s = new Setup(23);
        CpuBackend.Kernels k = NativeCpu.available() ? CpuBackend.Kernels.NATIVE : CpuBackend.Kernels.JAVA;
        int[] prompt = tokens(new Random(5), s.cfg.vocabSize(), 50);
        String name = s.adapters.get(1).name();
        AdapterKey key = AdapterKey.system(name);
        Job job = new Job("acme", name, prompt, 1, new SamplingParams(0, 1, 0, 6, 3));
        DeviceTier<AdapterKey> tier = s.tier();
        try (Engine e = s.engine(k, true, 64, tier)) {
            Out old = run(e, List.of(List.of(job))).get(0);
            long before = e.prefixCacheHits();
            s.disk.put(key, s.adapters.get(5)); // replaced: other weights under the same name
            tier.invalidate(key);
            Out replaced = run(e, List.of(List.of(job))).get(0);
            assertEquals(before, e.prefixCacheHits(), "blocks of the old weights were reused");
            try (Engine fresh = s.engine(k, false, 64, s.tier())) {
                assertSameOutputs(run(fresh, List.of(List.of(job))), List.of(replaced), "the replaced adapter");
            }
            assertTrue(!Arrays.equals(old.tokens().get(0), replaced.tokens().get(0))
                || !Arrays.equals(old.logprobs().get(0).get(0), replaced.logprobs().get(0).get(0)), "the replacement changed nothing");
            run(e, List.of(List.of(job)));
            assertEquals(before + 48, e.prefixCacheHits(), "the new weights' blocks are reused");
        }
    }
}
