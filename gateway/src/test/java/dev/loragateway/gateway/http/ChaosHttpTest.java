package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.batcher.Engine;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The guard of issue 12: chaos over real HTTP. For a bounded time, one thread uploads, deletes and
 * re-uploads adapters at random while clients send mixed requests against them (base model and
 * adapters, {@code n} = 1..4, streamed and not, some cancelled midway by closing the connection),
 * through two device slots so adapters are evicted and reloaded all the time. Each adapter name
 * always carries the same weights, so every request has one right answer (computed before the
 * chaos, one request at a time). Afterwards the engine is alive and healthy, it survived no fault,
 * every pin and KV block is free, and every completed answer equalled its reference.
 *
 * <p>Allowed outcomes besides a complete right answer: 404 (the adapter was deleted before the
 * request), 503 {@code adapter_unavailable} (deleted while the request waited for a slot; a stream
 * then ends with an "unavailable" error event), and a cancelled request. Anything else fails.
 */
class ChaosHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String[] ADAPTERS = {"demo-r4", "demo-r8", "demo-r16"};
    private static final String[] PROMPTS = {"The adapter", "def f(x):", "Once upon a time", "Hello there, gateway"};
    private static final int MAX_TOKENS = 24;
    private static final long CHAOS_MILLIS = 8_000;

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(5)).build();
    private final Map<String, String> reference = new HashMap<>();
    private final List<String> failures = Collections.synchronizedList(new ArrayList<>());
    private final Map<String, AtomicInteger> outcomes = new ConcurrentHashMap<>();

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void uploadsDeletesAndCancelsUnderMixedLoadLeaveTheEngineAliveAndEveryAnswerRight() throws Exception {
        DemoStack stack = DemoStack.create(dir, 2, false);
        Vertx vertx = Vertx.vertx();
        Engine engine = new Engine(stack.model, new CpuBackend(2), stack.device, 8, 512);
        ExecutorService clients = Executors.newFixedThreadPool(7);
        try {
            String base = "http://127.0.0.1:" + new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry)
                .deviceTier(stack.device).listen("127.0.0.1", 0).await();
            Map<String, UploadFixtures.Files2> files = new HashMap<>();
            for (String a : ADAPTERS) {
                files.put(a, UploadFixtures.demo(dir, a));
                assertEquals(201, upload(base, a, files.get(a)).statusCode());
            }
            for (String m : models()) {
                for (String p : PROMPTS) {
                    JsonNode r = JSON.readTree(send(base, body(m, p, 1, false)).body());
                    reference.put(m + "|" + p, r.get("choices").get(0).get("text").asText());
                }
            }

            long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(CHAOS_MILLIS);
            List<Future<?>> running = new ArrayList<>();
            running.add(clients.submit(() -> mutate(base, files, end)));
            for (int c = 0; c < 6; c++) {
                long seed = 100 + c;
                running.add(clients.submit(() -> clientLoop(base, new Random(seed), end)));
            }
            for (Future<?> f : running) {
                f.get(120, TimeUnit.SECONDS);
            }

            awaitIdle(engine, stack);
            System.out.println("chaos outcomes: " + new java.util.TreeMap<>(outcomes));
            assertTrue(failures.isEmpty(), failures.size() + " wrong outcomes, first ones: " + failures.subList(0, Math.min(5, failures.size())));
            assertEquals(0, engine.faults(), "the engine survived faults: a bug was hidden by its guard");
            assertTrue(count("deleted") >= 5 && count("uploaded") >= 5, "too little churn to test anything: " + outcomes);
            assertTrue(count("ok-adapter-forked") >= 5 && count("cancelled") >= 3, "too little load to test anything: " + outcomes);
            HttpResponse<String> health = http.send(HttpRequest.newBuilder(URI.create(base + "/health")).build(),
                HttpResponse.BodyHandlers.ofString());
            assertEquals(200, health.statusCode(), health.body());
            // the engine serves on: every model's answers are still the references
            for (String a : ADAPTERS) {
                HttpResponse<String> up = upload(base, a, files.get(a));
                assertTrue(up.statusCode() == 201 || up.statusCode() == 409, up.body());
            }
            for (String m : models()) {
                JsonNode r = JSON.readTree(send(base, body(m, PROMPTS[0], 3, false)).body());
                for (JsonNode c : r.get("choices")) {
                    assertEquals(reference.get(m + "|" + PROMPTS[0]), c.get("text").asText(), m + " after the chaos");
                }
            }
            awaitIdle(engine, stack);
        } finally {
            clients.shutdownNow();
            engine.close();
            vertx.close().await();
            stack.loader.shutdownNow();
        }
    }

    private static List<String> models() {
        List<String> m = new ArrayList<>(List.of(ADAPTERS));
        m.add("demo");
        return m;
    }

    private int count(String outcome) {
        AtomicInteger n = outcomes.get(outcome);
        return n == null ? 0 : n.get();
    }

    private void note(String outcome) {
        outcomes.computeIfAbsent(outcome, k -> new AtomicInteger()).incrementAndGet();
    }

    /** Deletes and re-uploads adapters at random (each name always with the same weights). */
    private void mutate(String base, Map<String, UploadFixtures.Files2> files, long end) {
        Random rnd = new Random(7);
        try {
            while (System.nanoTime() < end) {
                String a = ADAPTERS[rnd.nextInt(ADAPTERS.length)];
                HttpResponse<String> del = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/adapters/" + a)).DELETE().build(),
                    HttpResponse.BodyHandlers.ofString());
                if (del.statusCode() == 200) {
                    note("deleted");
                } else if (del.statusCode() != 404) {
                    failures.add("DELETE " + a + ": " + del.statusCode() + " " + del.body());
                }
                Thread.sleep(20 + rnd.nextInt(120));
                HttpResponse<String> up = upload(base, a, files.get(a));
                if (up.statusCode() == 201) {
                    note("uploaded");
                } else if (up.statusCode() != 409) {
                    failures.add("upload " + a + ": " + up.statusCode() + " " + up.body());
                }
                Thread.sleep(rnd.nextInt(150));
            }
        } catch (Exception e) {
            failures.add("mutator: " + e);
        }
    }

    private void clientLoop(String base, Random rnd, long end) {
        while (System.nanoTime() < end) {
            List<String> models = models();
            String model = models.get(rnd.nextInt(models.size()));
            String prompt = PROMPTS[rnd.nextInt(PROMPTS.length)];
            int n = 1 + rnd.nextInt(4);
            boolean stream = rnd.nextBoolean();
            int cancelAfter = stream && rnd.nextInt(4) == 0 ? 1 + rnd.nextInt(6) : -1;
            String what = model + " n=" + n + (stream ? " stream" : "") + (cancelAfter > 0 ? " cancel@" + cancelAfter : "") + " '" + prompt + "'";
            try {
                if (stream) {
                    streamed(base, model, prompt, n, cancelAfter, what);
                } else {
                    plain(base, model, prompt, n, what);
                }
            } catch (Exception e) {
                failures.add(what + ": " + e);
            }
        }
    }

    private void plain(String base, String model, String prompt, int n, String what) throws Exception {
        HttpResponse<String> r = send(base, body(model, prompt, n, false));
        if (allowedRefusal(r.statusCode(), r.body(), model)) {
            return;
        }
        if (r.statusCode() != 200) {
            failures.add(what + ": " + r.statusCode() + " " + r.body());
            return;
        }
        JsonNode choices = JSON.readTree(r.body()).get("choices");
        if (choices.size() != n) {
            failures.add(what + ": " + choices.size() + " choices");
        }
        for (JsonNode c : choices) {
            check(what, model, prompt, c.get("text").asText());
        }
        note(model.equals("demo") ? "ok-base" : n > 1 ? "ok-adapter-forked" : "ok-adapter");
    }

    private void streamed(String base, String model, String prompt, int n, int cancelAfter, String what) throws Exception {
        HttpResponse<InputStream> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .header("Content-Type", "application/json").timeout(Duration.ofSeconds(60))
            .POST(HttpRequest.BodyPublishers.ofString(body(model, prompt, n, true))).build(), HttpResponse.BodyHandlers.ofInputStream());
        if (r.statusCode() != 200) {
            String b = new String(r.body().readAllBytes(), StandardCharsets.UTF_8);
            if (!allowedRefusal(r.statusCode(), b, model)) {
                failures.add(what + ": " + r.statusCode() + " " + b);
            }
            return;
        }
        StringBuilder[] text = new StringBuilder[n];
        for (int i = 0; i < n; i++) {
            text[i] = new StringBuilder();
        }
        boolean done = false;
        String error = null;
        int chunks = 0;
        try (InputStream in = r.body();
             BufferedReader lines = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = lines.readLine()) != null) {
                if (!line.startsWith("data: ")) {
                    continue;
                }
                String data = line.substring(6);
                if (data.equals("[DONE]")) {
                    done = true;
                    break;
                }
                JsonNode chunk = JSON.readTree(data);
                if (chunk.has("error")) {
                    error = chunk.get("error").toString();
                    continue;
                }
                for (JsonNode c : chunk.path("choices")) {
                    text[c.get("index").asInt()].append(c.get("text").asText());
                }
                if (cancelAfter > 0 && ++chunks >= cancelAfter) {
                    note("cancelled");
                    return; // closing the stream closes the connection: the server cancels the generation
                }
            }
        }
        if (error != null) {
            if (!error.contains("\"unavailable\"") || model.equals("demo")) {
                failures.add(what + ": stream error " + error);
            } else {
                note("refused-while-waiting");
            }
            return;
        }
        if (!done) {
            failures.add(what + ": stream ended without [DONE]");
            return;
        }
        for (StringBuilder t : text) {
            check(what, model, prompt, t.toString());
        }
        note(model.equals("demo") ? "ok-base" : n > 1 ? "ok-adapter-forked" : "ok-adapter");
    }

    /** 404: deleted before the request; 503 adapter_unavailable: deleted while it waited for a slot. */
    private boolean allowedRefusal(int status, String body, String model) {
        if (model.equals("demo")) {
            return false;
        }
        if (status == 404 && body.contains("does not exist") || status == 404 && body.contains("not_found")) {
            note("refused-404");
            return true;
        }
        if (status == 503 && body.contains("adapter_unavailable")) {
            note("refused-while-waiting");
            return true;
        }
        return false;
    }

    private void check(String what, String model, String prompt, String text) {
        String want = reference.get(model + "|" + prompt);
        if (!want.equals(text)) {
            failures.add(what + ": got '" + text + "', want '" + want + "'");
        }
    }

    private static String body(String model, String prompt, int n, boolean stream) {
        ObjectNode b = JSON.createObjectNode().put("model", model).put("prompt", prompt).put("max_tokens", MAX_TOKENS)
            .put("temperature", 0).put("n", n).put("stream", stream);
        return b.toString();
    }

    private HttpResponse<String> send(String base, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
            .timeout(Duration.ofSeconds(60)).POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> upload(String base, String name, UploadFixtures.Files2 f) throws Exception {
        UploadFixtures.Multipart form = f.form(name);
        return http.send(HttpRequest.newBuilder(URI.create(base + "/v1/adapters")).header("Content-Type", form.contentType())
            .timeout(Duration.ofSeconds(30)).POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    private static void awaitIdle(Engine engine, DemoStack stack) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while ((stack.device.totalPins() > 0 || engine.running() > 0 || engine.kvBlocksUsed() > 0 || engine.queued() > 0)
            && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertEquals(0, stack.device.totalPins(), "adapter pins leaked");
        assertEquals(0, engine.running(), "sequences still running");
        assertEquals(0, engine.kvBlocksUsed(), "KV blocks leaked");
        assertEquals(0, engine.queued(), "requests still queued");
        assertTrue(engine.unhealthy(TimeUnit.SECONDS.toNanos(5)) == null, engine.unhealthy(TimeUnit.SECONDS.toNanos(5)));
    }
}
