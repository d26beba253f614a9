package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/**
 * The engine under continuous batching: requests arriving at random times, with random lengths and
 * adapters, joining and leaving the batch at every step, prompts split into chunks, a KV pool that
 * runs dry, forks sharing a prompt; each gives the tokens it gives alone.
 */
class ContinuousBatchingTest {
    @AutoClose
    static final EngineFixture fx = new EngineFixture(91);

    private record Submitted(String adapter, int[] prompt, SamplingParams params, List<Integer> out, CompletableFuture<Generator.Finish> f) {
    }

    private static Submitted submit(Engine engine, Random rnd, String tenant, int maxPrompt, int maxTokens) {
        String adapter = rnd.nextInt(5) == 0 ? null : fx.adapters.get(rnd.nextInt(fx.adapters.size())).name();
        int[] prompt = fx.randomPrompt(rnd, maxPrompt);
        SamplingParams p = SamplingParams.greedy(1 + rnd.nextInt(maxTokens));
        List<Integer> out = Collections.synchronizedList(new ArrayList<>());
        var f = engine.submit(new Engine.Request(prompt, p, EngineFixture.key(adapter), tenant, (t, lp) -> out.add(t)));
        return new Submitted(adapter, prompt, p, out, f);
    }

    private static void checkAll(List<Submitted> subs) throws Exception {
        int ties = 0;
        for (int i = 0; i < subs.size(); i++) {
            Submitted s = subs.get(i);
            s.f().get(120, TimeUnit.SECONDS);
            EngineFixture.Run ref = fx.alone(s.adapter(), s.prompt(), s.params());
            ties += EngineFixture.assertSameTokens(ref, EngineFixture.ints(s.out()), "request " + i + " (" + s.adapter() + ", prompt "
                + s.prompt().length + ")");
        }
        System.out.println(subs.size() + " requests equal their lone runs; " + ties + " parted at a near tie");
        assertTrue(ties <= subs.size() / 50, ties + " near ties in " + subs.size() + " requests");
    }

    @Test
    void twoHundredRandomArrivalsGiveTheirLoneTokens() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(4);
        Random rnd = new Random(1);
        Engine.Options o = Engine.Options.builder().maxBatch(12).maxQueued(1000).maxStepTokens(24).blockSize(8).build();
        List<Submitted> subs = new ArrayList<>();
        long totalTokens;
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), tier, o)) {
            for (int i = 0; i < 200; i++) {
                if (rnd.nextInt(3) == 0) {
                    Thread.sleep(rnd.nextInt(4));
                }
                subs.add(submit(engine, rnd, "t" + rnd.nextInt(3), 60, 20));
            }
            checkAll(subs);
            totalTokens = subs.stream().mapToLong(s -> s.out().size()).sum();
            assertTrue(engine.steps() < totalTokens / 3, engine.steps() + " steps for " + totalTokens + " tokens: little batching");
            EngineFixture.assertIdle(engine, tier);
        }
        assertTrue(subs.stream().anyMatch(s -> s.prompt().length > 24), "no prompt was long enough to be chunked");
    }

    @Test
    void aPoolTooSmallForEveryonePreemptsAndStillGivesTheRightTokens() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(9);
        Random rnd = new Random(2);
        // 24 blocks of 4 positions: room for about three of the sixteen sequences at full length
        Engine.Options o = Engine.Options.builder().maxBatch(16).maxQueued(100).maxStepTokens(64)
            .kvCacheBytes(24 * KvBlockPool.bytesPerBlock(fx.cfg, 4)).blockSize(4).build();
        List<Submitted> subs = new ArrayList<>();
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), tier, o)) {
            assertEquals(24, engine.kvBlocksTotal());
            for (int i = 0; i < 16; i++) {
                subs.add(submit(engine, rnd, "default", 12, 1));
            }
            // then all sixteen long ones at once: they cannot all fit (submitted one by one after their
            // one-token twin, they could finish too fast on a quick machine to ever run dry together)
            for (int i = 0; i < 16; i++) {
                subs.set(i, resubmitLonger(engine, subs.get(i), rnd));
            }
            checkAll(subs);
            assertTrue(engine.preemptions() > 0, "the pool never ran dry");
            EngineFixture.assertIdle(engine, tier);
        }
    }

    /**
     * A sequence whose sink can move ({@link Generator.MovableSink}: a choice another node forwarded)
     * leaves when it would be preempted, instead of waiting: its future is cancelled, its blocks and
     * pin are freed at once, and the tokens it produced are what its lone run produces up to there.
     * Sinks that refuse are preempted as before and still give their lone tokens.
     */
    @Test
    void aMovableSequenceLeavesWhenThePoolRunsDryInsteadOfWaiting() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(9);
        Random rnd = new Random(5);
        Engine.Options o = Engine.Options.builder().maxBatch(16).maxQueued(100).maxStepTokens(64)
            .kvCacheBytes(24 * KvBlockPool.bytesPerBlock(fx.cfg, 4)).blockSize(4).build();
        List<Submitted> stay = new ArrayList<>();
        List<Submitted> movable = new ArrayList<>();
        java.util.concurrent.atomic.AtomicInteger asked = new java.util.concurrent.atomic.AtomicInteger();
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), tier, o)) {
            for (int i = 0; i < 16; i++) {
                String adapter = i % 4 == 0 ? null : fx.adapters.get(rnd.nextInt(fx.adapters.size())).name();
                int[] prompt = fx.randomPrompt(rnd, 12);
                SamplingParams p = SamplingParams.greedy(30 + rnd.nextInt(11));
                List<Integer> out = Collections.synchronizedList(new ArrayList<>());
                boolean canMove = i % 2 == 1;
                Generator.TokenSink sink = canMove ? new Generator.MovableSink() {
                    @Override
                    public boolean accept(int token, Sampler.Logprobs logprobs) {
                        return out.add(token);
                    }

                    @Override
                    public boolean moveAway() {
                        asked.incrementAndGet();
                        return true;
                    }
                } : (t, lp) -> out.add(t);
                var f = engine.submit(new Engine.Request(prompt, p, EngineFixture.key(adapter), "default", sink));
                (canMove ? movable : stay).add(new Submitted(adapter, prompt, p, out, f));
            }
            checkAll(stay);
            int left = 0;
            for (Submitted s : movable) {
                try {
                    s.f().get(120, TimeUnit.SECONDS);
                    EngineFixture.assertSameTokens(fx.alone(s.adapter(), s.prompt(), s.params()), EngineFixture.ints(s.out()), "stayed");
                } catch (java.util.concurrent.CancellationException | java.util.concurrent.ExecutionException e) {
                    left++;
                    EngineFixture.Run ref = fx.alone(s.adapter(), s.prompt(), s.params());
                    int[] got = EngineFixture.ints(s.out());
                    assertTrue(got.length < ref.tokens().length, "a moved sequence stopped early");
                    // what it produced before it left is its lone run's start
                    EngineFixture.assertSameTokens(new EngineFixture.Run(java.util.Arrays.copyOf(ref.tokens(), got.length),
                        ref.logprobs().subList(0, got.length)), got, "moved");
                }
            }
            assertTrue(left > 0 && left == engine.movedAway(), left + " left, engine says " + engine.movedAway() + ", asked " + asked);
            EngineFixture.assertIdle(engine, tier);
        }
    }

    /** Replaces a one-token request by one of 20 to 40 tokens (long enough to outgrow the pool). */
    private static Submitted resubmitLonger(Engine engine, Submitted s, Random rnd) throws Exception {
        s.f().get(30, TimeUnit.SECONDS);
        SamplingParams p = SamplingParams.greedy(20 + rnd.nextInt(21));
        List<Integer> out = Collections.synchronizedList(new ArrayList<>());
        var f = engine.submit(new Engine.Request(s.prompt(), p, EngineFixture.key(s.adapter()), "default", (t, lp) -> out.add(t)));
        return new Submitted(s.adapter(), s.prompt(), p, out, f);
    }

    @Test
    void aFloodingTenantDoesNotStarveAnother() throws Exception {
        Random rnd = new Random(3);
        Engine.Options o = Engine.Options.builder().maxBatch(4).maxQueued(2000).build();
        AtomicInteger aDone = new AtomicInteger();
        List<Integer> aDoneWhenBFinished = Collections.synchronizedList(new ArrayList<>());
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), null, o)) {
            List<CompletableFuture<Generator.Finish>> all = new ArrayList<>();
            for (int i = 0; i < 500; i++) {
                // long enough that A's backlog is still deep when B arrives, even on a fast machine
                var f = engine.submit(new Engine.Request(fx.randomPrompt(rnd, 8), SamplingParams.greedy(24), null, "A", (t, lp) -> true));
                f.whenComplete((r, e) -> aDone.incrementAndGet());
                all.add(f);
            }
            Thread.sleep(2);
            int aDoneWhenBArrived = aDone.get();
            assertTrue(aDoneWhenBArrived < 50, aDoneWhenBArrived + " of A's requests were done before B arrived");
            for (int i = 0; i < 10; i++) {
                var f = engine.submit(new Engine.Request(fx.randomPrompt(rnd, 8), SamplingParams.greedy(6), null, "B", (t, lp) -> true));
                f.whenComplete((r, e) -> aDoneWhenBFinished.add(aDone.get()));
                all.add(f);
            }
            for (var f : all) {
                f.get(120, TimeUnit.SECONDS);
            }
        }
        assertEquals(10, aDoneWhenBFinished.size());
        int worst = Collections.max(aDoneWhenBFinished);
        assertTrue(worst < 100, "tenant B's last request finished after " + worst + " of tenant A's");
    }

    @Test
    void forksShareThePromptBlocks() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(2);
        Random rnd = new Random(4);
        int[] prompt = fx.randomPrompt(rnd, 1);
        prompt = java.util.Arrays.copyOf(prompt, 61);
        for (int i = 1; i < prompt.length; i++) {
            prompt[i] = 3 + rnd.nextInt(fx.cfg.vocabSize() - 3);
        }
        // 61 prompt positions = 16 blocks of 4; four unshared copies would need 64 blocks plus growth
        Engine.Options o = Engine.Options.builder().maxBatch(8).maxQueued(10).kvCacheBytes(28 * KvBlockPool.bytesPerBlock(fx.cfg, 4))
            .blockSize(4).build();
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), tier, o)) {
            List<Engine.Choice> choices = new ArrayList<>();
            List<List<Integer>> outs = new ArrayList<>();
            List<SamplingParams> params = new ArrayList<>();
            for (int c = 0; c < 4; c++) {
                SamplingParams p = c == 0 ? SamplingParams.greedy(7) : new SamplingParams(1.0, 0.9, 100 + c, 7, -1);
                List<Integer> out = Collections.synchronizedList(new ArrayList<>());
                outs.add(out);
                params.add(p);
                choices.add(new Engine.Choice(p, (t, lp) -> out.add(t)));
            }
            var futures = engine.submitForks(prompt, EngineFixture.key("r8-all"), "default", choices);
            for (var f : futures) {
                f.get(60, TimeUnit.SECONDS);
            }
            assertEquals(0, engine.preemptions(), "forks did not share the prompt's blocks");
            for (int c = 0; c < 4; c++) {
                EngineFixture.Run ref = fx.alone("r8-all", prompt, params.get(c));
                EngineFixture.assertSameTokens(ref, EngineFixture.ints(outs.get(c)), "choice " + c);
            }
            assertTrue(!outs.get(1).equals(outs.get(2)) || !outs.get(2).equals(outs.get(3)), "seeded choices all sampled alike");
            EngineFixture.assertIdle(engine, tier);
        }
    }

    @Test
    void aThousandRequestsSomeCancelledLeaveNothingHeld() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(3);
        Random rnd = new Random(5);
        Engine.Options o = Engine.Options.builder().maxBatch(16).maxQueued(2000).maxStepTokens(32)
            .kvCacheBytes(60 * KvBlockPool.bytesPerBlock(fx.cfg, 4)).blockSize(4).build();
        int cancelled = 0;
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), tier, o)) {
            List<CompletableFuture<Generator.Finish>> all = new ArrayList<>();
            for (int i = 0; i < 1000; i++) {
                AdapterKey adapter = rnd.nextInt(4) == 0 ? null
                    : EngineFixture.key(fx.adapters.get(rnd.nextInt(fx.adapters.size())).name());
                int[] prompt = fx.randomPrompt(rnd, 30);
                int cancelAt = rnd.nextInt(3) == 0 ? 1 + rnd.nextInt(6) : -1;
                cancelled += cancelAt > 0 ? 1 : 0;
                int n = rnd.nextInt(6) == 0 ? 2 + rnd.nextInt(3) : 1;
                List<Engine.Choice> choices = new ArrayList<>();
                // the sink may run before submitForks returns: it cancels through this holder
                CompletableFuture<List<CompletableFuture<Generator.Finish>>> holder = new CompletableFuture<>();
                for (int c = 0; c < n; c++) {
                    AtomicInteger seen = new AtomicInteger();
                    int idx = c;
                    choices.add(new Engine.Choice(new SamplingParams(1.0, 1.0, rnd.nextLong(), 1 + rnd.nextInt(12), -1), (t, lp) -> {
                        if (seen.incrementAndGet() == cancelAt) {
                            holder.thenAccept(l -> l.get(idx).cancel(false));
                        }
                        return true;
                    }));
                }
                List<CompletableFuture<Generator.Finish>> mine = engine.submitForks(prompt, adapter, "t" + (i % 4), choices);
                holder.complete(mine);
                all.addAll(mine);
                if (rnd.nextInt(50) == 0) {
                    mine.get(0).cancel(false); // cancelled while still queued
                }
            }
            for (var f : all) {
                try {
                    f.get(120, TimeUnit.SECONDS);
                } catch (java.util.concurrent.CancellationException e) {
                    // expected for some
                }
            }
            EngineFixture.assertIdle(engine, tier);
            assertEquals(0, engine.preemptedWaiting());
            assertTrue(engine.preemptions() > 0, "the pool never ran dry: the test covers no preemption");
        }
        System.out.println("1000 requests, " + cancelled + " cancelled midway: no block or pin held afterwards");
        assertTrue(cancelled > 100, "only " + cancelled + " requests were cancelled");
    }
}
