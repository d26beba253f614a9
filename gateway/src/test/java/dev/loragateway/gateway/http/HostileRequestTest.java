package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.batcher.Engine;
import dev.loragateway.gateway.http.UploadFixtures.Files2;
import dev.loragateway.gateway.http.UploadFixtures.Multipart;
import dev.loragateway.gateway.http.UploadFixtures.Peft;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a hostile client found (issue 12 items 7, 8, 10), each replayed over real HTTP against the
 * tiny demo model with its adapters: the answer is the right status, it arrives within
 * {@link #BOUND}, and afterwards the server gives the same good requests the same greedy text as
 * before.
 */
class HostileRequestTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    /** The most any answer here may take. */
    private static final Duration BOUND = Duration.ofSeconds(30);
    private static final int MAX_BATCH = 16;
    /** {@code --max-queued}, small so that a test can fill it. */
    private static final int MAX_QUEUED = 32;
    private static final String PROMPT = "The gateway serves adapters to";
    /** Good requests (the base model and an adapter) and their greedy texts before any hostile one. */
    private static final List<String> GOOD_MODELS = List.of("demo", "demo-r8");

    @TempDir
    static Path dir;
    static DemoStack stack;
    static Vertx vertx;
    static Engine engine;
    static String url;
    static Map<String, String> before;

    @BeforeAll
    static void start() throws Exception {
        stack = DemoStack.create(dir, 8, true);
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, MAX_BATCH, MAX_QUEUED);
        vertx = Vertx.vertx();
        url = "http://127.0.0.1:" + new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry)
            .deviceTier(stack.device).listen("127.0.0.1", 0).await();
        before = goodTexts();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        stack.loader.shutdownNow();
    }

    // ---- helpers --------------------------------------------------------------------------------

    /** Sends {@code r} and fails unless the answer (all of it) arrives within {@link #BOUND}. */
    static HttpResponse<String> send(HttpRequest.Builder r) throws Exception {
        long start = System.nanoTime();
        HttpResponse<String> resp = HTTP.send(r.timeout(BOUND).build(), HttpResponse.BodyHandlers.ofString());
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(ms < BOUND.toMillis(), "the answer took " + ms + " ms");
        return resp;
    }

    static HttpRequest.Builder post(String path, String json) {
        return HttpRequest.newBuilder(URI.create(url + path)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json));
    }

    static HttpResponse<String> get(String path) throws Exception {
        return send(HttpRequest.newBuilder(URI.create(url + path)).GET());
    }

    static HttpResponse<String> upload(Multipart form) throws Exception {
        return send(HttpRequest.newBuilder(URI.create(url + "/v1/adapters")).header("Content-Type", form.contentType())
            .POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())));
    }

    /** A completions body: {@code model}, greedy unless {@code more} says otherwise. */
    static String completion(String model, Consumer<ObjectNode> more) {
        ObjectNode b = JSON.createObjectNode().put("model", model).put("prompt", PROMPT).put("max_tokens", 12).put("temperature", 0);
        more.accept(b);
        return b.toString();
    }

    static Map<String, String> goodTexts() throws Exception {
        Map<String, String> texts = new LinkedHashMap<>();
        for (String m : GOOD_MODELS) {
            HttpResponse<String> r = send(post("/v1/completions", completion(m, b -> { })));
            assertEquals(200, r.statusCode(), m + ": " + r.body());
            texts.put(m, JSON.readTree(r.body()).get("choices").get(0).get("text").asText());
        }
        return texts;
    }

    /** The server still answers the good requests, with the same greedy texts as before anything hostile. */
    static void assertStillServesTheGoodRequests() throws Exception {
        assertEquals(before, goodTexts());
    }

    static JsonNode assertError(HttpResponse<String> r, int status, String... fragments) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode err = JSON.readTree(r.body()).get("error");
        assertTrue(err != null && err.get("message").isTextual(), r.body());
        for (String f : fragments) {
            assertTrue(err.get("message").asText().contains(f), "'" + f + "' not in: " + r.body());
        }
        return err;
    }

    // ---- item 7: lora_alpha 1e308 and non-finite logits -------------------------------------------

    @Test
    void loraAlpha1e308UploadIsA400NamingTheFieldItsValueAndTheRange() throws Exception {
        Peft p = Peft.random(8, 16, 7, "q_proj", "v_proj");
        p.config.put("lora_alpha", 1e308);
        JsonNode err = assertError(upload(p.files().form("alpha-1e308")), 400,
            "\"lora_alpha\" is 1.0E308, outside the allowed range -10000 to 10000");
        assertEquals("invalid_adapter", err.get("code").asText());
        assertError(get("/v1/adapters/alpha-1e308"), 404);
        assertStillServesTheGoodRequests();
    }

    /**
     * Before: an adapter whose update overflows float32 made NaN logits; greedy then returned 12
     * {@code <s>} with {@code finish_reason: length}, and top_p < 1 a 500 from an
     * ArrayIndexOutOfBoundsException in the sampler. Finite weights of 1e30 pass validation (they
     * are finite), so this is what the sampler's rule for non-finite logits is for.
     */
    @Test
    void nanLogitsFailTheRequestAsNonFiniteLogitsNotGarbageTokensOrAnIndexError() throws Exception {
        Peft p = Peft.random(4, 8, 11, "q_proj", "v_proj").edit(x -> x.tensors.values().forEach(t -> Arrays.fill(t.values(), 1e30f)));
        assertEquals(201, upload(p.files().form("overflow")).statusCode());
        try {
            List<Consumer<ObjectNode>> paths = List.of(b -> { }, b -> b.put("temperature", 1).put("top_p", 0.5).put("seed", 3),
                b -> b.put("temperature", 0.7).put("seed", 4).put("logprobs", 2), b -> b.put("n", 3).put("temperature", 1));
            for (Consumer<ObjectNode> more : paths) {
                String body = completion("overflow", more);
                JsonNode err = assertError(send(post("/v1/completions", body)), 500, "no finite logit");
                assertEquals("non_finite_logits", err.get("code").asText(), body);
            }
            HttpResponse<String> stream = send(post("/v1/completions", completion("overflow", b -> b.put("stream", true))));
            assertEquals(200, stream.statusCode());
            assertTrue(stream.body().contains("\"code\":\"non_finite_logits\""), stream.body());
            assertTrue(stream.body().endsWith("data: [DONE]\n\n"), stream.body());
            assertStillServesTheGoodRequests();
        } finally {
            assertEquals(200, send(HttpRequest.newBuilder(URI.create(url + "/v1/adapters/overflow")).DELETE()).statusCode());
        }
    }

    // ---- item 8: an adapter named like the base model -------------------------------------------

    @Test
    void adapterNamedLikeTheBaseModelIsA409AndModelsListsTheIdOnce() throws Exception {
        Files2 files = UploadFixtures.demo(dir, "demo-r4");
        JsonNode err = assertError(upload(files.form("demo")), 409, "'demo' is the base model's id");
        assertEquals("name", err.get("param").asText());
        HttpResponse<String> models = get("/v1/models");
        assertEquals(200, models.statusCode());
        List<String> ids = new ArrayList<>();
        JSON.readTree(models.body()).get("data").forEach(m -> ids.add(m.get("id").asText()));
        assertEquals(1, ids.stream().filter("demo"::equals).count(), ids.toString());
        JsonNode base = JSON.readTree(get("/v1/models/demo").body());
        assertEquals("system", base.get("owned_by").asText());
        assertTrue(base.get("parent").isNull(), "GET /v1/models/demo is the base model");
        assertStillServesTheGoodRequests();
    }

    // ---- item 10: --max-queued counts sequences ---------------------------------------------------

    /** {@code count} prompts with {@code n} choices each, for {@code model}. */
    static String prompts(String model, int count, int n) {
        ObjectNode b = JSON.createObjectNode().put("model", model).put("max_tokens", 2).put("temperature", 0).put("n", n);
        ArrayNode ps = b.putArray("prompt");
        for (int i = 0; i < count; i++) {
            ps.add("p" + i);
        }
        return b.toString();
    }

    @Test
    void oneHundredPromptsTimesSixteenIsA400NamingBothNumbers() throws Exception {
        assertError(send(post("/v1/completions", prompts("demo", 100, 16))), 400,
            "needs 1600 sequences (100 prompts × n = 16), more than the " + MAX_QUEUED + " that may wait");
        assertEquals(0, engine.queued());
        assertStillServesTheGoodRequests();
    }

    @Test
    void tenThousandPromptsOnAnEmptyQueueAreA400NotAFullQueue() throws Exception {
        assertEquals(0, engine.queued(), "the queue is empty");
        HttpResponse<String> r = send(post("/v1/completions", prompts("demo", 10_000, 1)));
        assertError(r, 400, "needs 10000 sequences", "more than the " + MAX_QUEUED);
        assertFalse(r.body().contains("already queued"), r.body());
        assertFalse(r.headers().firstValue("Retry-After").isPresent(), "retrying never helps a request this large");
        assertStillServesTheGoodRequests();
    }

    /**
     * Fills the queue exactly (2 prompts × n = 16 of an adapter that cannot page in while the loader
     * is held), then one more sequence is a 429 naming the queued count and the limit; once the
     * adapter loads, the 32 run and the queue empties.
     */
    @Test
    void aRequestThatFitsAnEmptyQueueButNotTheCurrentOneIsA429NamingTheQueuedCountAndTheLimit() throws Exception {
        assertEquals(201, upload(UploadFixtures.demo(dir, "demo-r16").form("queued-bot")).statusCode()); // not resident yet
        CountDownLatch held = new CountDownLatch(1);
        stack.loader.submit(() -> {
            held.await();
            return null;
        });
        CompletableFuture<HttpResponse<String>> filler;
        try {
            filler = HTTP.sendAsync(post("/v1/completions", prompts("queued-bot", 2, 16)).timeout(BOUND).build(), HttpResponse.BodyHandlers.ofString());
            long deadline = System.nanoTime() + BOUND.toNanos();
            while (engine.queued() < MAX_QUEUED && System.nanoTime() < deadline && !filler.isDone()) {
                Thread.sleep(5);
            }
            assertEquals(MAX_QUEUED, engine.queued(), "2 prompts × n = 16 fill the queue of 32 exactly");
            HttpResponse<String> r = send(post("/v1/completions", completion("demo", b -> { })));
            JsonNode err = assertError(r, 429, MAX_QUEUED + " sequences are already queued and this request needs 1 more, over the limit of "
                + MAX_QUEUED);
            assertEquals("queue_full", err.get("code").asText());
            assertTrue(r.headers().firstValue("Retry-After").isPresent(), "a 429 says when to retry");
        } finally {
            held.countDown();
        }
        HttpResponse<String> done = filler.get(BOUND.toSeconds(), TimeUnit.SECONDS);
        assertEquals(200, done.statusCode(), done.body());
        assertEquals(32, JSON.readTree(done.body()).get("choices").size());
        assertEquals(0, engine.queued());
        assertStillServesTheGoodRequests();
    }
}
