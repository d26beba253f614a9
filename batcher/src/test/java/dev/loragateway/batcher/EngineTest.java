package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/**
 * The batching engine: requests for many adapters (more than there are slots) and the base model,
 * submitted at once, each give exactly the tokens of its merged-weights twin run alone; they share
 * steps; pins are all released at the end.
 */
class EngineTest {
    @AutoClose
    static final EngineFixture fx = new EngineFixture(77);
    static final ModelConfig cfg = fx.cfg;
    static final LlamaModel model = fx.model;
    static final List<LoraAdapter> adapters = fx.adapters;

    private static int[] alone(LlamaModel m, int[] prompt, int maxTokens) {
        Generator g = new Generator(new ForwardPass(m, fx.refCpu()));
        List<Integer> out = new ArrayList<>();
        g.generate(prompt, new SamplingParams(0, 1, 0, maxTokens, -1), (t, lp) -> out.add(t));
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void manyAdaptersThroughFewSlotsEqualMergedTwins() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(3); // 9 adapters, 3 slots: requests must wait for slots
        Random rnd = new Random(5);
        try (Engine engine = new Engine(model, new CpuBackend(2), tier, 8, 100)) {
            int n = 24;
            List<CompletableFuture<Generator.Finish>> futures = new ArrayList<>();
            List<List<Integer>> outs = new ArrayList<>();
            int[][] prompts = new int[n][];
            String[] which = new String[n];
            int[] maxTokens = new int[n];
            for (int i = 0; i < n; i++) {
                prompts[i] = new int[2 + rnd.nextInt(7)];
                for (int j = 0; j < prompts[i].length; j++) {
                    prompts[i][j] = 3 + rnd.nextInt(cfg.vocabSize() - 3);
                }
                which[i] = i % 5 == 4 ? null : adapters.get(rnd.nextInt(adapters.size())).name();
                maxTokens[i] = 3 + rnd.nextInt(8);
                List<Integer> out = new ArrayList<>();
                outs.add(out);
                futures.add(engine.submit(new Engine.Request(prompts[i], new SamplingParams(0, 1, 0, maxTokens[i], -1),
                    EngineFixture.key(which[i]), (t, lp) -> out.add(t))));
            }
            int total = 0;
            for (int i = 0; i < n; i++) {
                futures.get(i).get(60, TimeUnit.SECONDS);
                total += outs.get(i).size();
            }
            for (int i = 0; i < n; i++) {
                String a = which[i];
                LlamaModel twin = fx.twin(a);
                int[] expected = alone(twin, prompts[i], maxTokens[i]);
                int[] got = outs.get(i).stream().mapToInt(Integer::intValue).toArray();
                assertEquals(java.util.Arrays.toString(expected), java.util.Arrays.toString(got), "request " + i + " (" + a + ")");
            }
            assertTrue(engine.steps() < total, "requests were not batched: " + engine.steps() + " steps for " + total + " tokens");
            assertEquals(0, tier.totalPins(), "pins leaked");
            assertEquals(0, engine.queued());
            assertTrue(tier.stats().evictions() > 0, "9 adapters through 3 slots evicted nothing: " + tier.stats());
        }
    }

    @Test
    void unknownAdapterFailsItsRequestOnly() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(2);
        try (Engine engine = new Engine(model, new CpuBackend(1), tier, 4, 10)) {
            var bad = engine.submit(new Engine.Request(new int[] {5, 6}, new SamplingParams(0, 1, 0, 4, -1), EngineFixture.key("nope"),
                (t, lp) -> true));
            var good = engine.submit(new Engine.Request(new int[] {5, 6}, new SamplingParams(0, 1, 0, 4, -1), EngineFixture.key("r8-all"),
                (t, lp) -> true));
            ExecutionException e = assertThrows(ExecutionException.class, () -> bad.get(30, TimeUnit.SECONDS));
            assertTrue(e.getCause() instanceof AdapterLoadException, e.getCause().toString());
            assertTrue(e.getCause().getMessage().contains("no adapter named nope"), e.getCause().getMessage());
            assertEquals(Generator.Finish.LENGTH, good.get(30, TimeUnit.SECONDS));
        }
    }

    @Test
    void cancelledAndStoppedRequestsReleaseTheirPins() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(4);
        try (Engine engine = new Engine(model, new CpuBackend(1), tier, 4, 10)) {
            var longRun = engine.submit(new Engine.Request(new int[] {7, 8, 9}, new SamplingParams(0, 1, 0, 1000, -1),
                EngineFixture.key("r4-qv"), (t, lp) -> true));
            int[] seen = {0};
            var stopped = engine.submit(new Engine.Request(new int[] {7}, new SamplingParams(0, 1, 0, 50, -1),
                EngineFixture.key("r16-attn"), (t, lp) -> ++seen[0] < 3));
            assertEquals(Generator.Finish.STOP, stopped.get(30, TimeUnit.SECONDS));
            assertEquals(3, seen[0]);
            longRun.cancel(false);
            EngineFixture.assertIdle(engine, tier);
        }
    }

    @Test
    void fullQueueIsRefused() {
        try (Engine engine = new Engine(model, new CpuBackend(1), null, 1, 2)) {
            int refused = 0;
            List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                try {
                    fs.add(engine.submit(new Engine.Request(new int[] {3}, new SamplingParams(0, 1, 0, 200, -1), null, (t, lp) -> true)));
                } catch (Engine.QueueFullException e) {
                    refused++;
                }
            }
            assertTrue(refused > 0, "20 requests into a queue of 2 behind a batch of 1 were all accepted");
            fs.forEach(f -> f.cancel(false));
        }
    }

    /**
     * Issue 14 (migration by recompute): a seeded request resubmitted with its prompt plus the tokens
     * it had already produced, and the rest of its budget, produces exactly the tokens the first run
     * went on to produce, as the front node's resubmission to another node needs.
     */
    @Test
    void aSeededStreamResumedFromItsTokensGoesOnAsItWould() throws Exception {
        try (Engine engine = new Engine(model, new CpuBackend(2), fx.tier(3), 8, 100)) {
            Random rnd = new Random(9);
            for (int trial = 0; trial < 4; trial++) {
                int[] prompt = new int[3 + rnd.nextInt(6)];
                for (int j = 0; j < prompt.length; j++) {
                    prompt[j] = 3 + rnd.nextInt(cfg.vocabSize() - 3);
                }
                String adapter = trial % 2 == 0 ? null : adapters.get(trial).name();
                SamplingParams full = new SamplingParams(1.0, 0.95, 1000 + trial, 16, -1);
                List<Integer> whole = new ArrayList<>();
                engine.submit(new Engine.Request(prompt, full, EngineFixture.key(adapter), (t, lp) -> whole.add(t)))
                    .get(60, TimeUnit.SECONDS);
                int cut = Math.min(whole.size() - 1, 1 + trial * 3);
                if (cut < 1) {
                    continue; // ended at once (EOS): nothing to resume
                }
                int[] resumedPrompt = java.util.Arrays.copyOf(prompt, prompt.length + cut);
                for (int j = 0; j < cut; j++) {
                    resumedPrompt[prompt.length + j] = whole.get(j);
                }
                List<Integer> rest = new ArrayList<>();
                engine.submit(new Engine.Request(resumedPrompt, new SamplingParams(1.0, 0.95, 1000 + trial, 16 - cut, -1),
                    EngineFixture.key(adapter), (t, lp) -> rest.add(t))).get(60, TimeUnit.SECONDS);
                assertEquals(whole.subList(cut, whole.size()), rest, "trial " + trial + " resumed after " + cut + " tokens");
            }
        }
    }

    /** A cluster member republishes its state when the batch changes: the engine says so on admission and finish. */
    @Test
    void theStateListenerHearsEveryAdmissionAndFinish() throws Exception {
        try (Engine engine = new Engine(model, new CpuBackend(1), fx.tier(3), 8, 100)) {
            java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
            java.util.Set<String> threads = java.util.concurrent.ConcurrentHashMap.newKeySet();
            engine.onAdmitOrFinish(() -> {
                calls.incrementAndGet();
                threads.add(Thread.currentThread().getName());
            });
            engine.submit(new Engine.Request(new int[] {5, 6, 7}, new SamplingParams(0, 1, 0, 3, -1), null, (t, lp) -> true))
                .get(60, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (calls.get() < 2 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertEquals(2, calls.get(), "one call when it joined the batch, one when it left");
            assertEquals(1, threads.size(), "always the engine thread: " + threads);
        }
    }
}
