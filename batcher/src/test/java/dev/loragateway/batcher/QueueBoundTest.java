package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.IntSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code --max-queued} bounds sequences (a request's prompts × n), not requests (issue 12 item 10):
 * one request of 100 prompts × n = 16 was accepted whole, and 10,000 prompts got "1024 requests are
 * already queued" on an empty queue. Requests wait deterministically here behind an adapter whose
 * loader is held.
 */
class QueueBoundTest {
    static EngineFixture fx;
    final Random rnd = new Random(5);
    ExecutorService loader;
    final CountDownLatch held = new CountDownLatch(1);

    @BeforeAll
    static void fixture() {
        fx = new EngineFixture(77);
    }

    @BeforeEach
    void holdTheLoader() {
        loader = Executors.newSingleThreadExecutor();
        loader.submit(() -> {
            held.await(); // adapters wait to be paged in until released
            return null;
        });
    }

    @AfterEach
    void release() {
        held.countDown();
        loader.shutdownNow();
    }

    private Engine engine(int maxBatch, int maxQueued) {
        DeviceTier<AdapterKey> tier = fx.tier(4, loader);
        return new Engine(fx.model, new CpuBackend(1), tier, maxBatch, maxQueued);
    }

    private List<Engine.Prompt> prompts(int count, int n, int maxTokens) {
        List<Engine.Prompt> out = new ArrayList<>();
        for (int p = 0; p < count; p++) {
            List<Engine.Choice> choices = new ArrayList<>();
            for (int c = 0; c < n; c++) {
                choices.add(new Engine.Choice(new SamplingParams(0, 1, 0, maxTokens, -1), (t, lp) -> true));
            }
            out.add(new Engine.Prompt(fx.randomPrompt(rnd, 5), choices));
        }
        return out;
    }

    private static List<CompletableFuture<Generator.Finish>> flat(List<List<CompletableFuture<Generator.Finish>>> fs) {
        List<CompletableFuture<Generator.Finish>> all = new ArrayList<>();
        fs.forEach(all::addAll);
        return all;
    }

    private static void await(IntSupplier value, int expected, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (value.getAsInt() != expected && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(expected, value.getAsInt(), what);
    }

    @Test
    void oneRequestOfOneHundredPromptsTimesSixteenIsRefusedWhole() {
        try (Engine engine = engine(16, 1024)) {
            Engine.RequestTooLargeException e = assertThrows(Engine.RequestTooLargeException.class,
                () -> engine.submitAll(prompts(100, 16, 4), null, "acme"));
            assertTrue(e.getMessage().contains("needs 1600 sequences (100 prompts × n = 16)"), e.getMessage());
            assertTrue(e.getMessage().contains("more than the 1024 that may wait"), e.getMessage());
            assertEquals(0, engine.queued(), "nothing of it stays queued");
        }
    }

    @Test
    void tenThousandPromptsOnAnEmptyQueueAreTooLargeNotQueueFull() {
        try (Engine engine = engine(16, 1024)) {
            RuntimeException e = assertThrows(RuntimeException.class, () -> engine.submitAll(prompts(10_000, 1, 1), null, "acme"));
            assertEquals(Engine.RequestTooLargeException.class, e.getClass(), e.getMessage());
            assertTrue(e instanceof IllegalArgumentException, "a 400, not a 429: retrying never helps");
            assertTrue(e.getMessage().contains("10000 sequences") && e.getMessage().contains("1024"), e.getMessage());
            assertEquals(0, engine.queued());
        }
    }

    @Test
    void aRequestThatFitsAnEmptyQueueButNotTheCurrentOneIsQueueFullNamingBothCounts() throws Exception {
        AdapterKey adapter = EngineFixture.key(fx.adapters.get(0).name());
        try (Engine engine = engine(16, 32)) {
            var waiting = flat(engine.submitAll(prompts(2, 16, 2), adapter, "acme")); // exactly the bound, on an empty queue
            assertEquals(32, engine.queued(), "2 prompts × n = 16 hold 32 places");
            Engine.QueueFullException full = assertThrows(Engine.QueueFullException.class,
                () -> engine.submitAll(prompts(1, 1, 2), null, "globex"));
            assertTrue(full.getMessage().contains("32 sequences are already queued and this request needs 1 more, over the limit"
                + " of 32"), full.getMessage());
            assertEquals(32, engine.queued(), "a refused request takes no place");
            held.countDown(); // the adapter loads; the 32 run
            for (CompletableFuture<Generator.Finish> f : waiting) {
                assertEquals(Generator.Finish.LENGTH, f.get(60, TimeUnit.SECONDS));
            }
            assertEquals(0, engine.queued(), "every place is given back on admission");
            var again = flat(engine.submitAll(prompts(4, 8, 1), null, "globex"));
            for (CompletableFuture<Generator.Finish> f : again) {
                assertEquals(Generator.Finish.LENGTH, f.get(60, TimeUnit.SECONDS));
            }
            assertEquals(0, engine.queued());
        }
    }

    @Test
    void cancelledWaitingRequestsGiveTheirPlacesBack() throws Exception {
        AdapterKey adapter = EngineFixture.key(fx.adapters.get(1).name());
        try (Engine engine = engine(16, 32)) {
            var first = flat(engine.submitAll(prompts(1, 16, 3), adapter, "acme"));
            var second = flat(engine.submitAll(prompts(2, 8, 3), adapter, "acme"));
            assertEquals(32, engine.queued());
            first.forEach(f -> f.cancel(false));
            await(engine::queued, 16, "the cancelled 16 are dropped from the queue");
            second.forEach(f -> f.cancel(false));
            await(engine::queued, 0, "and the other 16");
        }
    }

    @Test
    void choicesWithNothingToGenerateTakeNoPlace() throws Exception {
        try (Engine engine = engine(16, 32)) {
            var done = flat(engine.submitAll(prompts(40, 2, 0), null, "acme")); // 80 choices of max_tokens 0
            for (CompletableFuture<Generator.Finish> f : done) {
                assertEquals(Generator.Finish.LENGTH, f.getNow(null));
            }
            assertEquals(0, engine.queued());
        }
    }
}
