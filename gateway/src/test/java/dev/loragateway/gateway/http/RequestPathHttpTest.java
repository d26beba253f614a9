package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.ModelConfig;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code /v1/completions} and {@code /v1/chat/completions} run the one {@link RequestPath}: the
 * two ways they once drifted apart, pinned for both, behind an {@link InferenceExecutor} whose
 * every choice fails the way the test says (the seam a cluster router plugs into).
 */
class RequestPathHttpTest {
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final String COMPLETIONS = "/v1/completions";
    private static final String CHAT = "/v1/chat/completions";

    @TempDir
    static Path dir;
    private static Vertx vertx;
    private static DemoStack stack;
    private static Failing executor;
    private static String base;
    private static final BlockingQueue<RequestObserver.Record> RECORDS = new LinkedBlockingQueue<>();

    /** Takes every request and fails each of its choices with {@link #failure}; keeps the last request. */
    static final class Failing implements InferenceExecutor {
        private final ModelConfig cfg;
        volatile RuntimeException failure;
        volatile Work last;

        Failing(ModelConfig cfg) {
            this.cfg = cfg;
        }

        @Override
        public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
            last = work;
            List<List<CompletableFuture<Generator.Finish>>> out = new ArrayList<>();
            for (Prompt p : work.prompts()) {
                List<CompletableFuture<Generator.Finish>> choices = new ArrayList<>();
                for (int i = 0; i < p.choices().size(); i++) {
                    choices.add(CompletableFuture.failedFuture(failure));
                }
                out.add(choices);
            }
            return out;
        }

        @Override
        public ModelConfig config() {
            return cfg;
        }

        @Override
        public String unhealthy(long stallNanos) {
            return null;
        }
    }

    @BeforeAll
    static void start() throws Exception {
        stack = DemoStack.create(dir, 2, false);
        executor = new Failing(stack.cfg);
        vertx = Vertx.vertx();
        base = "http://127.0.0.1:" + new ApiServer(vertx, executor, stack.tokenizer, "demo", 128, stack.registry).observer(RECORDS::add)
            .listen("127.0.0.1", 0).await();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        stack.loader.shutdownNow();
    }

    @BeforeEach
    void clear() {
        RECORDS.clear();
    }

    private static String body(String path, String model, boolean stream) {
        String input = path.equals(CHAT) ? "\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]" : "\"prompt\":\"hello there\"";
        return "{\"model\":\"" + model + "\"," + input + ",\"max_tokens\":4,\"stream\":" + stream + "}";
    }

    private static HttpResponse<String> post(String path, String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + path)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** The JSON of each {@code data:} event of a stream, {@code [DONE]} left out. */
    private static List<JsonNode> events(String stream) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String e : stream.split("\n\n")) {
            assertTrue(e.startsWith("data: "), e);
            String data = e.substring(6);
            if (!data.equals("[DONE]")) {
                out.add(Json.MAPPER.readTree(data));
            }
        }
        assertTrue(stream.endsWith("data: [DONE]\n\n"), stream);
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {COMPLETIONS, CHAT})
    void anIllegalArgumentIsTheSameErrorStreamedOrNot(String path) throws Exception {
        executor.failure = new IllegalArgumentException("token id 7 cannot follow this prompt");
        HttpResponse<String> whole = post(path, body(path, "demo", false));
        assertEquals(400, whole.statusCode(), whole.body());
        JsonNode error = Json.MAPPER.readTree(whole.body());
        assertEquals("invalid_request_error", error.get("error").get("type").asText(), whole.body());
        assertEquals("token id 7 cannot follow this prompt", error.get("error").get("message").asText());

        HttpResponse<String> streamed = post(path, body(path, "demo", true));
        assertEquals(200, streamed.statusCode(), "the head went out before the failure");
        List<JsonNode> events = events(streamed.body());
        assertEquals(error, events.get(events.size() - 1), "the stream ends with the error a whole answer gets: " + streamed.body());
    }

    @ParameterizedTest
    @ValueSource(strings = {COMPLETIONS, CHAT})
    void anInternalErrorIsTheSameErrorStreamedOrNot(String path) throws Exception {
        executor.failure = new IllegalStateException("a secret that must not reach the client");
        HttpResponse<String> whole = post(path, body(path, "demo", false));
        assertEquals(500, whole.statusCode(), whole.body());
        JsonNode error = Json.MAPPER.readTree(whole.body());
        assertEquals("internal error", error.get("error").get("message").asText(), whole.body());
        List<JsonNode> events = events(post(path, body(path, "demo", true)).body());
        assertEquals(error, events.get(events.size() - 1));
    }

    @ParameterizedTest
    @ValueSource(strings = {COMPLETIONS, CHAT})
    void anUnknownModelIsRecordedAsTheRequestNamedIt(String path) throws Exception {
        HttpResponse<String> r = post(path, body(path, "no-such-model", false));
        assertEquals(404, r.statusCode(), r.body());
        // the record of an earlier test's request may still arrive (it is made once its response ended): this request's has its id
        String id = r.headers().firstValue("X-Request-Id").orElseThrow();
        RequestObserver.Record rec;
        do {
            rec = RECORDS.poll(10, TimeUnit.SECONDS);
        } while (rec != null && !id.equals(rec.requestId()));
        assertNotNull(rec, "the request was recorded");
        assertEquals(path, rec.route());
        assertEquals(404, rec.status());
        assertEquals("no-such-model", rec.model(), "the model the request named, also when unknown");
    }

    @ParameterizedTest
    @ValueSource(strings = {COMPLETIONS, CHAT})
    void theExecutorGetsTheRequestIdTenantAndPrompt(String path) throws Exception {
        executor.failure = new IllegalArgumentException("refused");
        HttpResponse<String> r = post(path, body(path, "demo", false));
        InferenceExecutor.Work w = executor.last;
        assertEquals(r.headers().firstValue("X-Request-Id").orElseThrow(), w.requestId());
        assertEquals("default", w.tenant());
        assertNull(w.adapter(), "the base model");
        assertNotNull(w.trace());
        assertEquals(1, w.prompts().size());
        assertEquals(1, w.prompts().get(0).choices().size());
        assertEquals(4, w.prompts().get(0).choices().get(0).params().maxTokens());
    }
}
