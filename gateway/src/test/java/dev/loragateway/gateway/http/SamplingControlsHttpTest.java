package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The OpenAI / vLLM sampling parameters end to end, over HTTP on the demo model: greedy outputs
 * against a reference loop (the forward pass's logits, the transform written here in double,
 * argmax), {@code min_tokens}, {@code ignore_eos}, {@code stop_token_ids}, seeds with {@code n},
 * {@code max_completion_tokens}, {@code response_format}, and a 400 naming each parameter when it
 * is wrong.
 */
class SamplingControlsHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int MAX_LEN = 128;
    private static final String CHAT_MESSAGES = "\"messages\":[{\"role\":\"user\",\"content\":\"Tell me about adapters\"}]";
    @TempDir
    static Path dir;
    private static DemoServer server;
    private static int vocab;
    private static int eos;

    @BeforeAll
    static void start() throws Exception {
        server = DemoServer.start(dir, 16, MAX_LEN);
        vocab = server.model.config().vocabSize();
        eos = server.model.config().eosTokenIds()[0];
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    // ---- the reference -------------------------------------------------------------------------

    /** Greedy knobs of the reference: bias, OpenAI's penalties (generated tokens), vLLM's repetition penalty (all tokens). */
    record Knobs(Map<Integer, Double> bias, double presence, double frequency, double repetition, boolean ignoreEos) {
    }

    /**
     * Greedy tokens from the forward pass with {@code k} applied to its logits before each argmax;
     * stops after an end-of-sequence token (included) unless {@code ignoreEos}.
     */
    static List<Integer> reference(int[] prompt, int n, Knobs k) {
        try (CpuBackend cpu = new CpuBackend(1)) {
            ForwardPass fp = new ForwardPass(server.model, cpu);
            KvCache cache = new KvCache(server.model.config(), prompt.length + n);
            StepBatch b = new StepBatch();
            for (int i = 0; i < prompt.length; i++) {
                b.add(cache, prompt[i], i == prompt.length - 1);
            }
            float[] logits = new float[vocab];
            fp.step(b, logits);
            List<Integer> out = new ArrayList<>();
            for (int step = 0; step < n; step++) {
                Map<Integer, Integer> counts = new HashMap<>();
                out.forEach(t -> counts.merge(t, 1, Integer::sum));
                Set<Integer> seen = new HashSet<>(counts.keySet());
                for (int t : prompt) {
                    seen.add(t);
                }
                int best = -1;
                double bestValue = Double.NEGATIVE_INFINITY;
                for (int t = 0; t < vocab; t++) {
                    double x = logits[t] + k.bias().getOrDefault(t, 0.0);
                    if (seen.contains(t)) {
                        x = x > 0 ? x / k.repetition() : x * k.repetition();
                    }
                    int c = counts.getOrDefault(t, 0);
                    x -= k.frequency() * c + (c > 0 ? k.presence() : 0);
                    if (x > bestValue) {
                        bestValue = x;
                        best = t;
                    }
                }
                out.add(best);
                if (!k.ignoreEos() && server.model.config().isEos(best)) {
                    break;
                }
                b.clear();
                b.add(cache, best, true);
                fp.step(b, logits);
            }
            return out;
        }
    }

    /** The text the server returns for {@code tokens}: the end-of-sequence token is never shown. */
    static String text(List<Integer> tokens) {
        return server.tokenizer.decode(tokens.stream().mapToInt(Integer::intValue).toArray(), true);
    }

    static ObjectNode completion(int[] prompt, int maxTokens) {
        ObjectNode r = JSON.createObjectNode().put("model", "demo").put("max_tokens", maxTokens).put("temperature", 0);
        r.set("prompt", JSON.valueToTree(prompt));
        return r;
    }

    static JsonNode ok(String path, JsonNode body) throws Exception {
        HttpResponse<String> r = server.post(path, body.toString());
        assertEquals(200, r.statusCode(), body + " -> " + r.body());
        return JSON.readTree(r.body());
    }

    static int[] prompt(String text) {
        return server.tokenizer.encode(text, true);
    }

    /** A token whose text is plain and not empty, and is not the end of a sequence. */
    static int plainToken(int from) {
        for (int t = from; ; t++) {
            String s = server.tokenizer.decode(new int[] {t}, true);
            if (!server.model.config().isEos(t) && s.matches("[a-z]{2,}")) {
                return t;
            }
        }
    }

    // ---- the tests -----------------------------------------------------------------------------

    @Test
    void logitBiasOfOneHundredAlwaysEmitsThatToken() throws Exception {
        int t = plainToken(100);
        ObjectNode req = completion(prompt("The gateway"), 6);
        req.putObject("logit_bias").put(String.valueOf(t), 100);
        JsonNode r = ok("/v1/completions", req);
        assertEquals(text(List.of(t, t, t, t, t, t)), r.get("choices").get(0).get("text").asText());
        assertEquals(6, r.get("usage").get("completion_tokens").asInt());
        // chat too, sampled: +100 leaves every other token e^-100 behind
        JsonNode chat = JSON.readTree(server.post("/v1/chat/completions", "{\"model\":\"demo\"," + CHAT_MESSAGES
            + ",\"max_completion_tokens\":4,\"temperature\":1,\"seed\":5,\"logit_bias\":{\"" + t + "\":100}}").body());
        assertEquals(text(List.of(t, t, t, t)), chat.get("choices").get(0).get("message").get("content").asText(), chat.toString());
    }

    @Test
    void greedyWithBiasAndPenaltiesEqualsTheReferenceLoop() throws Exception {
        int[] p = prompt("Once upon a time the adapters");
        List<Integer> plain = reference(p, 12, new Knobs(Map.of(), 0, 0, 1, false));
        // a bias that turns the first step's runner-up into the winner, and one that removes another token
        Map<Integer, Double> bias = new HashMap<>();
        bias.put(plain.get(0), -3.5);
        bias.put(plainToken(200), 2.25);
        List<Knobs> cases = List.of(
            new Knobs(bias, 0, 0, 1, false),
            new Knobs(Map.of(), 0, 0, 1.6, false),
            new Knobs(Map.of(), 0, 0, 0.7, false),
            new Knobs(Map.of(), 0, 1.3, 1, false),
            new Knobs(Map.of(), 1.1, 0, 1, false),
            new Knobs(Map.of(), -0.8, 0.5, 1, true),
            new Knobs(bias, 0.6, 0.9, 1.3, true));
        boolean differs = false;
        for (Knobs k : cases) {
            List<Integer> want = reference(p, 12, k);
            differs |= !want.equals(plain);
            ObjectNode req = completion(p, 12).put("presence_penalty", k.presence()).put("frequency_penalty", k.frequency())
                .put("repetition_penalty", k.repetition()).put("ignore_eos", k.ignoreEos());
            ObjectNode lb = req.putObject("logit_bias");
            k.bias().forEach((t, v) -> lb.put(String.valueOf(t), v));
            JsonNode r = ok("/v1/completions", req);
            JsonNode c = r.get("choices").get(0);
            assertEquals(text(want), c.get("text").asText(), k.toString());
            assertEquals(want.size(), r.get("usage").get("completion_tokens").asInt(), k.toString());
            assertEquals(want.size() == 12 && !server.model.config().isEos(want.get(11)) || k.ignoreEos() ? "length" : "stop",
                c.get("finish_reason").asText(), k.toString());
        }
        assertTrue(differs, "the knobs change the greedy output (else this test could not fail)");
    }

    @Test
    void minTokensMasksTheEndOfSequenceUntilReached() throws Exception {
        int[] p = prompt("Adapters");
        ObjectNode req = completion(p, 10);
        req.putObject("logit_bias").put(String.valueOf(eos), 100);
        JsonNode now = ok("/v1/completions", req);
        assertEquals(1, now.get("usage").get("completion_tokens").asInt(), "precondition: the biased EOS comes first");
        assertEquals("stop", now.get("choices").get(0).get("finish_reason").asText());
        assertEquals("", now.get("choices").get(0).get("text").asText());
        for (int min : new int[] {1, 4, 9}) {
            JsonNode r = ok("/v1/completions", req.deepCopy().put("min_tokens", min));
            assertEquals(min + 1, r.get("usage").get("completion_tokens").asInt(), "min_tokens " + min);
            assertEquals("stop", r.get("choices").get(0).get("finish_reason").asText());
        }
        // sampled, EOS likely but not certain: never before min_tokens, over several seeds
        ObjectNode sampled = req.deepCopy().put("temperature", 1).put("min_tokens", 5);
        sampled.putObject("logit_bias").put(String.valueOf(eos), 4);
        for (int seed = 0; seed < 6; seed++) {
            JsonNode r = ok("/v1/completions", sampled.deepCopy().put("seed", seed));
            assertTrue(r.get("usage").get("completion_tokens").asInt() >= 5, r.toString());
        }
        // ignore_eos: the EOS neither ends it nor shows
        JsonNode ignored = ok("/v1/completions", req.deepCopy().put("ignore_eos", true).put("max_tokens", 5));
        assertEquals(5, ignored.get("usage").get("completion_tokens").asInt());
        assertEquals("length", ignored.get("choices").get(0).get("finish_reason").asText());
        assertEquals("", ignored.get("choices").get(0).get("text").asText());
    }

    @Test
    void stopTokenIdsEndTheChoiceWithStop() throws Exception {
        int[] p = prompt("The gateway serves");
        List<Integer> plain = reference(p, 12, new Knobs(Map.of(), 0, 0, 1, true));
        int at = -1;
        for (int i = 1; i < Math.min(plain.size(), 8) && at < 0; i++) {
            if (!plain.subList(0, i).contains(plain.get(i)) && !server.model.config().isEos(plain.get(i))) {
                at = i;
            }
        }
        assertTrue(at > 0, "precondition: a token that first appears after the first: " + plain);
        ObjectNode req = completion(p, 12).put("ignore_eos", true);
        req.putArray("stop_token_ids").add(plain.get(at)).add(vocab - 1 == plain.get(at) ? 0 : vocab - 1);
        JsonNode r = ok("/v1/completions", req);
        JsonNode c = r.get("choices").get(0);
        assertEquals("stop", c.get("finish_reason").asText());
        assertEquals(at + 1, r.get("usage").get("completion_tokens").asInt(), "the stop token counts");
        assertEquals(text(plain.subList(0, at)), c.get("text").asText(), "the stop token is not in the text");
        // min_tokens masks it until reached: it cannot stop within the first at + 1 tokens
        JsonNode later = ok("/v1/completions", req.deepCopy().put("min_tokens", at + 1));
        assertTrue(later.get("usage").get("completion_tokens").asInt() > at + 1, later.toString());
    }

    @Test
    void aSeedWithNGivesDistinctChoicesThatRepeat() throws Exception {
        for (String path : new String[] {"/v1/completions", "/v1/chat/completions"}) {
            String body = "{\"model\":\"demo\"," + (path.contains("chat") ? CHAT_MESSAGES : "\"prompt\":\"Once\"")
                + ",\"max_tokens\":16,\"temperature\":1,\"n\":4,\"seed\":1234,\"top_k\":50,\"min_p\":0.01,\"frequency_penalty\":0.3}";
            JsonNode a = JSON.readTree(server.post(path, body).body());
            JsonNode b = JSON.readTree(server.post(path, body).body());
            Set<String> texts = new HashSet<>();
            for (JsonNode c : a.get("choices")) {
                texts.add(c.toString().replace("\"index\":" + c.get("index"), ""));
            }
            assertEquals(4, a.get("choices").size(), a.toString());
            assertTrue(texts.size() > 1, "the 4 choices are not all the same: " + a);
            assertEquals(a.get("choices"), b.get("choices"), "the same request twice, the same choices");
        }
    }

    @Test
    void maxCompletionTokensIsAnAliasOfMaxTokens() throws Exception {
        int[] p = prompt("Adapters share");
        ObjectNode base = completion(p, 5).put("ignore_eos", true);
        JsonNode five = ok("/v1/completions", base);
        ObjectNode alias = base.deepCopy();
        alias.remove("max_tokens");
        alias.put("max_completion_tokens", 5);
        assertEquals(five.get("choices"), ok("/v1/completions", alias).get("choices"));
        assertEquals(five.get("choices"), ok("/v1/completions", base.deepCopy().put("max_completion_tokens", 5)).get("choices"));
        // both with different limits: max_completion_tokens wins, as in vLLM
        JsonNode six = ok("/v1/completions", base.deepCopy().put("max_tokens", 2).put("max_completion_tokens", 6));
        assertEquals(6, six.get("usage").get("completion_tokens").asInt(), six.toString());
        ObjectNode tooLong = base.deepCopy();
        tooLong.remove("max_tokens");
        tooLong.put("max_completion_tokens", 100000);
        HttpResponse<String> r = server.post("/v1/completions", tooLong.toString());
        assertEquals(400, r.statusCode());
        assertEquals("max_completion_tokens", JSON.readTree(r.body()).get("error").get("param").asText());
    }

    @Test
    void responseFormatTextIsAcceptedStructuredOutputIsNotYet() throws Exception {
        ObjectNode req = completion(prompt("Adapters"), 3);
        req.putObject("response_format").put("type", "text");
        JsonNode withText = ok("/v1/completions", req);
        assertEquals(ok("/v1/completions", completion(prompt("Adapters"), 3)).get("choices"), withText.get("choices"));
        for (String type : new String[] {"json_object", "json_schema"}) {
            for (String path : new String[] {"/v1/completions", "/v1/chat/completions"}) {
                String body = "{\"model\":\"demo\"," + (path.contains("chat") ? CHAT_MESSAGES : "\"prompt\":\"x\"")
                    + ",\"response_format\":{\"type\":\"" + type + "\"}}";
                HttpResponse<String> r = server.post(path, body);
                assertEquals(400, r.statusCode(), body);
                JsonNode e = JSON.readTree(r.body()).get("error");
                assertEquals("response_format", e.get("param").asText());
                assertTrue(e.get("message").asText().contains("not supported yet"), e.toString());
            }
        }
    }

    @Test
    void badValuesAre400sNamingTheParameter() throws Exception {
        String[][] cases = {
            {"\"logit_bias\":[1]", "logit_bias"},
            {"\"logit_bias\":{\"abc\":1}", "logit_bias"},
            {"\"logit_bias\":{\"1.5\":1}", "logit_bias"},
            {"\"logit_bias\":{\"-1\":1}", "logit_bias"},
            {"\"logit_bias\":{\"" + 512 + "\":1}", "logit_bias"},
            {"\"logit_bias\":{\"99999999999999999999\":1}", "logit_bias"},
            {"\"logit_bias\":{\"3\":101}", "logit_bias"},
            {"\"logit_bias\":{\"3\":-100.5}", "logit_bias"},
            {"\"logit_bias\":{\"3\":\"high\"}", "logit_bias"},
            {"\"logit_bias\":{\"3\":1,\"03\":2}", "logit_bias"},
            {"\"logit_bias\":" + manyBiases(301), "logit_bias"},
            {"\"presence_penalty\":2.5", "presence_penalty"},
            {"\"presence_penalty\":\"1\"", "presence_penalty"},
            {"\"frequency_penalty\":-2.01", "frequency_penalty"},
            {"\"frequency_penalty\":true", "frequency_penalty"},
            {"\"repetition_penalty\":0", "repetition_penalty"},
            {"\"repetition_penalty\":-1", "repetition_penalty"},
            {"\"repetition_penalty\":1e400", "repetition_penalty"},
            {"\"repetition_penalty\":\"x\"", "repetition_penalty"},
            {"\"top_k\":-2", "top_k"},
            {"\"top_k\":1.5", "top_k"},
            {"\"top_k\":\"5\"", "top_k"},
            {"\"min_p\":1.01", "min_p"},
            {"\"min_p\":-0.1", "min_p"},
            {"\"min_tokens\":-1", "min_tokens"},
            {"\"min_tokens\":5,\"max_tokens\":4", "min_tokens"},
            {"\"min_tokens\":\"2\"", "min_tokens"},
            {"\"ignore_eos\":1", "ignore_eos"},
            {"\"stop_token_ids\":5", "stop_token_ids"},
            {"\"stop_token_ids\":[\"5\"]", "stop_token_ids"},
            {"\"stop_token_ids\":[1.5]", "stop_token_ids"},
            {"\"stop_token_ids\":[512]", "stop_token_ids"},
            {"\"stop_token_ids\":[-1]", "stop_token_ids"},
            {"\"response_format\":\"json\"", "response_format"},
            {"\"response_format\":{}", "response_format"},
            {"\"response_format\":{\"type\":\"xml\"}", "response_format"},
            {"\"response_format\":{\"type\":5}", "response_format"},
            {"\"max_completion_tokens\":-1", "max_completion_tokens"},
        };
        for (String path : new String[] {"/v1/completions", "/v1/chat/completions"}) {
            for (String[] c : cases) {
                String body = "{\"model\":\"demo\"," + (path.contains("chat") ? CHAT_MESSAGES : "\"prompt\":\"x\"") + "," + c[0] + "}";
                HttpResponse<String> r = server.post(path, body);
                assertEquals(400, r.statusCode(), path + " " + body + " -> " + r.body());
                JsonNode e = JSON.readTree(r.body()).get("error");
                assertEquals(c[1], e.get("param").asText(), body + " -> " + r.body());
                assertTrue(e.get("message").asText().contains(c[1]), "the message names " + c[1] + ": " + e);
            }
        }
        // the edges are accepted
        String edges = "{\"model\":\"demo\",\"prompt\":\"x\",\"max_tokens\":2,\"logit_bias\":{\"3\":-100,\"4\":100},\"presence_penalty\":-2,"
            + "\"frequency_penalty\":2,\"repetition_penalty\":0.01,\"top_k\":-1,\"min_p\":1,\"min_tokens\":2,\"ignore_eos\":false,"
            + "\"stop_token_ids\":[],\"response_format\":{\"type\":\"text\"}}";
        HttpResponse<String> r = server.post("/v1/completions", edges);
        assertEquals(200, r.statusCode(), r.body());
        assertEquals(200, server.post("/v1/completions", edges.replace("\"top_k\":-1", "\"top_k\":0")).statusCode(), "top_k 0 is off too");
    }

    private static String manyBiases(int n) {
        StringBuilder b = new StringBuilder("{");
        for (int i = 0; i < n; i++) {
            b.append(i == 0 ? "" : ",").append('"').append(i).append("\":1");
        }
        return b.append('}').toString();
    }
}
