package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/**
 * Faults inside the engine (issue 12): one request's trouble fails that request only, the loop
 * never dies, pins and KV blocks always come back, and {@link Engine#unhealthy} tells when the
 * engine cannot serve.
 */
class EngineFaultTest {
    @AutoClose
    static final EngineFixture fx = new EngineFixture(91);

    private static Engine engine(DeviceTier<AdapterKey> tier, int maxStepTokens) {
        return new Engine(fx.model, new CpuBackend(1), tier,
            Engine.Options.builder().maxBatch(8).maxQueued(64).maxStepTokens(maxStepTokens).build());
    }

    /**
     * The bug: DELETE of an adapter while an {@code n = 2} request on it prefilled. The fork then took
     * its pin with tryPin, which refuses a retired adapter: the fork ran without its adapter and
     * unpinned a pin it never had, and the engine thread died on "unpin of acme/v which is not
     * pinned", hanging every later request. Now the fork shares its lead's pin: both choices finish on
     * the adapter they started with (its merged twin's tokens), every pin and block comes back, and
     * the engine serves on.
     */
    @Test
    void deletingTheAdapterOfARunningForkedRequestKeepsTheEngineAlive() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(2);
        AdapterKey v = EngineFixture.key("r4-qv");
        Random rnd = new Random(3);
        int[] prompt = new int[30]; // four prefill chunks of 8 rows: the delete lands mid-prefill
        for (int i = 0; i < prompt.length; i++) {
            prompt[i] = 3 + rnd.nextInt(fx.cfg.vocabSize() - 3);
        }
        int maxTokens = 12;
        try (Engine engine = engine(tier, 8)) {
            // v resident first, so the forked request is admitted in the same pass as the trigger below
            assertEquals(Generator.Finish.LENGTH, engine.submit(new Engine.Request(new int[] {6}, SamplingParams.greedy(1), v,
                (t, lp) -> true)).get(30, TimeUnit.SECONDS));
            CountDownLatch deleted = new CountDownLatch(1);
            List<List<Integer>> outs = List.of(Collections.synchronizedList(new ArrayList<>()),
                Collections.synchronizedList(new ArrayList<>()));
            // a base request decoding alongside: its sink (on the engine thread, between steps) deletes v
            // once the forked request's lead holds v's pin and before the prompt is computed and forked
            CountDownLatch forkedSubmitted = new CountDownLatch(1);
            var trigger = engine.submit(new Engine.Request(new int[] {5}, SamplingParams.greedy(40), null, (t, lp) -> {
                try {
                    forkedSubmitted.await(10, TimeUnit.SECONDS); // the forked request is in the inbox before the next step
                } catch (InterruptedException e) {
                    return false;
                }
                if (tier.pins(v) == 1 && outs.get(0).isEmpty() && outs.get(1).isEmpty()) {
                    tier.invalidate(v);
                    deleted.countDown();
                    return false;
                }
                return true;
            }));
            List<CompletableFuture<Generator.Finish>> choices = engine.submitForks(prompt, v, "acme", List.of(
                new Engine.Choice(SamplingParams.greedy(maxTokens), (t, lp) -> outs.get(0).add(t)),
                new Engine.Choice(SamplingParams.greedy(maxTokens), (t, lp) -> outs.get(1).add(t))));
            forkedSubmitted.countDown();
            trigger.get(30, TimeUnit.SECONDS);
            assertTrue(deleted.await(1, TimeUnit.SECONDS), "the delete never happened: nothing was tested");
            EngineFixture.Run ref = fx.alone(v.name(), prompt, SamplingParams.greedy(maxTokens));
            for (int c = 0; c < 2; c++) {
                Generator.Finish expected = ref.tokens().length < maxTokens ? Generator.Finish.STOP : Generator.Finish.LENGTH;
                assertEquals(expected, choices.get(c).get(30, TimeUnit.SECONDS), "choice " + c);
                EngineFixture.assertSameTokens(ref, EngineFixture.ints(outs.get(c)), "choice " + c + " on the deleted adapter");
            }
            EngineFixture.assertIdle(engine, tier);
            assertEquals(0, engine.faults(), "the engine had to survive a fault");
            assertNull(engine.unhealthy(TimeUnit.SECONDS.toNanos(5)));
            // the engine serves on, and v is loaded afresh for new requests
            var after = engine.submit(new Engine.Request(prompt, SamplingParams.greedy(4), v, (t, lp) -> true));
            after.get(30, TimeUnit.SECONDS);
            EngineFixture.assertIdle(engine, tier);
        }
    }

    /** The guard for the class: an Error thrown inside a step fails that step's batch only; the loop goes on. */
    @Test
    void anErrorInsideAStepFailsItsBatchOnlyAndTheLoopGoesOn() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(2);
        AdapterKey r8 = EngineFixture.key("r8-all");
        try (Engine engine = engine(tier, 64)) {
            var doomed = engine.submit(new Engine.Request(new int[] {7, 8, 9}, SamplingParams.greedy(20), r8, (t, lp) -> {
                throw new StackOverflowError("a fault inside a step (test)");
            }));
            ExecutionException e = assertThrows(ExecutionException.class, () -> doomed.get(30, TimeUnit.SECONDS));
            assertTrue(e.getCause() instanceof StackOverflowError, e.getCause().toString());
            assertEquals(1, engine.faults());
            EngineFixture.assertIdle(engine, tier);
            List<Integer> out = Collections.synchronizedList(new ArrayList<>());
            int[] prompt = {7, 8, 9};
            var next = engine.submit(new Engine.Request(prompt, SamplingParams.greedy(6), r8, (t, lp) -> out.add(t)));
            assertEquals(Generator.Finish.LENGTH, next.get(30, TimeUnit.SECONDS));
            EngineFixture.assertSameTokens(fx.alone(r8.name(), prompt, SamplingParams.greedy(6)), EngineFixture.ints(out),
                "the request after the fault");
            assertNull(engine.unhealthy(TimeUnit.SECONDS.toNanos(5)));
        }
    }

    /**
     * Found while reading the scheduler (issue 12): {@code n} larger than {@code --max-batch} never
     * fitted a batch, and the request at the head of the queue that never fits stopped admission for
     * everyone. It is refused at once, naming both numbers, and the engine serves on.
     */
    @Test
    void moreChoicesThanABatchHoldsAreRefusedAndBlockNobody() throws Exception {
        try (Engine engine = new Engine(fx.model, new CpuBackend(1), null, 4, 64)) {
            List<Engine.Choice> five = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                five.add(new Engine.Choice(SamplingParams.greedy(3), (t, lp) -> true));
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> engine.submitForks(new int[] {4, 5}, null, "acme", five));
            assertTrue(e.getMessage().contains("n = 5") && e.getMessage().contains("at most 4"), e.getMessage());
            var next = engine.submitForks(new int[] {4, 5}, null, "acme", five.subList(0, 4));
            for (var f : next) {
                f.get(30, TimeUnit.SECONDS);
            }
            assertEquals(0, engine.queued());
        }
    }

    /** The watchdog: work waiting and no step finished for the stall time is unhealthy; a closed engine is too. */
    @Test
    void aStalledOrStoppedEngineIsUnhealthy() throws Exception {
        DeviceTier<AdapterKey> tier = fx.tier(2);
        Engine engine = engine(tier, 64);
        CountDownLatch release = new CountDownLatch(1);
        long stall = TimeUnit.MILLISECONDS.toNanos(300);
        try {
            assertNull(engine.unhealthy(stall), "an idle engine is healthy");
            Thread.sleep(400);
            assertNull(engine.unhealthy(stall), "an engine idle longer than the stall time is still healthy");
            var stuck = engine.submit(new Engine.Request(new int[] {4, 5}, SamplingParams.greedy(3), null, (t, lp) -> {
                try {
                    return release.await(20, TimeUnit.SECONDS); // a step that hangs
                } catch (InterruptedException e) {
                    return false;
                }
            }));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            String why;
            while ((why = engine.unhealthy(stall)) == null && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertNotNull(why, "a hung step was never reported");
            assertTrue(why.contains("step"), why);
            release.countDown();
            assertEquals(Generator.Finish.LENGTH, stuck.get(30, TimeUnit.SECONDS));
            EngineFixture.assertIdle(engine, tier);
            assertNull(engine.unhealthy(stall), "healthy again once the step finished");
        } finally {
            release.countDown();
            engine.close();
        }
        String why = engine.unhealthy(stall);
        assertNotNull(why, "a closed engine reported healthy");
        assertTrue(why.contains("stopped"), why);
        assertThrows(Engine.UnavailableException.class,
            () -> engine.submit(new Engine.Request(new int[] {4}, SamplingParams.greedy(2), null, (t, lp) -> true)));
    }
}
