package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 12, item 3: "healthy" means "can serve". {@code /health} answers 503 with the reason when
 * the engine loop has stopped, and when work waits while no step has finished for the watchdog time;
 * 200 again once steps finish. Through real HTTP against the real engine.
 */
class HealthHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @TempDir
    Path dir;

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void healthIs503WhenTheEngineLoopIsStoppedAndCompletionsFailFast() throws Exception {
        DemoStack stack = DemoStack.create(dir, 2, false);
        Vertx vertx = Vertx.vertx();
        Engine engine = new Engine(stack.model, new CpuBackend(1), stack.device, 4, 16);
        try {
            String base = "http://127.0.0.1:" + new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry)
                .deviceTier(stack.device).listen("127.0.0.1", 0).await();
            assertEquals(200, get(base + "/health").statusCode());
            engine.close(); // the loop ends: this server can no longer compute
            HttpResponse<String> h = get(base + "/health");
            assertEquals(503, h.statusCode(), h.body());
            assertTrue(message(h).contains("stopped"), h.body());
            long t0 = System.nanoTime();
            HttpResponse<String> c = post(base + "/v1/completions", "{\"model\":\"demo\",\"prompt\":\"Hi\",\"max_tokens\":4}");
            assertEquals(503, c.statusCode(), "a completion on a stopped engine must fail at once, not hang: " + c.body());
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5));
        } finally {
            engine.close();
            vertx.close().await();
            stack.loader.shutdownNow();
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void healthIs503WhileAStepHangsAndOkOnceItFinishes() throws Exception {
        DemoStack stack = DemoStack.create(dir, 2, false);
        Vertx vertx = Vertx.vertx();
        Engine engine = new Engine(stack.model, new CpuBackend(1), stack.device, 4, 16);
        CountDownLatch release = new CountDownLatch(1);
        try {
            String base = "http://127.0.0.1:" + new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry)
                .deviceTier(stack.device).watchdog(Duration.ofMillis(500)).listen("127.0.0.1", 0).await();
            assertEquals(200, get(base + "/health").statusCode());
            // a generation whose token sink (run on the engine thread) hangs: the engine makes no progress
            CompletableFuture<Generator.Finish> stuck = engine.submit(new Engine.Request(new int[] {3, 4}, SamplingParams.greedy(2), null,
                (t, lp) -> {
                    try {
                        return release.await(30, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        return false;
                    }
                }));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            HttpResponse<String> h;
            do {
                Thread.sleep(50);
                h = get(base + "/health");
            } while (h.statusCode() == 200 && System.nanoTime() < deadline);
            assertEquals(503, h.statusCode(), "the watchdog never reported the hung step: " + h.body());
            assertTrue(message(h).contains("step"), h.body());
            release.countDown();
            stuck.get(30, TimeUnit.SECONDS);
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            do {
                Thread.sleep(20);
                h = get(base + "/health");
            } while (h.statusCode() != 200 && System.nanoTime() < deadline);
            assertEquals(200, h.statusCode(), "healthy again once the step finished: " + h.body());
        } finally {
            release.countDown();
            engine.close();
            vertx.close().await();
            stack.loader.shutdownNow();
        }
    }

    private static String message(HttpResponse<String> r) throws Exception {
        JsonNode err = JSON.readTree(r.body()).path("error");
        return err.path("message").asText();
    }

    private HttpResponse<String> get(String url) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> post(String url, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).header("Content-Type", "application/json").timeout(Duration.ofSeconds(10))
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }
}
