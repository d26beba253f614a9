package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.gateway.auth.Tenants;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --api-keys}: keys name tenants (401 otherwise), and per-tenant rate and concurrency limits answer 429 with Retry-After. */
class AuthHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    @TempDir
    static Path dir;
    private static DemoServer server;
    private static String base;

    @BeforeAll
    static void start() throws Exception {
        Path keys = dir.resolve("keys.json");
        Files.writeString(keys, """
            { "tenants": [
                { "id": "acme", "keys": ["sk-acme-1"] },
                { "id": "slow", "keys": ["sk-slow-1"], "max_requests_per_second": 0.2 },
                { "id": "single", "keys": ["sk-single-1"], "max_concurrent_requests": 1 },
                { "id": "once", "keys": ["sk-once-1"], "max_requests_per_second": 0.2 }
            ] }""");
        Tenants tenants = Tenants.load(keys);
        server = DemoServer.start(dir, 64, 4096, s -> s.tenants(tenants));
        base = server.base;
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    private static HttpResponse<String> send(String method, String path, String key, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).header("Content-Type", "application/json")
            .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static final String SMALL = "{\"model\":\"demo\",\"prompt\":\"The adapter\",\"max_tokens\":3,\"temperature\":0}";

    @Test
    void everyApiRouteNeedsAKnownKey() throws Exception {
        for (String[] r : new String[][] {{"GET", "/v1/models", null}, {"POST", "/v1/completions", SMALL}}) {
            for (String key : new String[] {null, "sk-acme-2", "sk-acme-1x", "sk-slow-"}) {
                HttpResponse<String> resp = send(r[0], r[1], key, r[2]);
                assertEquals(401, resp.statusCode(), r[1] + " with key " + key + ": " + resp.body());
                JsonNode err = JSON.readTree(resp.body()).get("error");
                assertEquals("invalid_api_key", err.get("code").asText());
                assertTrue(err.get("message").asText().contains("API key"), err.toString());
            }
            assertEquals(200, send(r[0], r[1], "sk-acme-1", r[2]).statusCode());
        }
        assertEquals(200, send("GET", "/health", null, null).statusCode(), "/health needs no key");
    }

    @Test
    void aTenantOverItsRequestRateGets429WithRetryAfter() throws Exception {
        assertEquals(200, send("GET", "/v1/models", "sk-slow-1", null).statusCode());
        HttpResponse<String> r = send("GET", "/v1/models", "sk-slow-1", null);
        assertEquals(429, r.statusCode(), r.body());
        long retry = Long.parseLong(r.headers().firstValue("Retry-After").orElseThrow());
        assertTrue(retry >= 4 && retry <= 5, "Retry-After " + retry + " for 0.2 requests per second");
        assertTrue(r.body().contains("0.2 requests per second"), r.body());
        assertEquals(200, send("GET", "/v1/models", "sk-acme-1", null).statusCode(), "another tenant is not limited by it");
    }

    /**
     * Regression: a completion took two tokens (one when authenticated, one with its concurrency
     * slot), so a tenant got half its rate, and one whose bucket holds a single request (0.2 per
     * second) could not run a completion at all.
     */
    @Test
    void aCompletionCountsOnceAgainstTheRequestRate() throws Exception {
        HttpResponse<String> first = send("POST", "/v1/completions", "sk-once-1", SMALL);
        assertEquals(200, first.statusCode(), "the one request of its bucket: " + first.body());
        HttpResponse<String> second = send("POST", "/v1/completions", "sk-once-1", SMALL);
        assertEquals(429, second.statusCode(), second.body());
        assertTrue(second.body().contains("0.2 requests per second"), second.body());
    }

    @Test
    void aTenantAtItsConcurrencyLimitGets429UntilItsRequestEnds() throws Exception {
        // a greedy prompt that runs to max_tokens (no end-of-sequence token), so the stream lasts
        String prompt = null;
        for (String p : new String[] {"The adapter", "Once upon a time", "lora", "x y z", "batch"}) {
            HttpResponse<String> probe = send("POST", "/v1/completions", "sk-acme-1",
                "{\"model\":\"demo\",\"prompt\":\"" + p + "\",\"max_tokens\":1500,\"temperature\":0}");
            if (JSON.readTree(probe.body()).at("/choices/0/finish_reason").asText().equals("length")) {
                prompt = p;
                break;
            }
        }
        assertTrue(prompt != null, "no probe prompt ran to max_tokens");
        String longStream = "{\"model\":\"demo\",\"prompt\":\"" + prompt + "\",\"max_tokens\":1500,\"temperature\":0,\"stream\":true}";
        HttpRequest req = HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Authorization", "Bearer sk-single-1")
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(longStream)).build();
        HttpResponse<InputStream> first = HTTP.send(req, HttpResponse.BodyHandlers.ofInputStream());
        assertEquals(200, first.statusCode());
        try (InputStream in = first.body()) {
            assertTrue(in.read() >= 0, "the stream started");
            HttpResponse<String> second = send("POST", "/v1/completions", "sk-single-1", SMALL);
            assertEquals(429, second.statusCode(), second.body());
            assertEquals("1", second.headers().firstValue("Retry-After").orElseThrow());
            assertTrue(second.body().contains("1 requests running"), second.body());
            assertEquals(200, send("GET", "/v1/models", "sk-single-1", null).statusCode(), "listing models is not an inference request");
            in.readAllBytes(); // the first one runs to its end
        }
        HttpResponse<String> third = send("POST", "/v1/completions", "sk-single-1", SMALL);
        assertEquals(200, third.statusCode(), "the slot was released: " + third.body());
    }

    @Test
    void aSingleModelIsRetrievedByIdAndUnknownOnesAre404() throws Exception {
        HttpResponse<String> r = send("GET", "/v1/models/demo", "sk-acme-1", null);
        assertEquals(200, r.statusCode(), r.body());
        JsonNode m = JSON.readTree(r.body());
        assertEquals("demo", m.get("id").asText());
        assertEquals("model", m.get("object").asText());
        HttpResponse<String> missing = send("GET", "/v1/models/nope", "sk-acme-1", null);
        assertEquals(404, missing.statusCode());
        assertEquals("model_not_found", JSON.readTree(missing.body()).at("/error/code").asText());
        assertEquals(401, send("GET", "/v1/models/demo", null, null).statusCode());
    }
}
