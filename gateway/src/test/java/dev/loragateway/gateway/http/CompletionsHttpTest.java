package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A real server on 127.0.0.1 with the demo model, driven over HTTP. */
class CompletionsHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    static Path dir;
    private static DemoServer server;
    private static LlamaModel model;
    private static TextTokenizer tokenizer;
    private static String base;
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final int MAX_LEN = 128;

    @BeforeAll
    static void start() throws Exception {
        server = DemoServer.start(dir, 8, MAX_LEN);
        model = server.model;
        tokenizer = server.tokenizer;
        base = server.base;
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    static HttpResponse<String> post(String path, String body) throws Exception {
        return server.post(path, body);
    }

    /** Greedy tokens straight from the forward pass, stopping at EOS (excluded). */
    static List<Integer> greedy(int[] prompt, int n) {
        try (CpuBackend cpu = new CpuBackend(1)) {
            ForwardPass fp = new ForwardPass(model, cpu);
            KvCache cache = new KvCache(model.config(), 8);
            StepBatch b = new StepBatch();
            for (int i = 0; i < prompt.length; i++) {
                b.add(cache, prompt[i], i == prompt.length - 1);
            }
            float[] logits = new float[model.config().vocabSize()];
            fp.step(b, logits);
            List<Integer> out = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int best = 0;
                for (int j = 1; j < logits.length; j++) {
                    if (logits[j] > logits[best]) {
                        best = j;
                    }
                }
                if (model.config().isEos(best)) {
                    break;
                }
                out.add(best);
                b.clear();
                b.add(cache, best, true);
                fp.step(b, logits);
            }
            return out;
        }
    }

    @Test
    void greedyCompletionEqualsForwardPassTokens() throws Exception {
        String prompt = "The gateway serves adapters";
        int[] ids = tokenizer.encode(prompt, true);
        List<Integer> expected = greedy(ids, 20);
        String expectedText = tokenizer.decode(expected.stream().mapToInt(Integer::intValue).toArray(), true);

        HttpResponse<String> r = post("/v1/completions",
            "{\"model\":\"demo\",\"prompt\":" + JSON.writeValueAsString(prompt) + ",\"max_tokens\":20,\"temperature\":0,\"logprobs\":2}");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode body = JSON.readTree(r.body());
        JsonNode choice = body.get("choices").get(0);
        assertEquals(expectedText, choice.get("text").asText());
        assertEquals("text_completion", body.get("object").asText());
        assertEquals("demo", body.get("model").asText());
        assertEquals(ids.length, body.get("usage").get("prompt_tokens").asInt());
        assertEquals(expected.size() == 20 ? "length" : "stop", choice.get("finish_reason").asText());
        assertEquals(Math.min(20, expected.size() + 1), body.get("usage").get("completion_tokens").asInt());
        JsonNode lp = choice.get("logprobs");
        assertEquals(expected.size(), lp.get("tokens").size());
        for (JsonNode v : lp.get("token_logprobs")) {
            assertTrue(v.asDouble() <= 0, "a log-probability is <= 0: " + v);
        }
        assertEquals(2, lp.get("top_logprobs").get(0).size());

        // the same prompt as token ids gives the same text
        HttpResponse<String> r2 = post("/v1/completions",
            "{\"model\":\"demo\",\"prompt\":" + JSON.writeValueAsString(ids) + ",\"max_tokens\":20,\"temperature\":0}");
        assertEquals(expectedText, JSON.readTree(r2.body()).get("choices").get(0).get("text").asText());
    }

    @Test
    void seededSamplingRepeatsAndStopStringsCut() throws Exception {
        String req = "{\"model\":\"demo\",\"prompt\":\"Once\",\"max_tokens\":24,\"temperature\":1.0,\"top_p\":0.9,\"seed\":7}";
        String a = JSON.readTree(post("/v1/completions", req).body()).get("choices").get(0).get("text").asText();
        String b = JSON.readTree(post("/v1/completions", req).body()).get("choices").get(0).get("text").asText();
        assertEquals(a, b);
        String other = JSON.readTree(post("/v1/completions", req.replace("\"seed\":7", "\"seed\":8")).body())
            .get("choices").get(0).get("text").asText();
        assertNotEquals(a, other, "another seed gives another sample");
        // a stop string taken from the middle of the sampled text cuts it there
        if (a.length() >= 6) {
            String stop = a.substring(3, 5);
            JsonNode c = JSON.readTree(post("/v1/completions", req.replace("}", ",\"stop\":" + JSON.writeValueAsString(stop) + "}")).body())
                .get("choices").get(0);
            assertEquals(a.substring(0, a.indexOf(stop)), c.get("text").asText());
            assertEquals("stop", c.get("finish_reason").asText());
        }
    }

    @Test
    void streamingDeltasConcatenateToTheText() throws Exception {
        String req = "{\"model\":\"demo\",\"prompt\":\"Adapters\",\"max_tokens\":16,\"temperature\":0";
        String full = JSON.readTree(post("/v1/completions", req + "}").body()).get("choices").get(0).get("text").asText();
        HttpResponse<String> s = post("/v1/completions", req + ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
        assertEquals(200, s.statusCode());
        StringBuilder text = new StringBuilder();
        boolean usage = false;
        SseEvents events = SseEvents.parse(s.body());
        for (JsonNode chunk : events.chunks()) {
            if (chunk.has("usage")) {
                usage = true;
            }
            for (JsonNode c : chunk.get("choices")) {
                text.append(c.get("text").asText());
            }
        }
        assertTrue(events.done(), "stream ends with [DONE]");
        assertTrue(usage, "include_usage sends a usage chunk");
        assertEquals(full, text.toString());
    }

    @Test
    void badInputsGetNamedErrorsAndTheServerKeepsServing() throws Exception {
        Object[][] cases = {
            {"{not json", 400, "JSON"},
            {"[1,2]", 400, "object"},
            {"{\"prompt\":\"x\"}", 400, "model"},
            {"{\"model\":\"demo\"}", 400, "prompt"},
            {"{\"model\":\"nope\",\"prompt\":\"x\"}", 404, "nope"},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"max_tokens\":-1}", 400, "max_tokens"},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"max_tokens\":\"ten\"}", 400, "max_tokens"},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"max_tokens\":100000}", 400, String.valueOf(MAX_LEN)},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs"},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"n\":1000}", 400, "'n'"},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"temperature\":-2}", 400, "temperature"},
            {"{\"model\":\"demo\",\"prompt\":[1,2,99999999]}", 400, "99999999"},
            {"{\"model\":\"demo\",\"prompt\":" + JSON.writeValueAsString("word ".repeat(200)) + "}", 400, String.valueOf(MAX_LEN)},
            {"{\"model\":\"demo\",\"prompt\":\"x\",\"stop\":5}", 400, "stop"},
        };
        for (Object[] c : cases) {
            HttpResponse<String> r = post("/v1/completions", (String) c[0]);
            assertEquals((int) c[1], r.statusCode(), "for " + c[0] + ": " + r.body());
            JsonNode err = JSON.readTree(r.body()).get("error");
            assertTrue(err.get("message").asText().contains((String) c[2]), "message for " + c[0] + " names " + c[2] + ": " + err);
        }
        // invalid UTF-8 bytes
        HttpResponse<String> bad = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .POST(HttpRequest.BodyPublishers.ofByteArray(new byte[] {'{', '"', (byte) 0xC3, (byte) 0x28, '"', '}'})).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(400, bad.statusCode());
        assertTrue(bad.body().contains("UTF-8"));
        assertEquals(404, HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/nothing")).build(),
            HttpResponse.BodyHandlers.ofString()).statusCode());
        HttpResponse<String> wrongMethod = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(405, wrongMethod.statusCode());
        assertTrue(JSON.readTree(wrongMethod.body()).has("error"));
        // still serving
        assertEquals(200, post("/v1/completions", "{\"model\":\"demo\",\"prompt\":\"ok\",\"max_tokens\":2}").statusCode());
        assertEquals(200, HTTP.send(HttpRequest.newBuilder(URI.create(base + "/health")).build(),
            HttpResponse.BodyHandlers.ofString()).statusCode());
    }

    /** Streamed logprobs, concatenated per choice across chunks, equal the non-streamed ones (stop text cut included; numbers up to their last bits). */
    @Test
    void streamedLogprobsEqualTheNonStreamedOnes() throws Exception {
        for (String extra : new String[] {"", ",\"echo\":true", ",\"stop\":[\"e\"]"}) {
            String req = "{\"model\":\"demo\",\"prompt\":\"The adapter\",\"max_tokens\":12,\"temperature\":1,\"seed\":5,\"n\":2,"
                + "\"logprobs\":2" + extra;
            JsonNode plain = JSON.readTree(post("/v1/completions", req + "}").body());
            HttpResponse<String> s = post("/v1/completions", req + ",\"stream\":true}");
            String[] fields = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
            List<List<JsonNode>> got = new ArrayList<>();
            for (int i = 0; i < 2 * fields.length; i++) {
                got.add(new ArrayList<>());
            }
            for (String line : s.body().split("\n")) {
                if (!line.startsWith("data: {")) {
                    continue;
                }
                JsonNode c = JSON.readTree(line.substring(6)).get("choices").get(0);
                JsonNode lp = c.get("logprobs");
                if (lp == null || lp.isNull()) {
                    continue; // the echoed prompt's chunk
                }
                for (int f = 0; f < fields.length; f++) {
                    lp.get(fields[f]).forEach(got.get(c.get("index").asInt() * fields.length + f)::add);
                }
            }
            for (int i = 0; i < 2; i++) {
                JsonNode want = plain.get("choices").get(i).get("logprobs");
                assertTrue(want.get("tokens").size() > 0, "no tokens in " + want);
                for (int f = 0; f < fields.length; f++) {
                    String what = "choice " + i + " " + fields[f] + " with " + extra;
                    assertSameUpToLastBits(want.get(fields[f]), JSON.valueToTree(got.get(i * fields.length + f)), what);
                }
            }
        }
    }

    /**
     * {@code got} has {@code want}'s structure, strings and integers exactly, and its floating-point
     * numbers within 1e-5 relative. Not bit for bit: from Java 23 on, C2 sums a Vector API float
     * reduction in another order than the interpreter does, so a request served while the kernels
     * are still being compiled can differ from a later one in the last bits (on Java 17 they agree).
     */
    private static void assertSameUpToLastBits(JsonNode want, JsonNode got, String what) {
        if (want.isFloatingPointNumber() && got.isNumber()) {
            double tol = 1e-5 * Math.max(1, Math.abs(want.asDouble()));
            assertTrue(Math.abs(want.asDouble() - got.asDouble()) <= tol, what + ": " + got + " for " + want + " (tolerance " + tol + ")");
        } else if (want.isContainerNode()) {
            assertEquals(want.size(), got.size(), what + ": " + got + " for " + want);
            List<String> wantNames = new ArrayList<>();
            want.fieldNames().forEachRemaining(wantNames::add);
            List<String> gotNames = new ArrayList<>();
            got.fieldNames().forEachRemaining(gotNames::add);
            assertEquals(wantNames, gotNames, what);
            for (int k = 0; k < want.size(); k++) {
                JsonNode w = want.isArray() ? want.get(k) : want.get(wantNames.get(k));
                JsonNode g = got.isArray() ? got.get(k) : got.get(wantNames.get(k));
                assertSameUpToLastBits(w, g, what + "[" + (want.isArray() ? k : wantNames.get(k)) + "]");
            }
        } else {
            assertEquals(want.toString(), got.toString(), what);
        }
    }
}
