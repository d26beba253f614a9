package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.batcher.Engine;
import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.text.ChatTemplate;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code /v1/chat/completions} over real HTTP with the demo model (and its adapters), checked
 * against {@code /v1/completions} of the prompt that the chat template renders, computed here
 * independently: chat = template + completion, for the answer, its log-probabilities and its usage.
 */
class ChatHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final int MAX_LEN = 128;
    private static final String ADAPTER = DemoAdapters.ALL.get(1).name();
    private static final List<Map<String, Object>> CONVERSATION = List.of(
        Map.of("role", "system", "content", "You answer briefly."),
        Map.of("role", "user", "content", "What does the gateway serve?"),
        Map.of("role", "assistant", "content", "Adapters."),
        Map.of("role", "user", "content", "Tell me more about adapters"));

    @TempDir
    static Path dir;
    private static Vertx vertx;
    private static Engine engine;
    private static ExecutorService loader;
    private static TextTokenizer tokenizer;
    private static String base;
    private static String untemplated; // the same engine behind a tokenizer without a chat_template

    @BeforeAll
    static void start() throws Exception {
        DemoStack stack = DemoStack.create(dir, 2, true);
        tokenizer = stack.tokenizer;
        loader = stack.loader;
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, 16, 64);
        vertx = Vertx.vertx();
        base = "http://127.0.0.1:" + new ApiServer(vertx, engine, tokenizer, "demo", MAX_LEN, stack.registry).listen("127.0.0.1", 0).await();

        Path plain = Files.createDirectories(dir.resolve("no-template"));
        Files.copy(dir.resolve("tokenizer.json"), plain.resolve("tokenizer.json"));
        ObjectNode config = (ObjectNode) JSON.readTree(dir.resolve("tokenizer_config.json").toFile());
        config.remove("chat_template");
        JSON.writeValue(plain.resolve("tokenizer_config.json").toFile(), config);
        untemplated = "http://127.0.0.1:"
            + new ApiServer(vertx, engine, TextTokenizer.load(plain), "demo", MAX_LEN).listen("127.0.0.1", 0).await();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        loader.shutdownNow();
    }

    // ---- helpers --------------------------------------------------------------------------------

    static HttpResponse<String> post(String server, String path, String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(server + path)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode ok(String path, JsonNode body) throws Exception {
        HttpResponse<String> r = post(base, path, body.toString());
        assertEquals(200, r.statusCode(), body + " -> " + r.body());
        return JSON.readTree(r.body());
    }

    static ObjectNode chatRequest(String model, List<Map<String, Object>> messages) {
        ObjectNode r = JSON.createObjectNode().put("model", model);
        r.set("messages", JSON.valueToTree(messages));
        return r;
    }

    /** The prompt as the chat template writes it, tokenized without adding special tokens. */
    static int[] rendered(List<Map<String, Object>> messages) {
        String text = ChatTemplate.of(tokenizer).orElseThrow().render(messages, true);
        return tokenizer.encode(text, false);
    }

    static ObjectNode completionRequest(String model, int[] prompt, int maxTokens) {
        ObjectNode r = JSON.createObjectNode().put("model", model).put("max_tokens", maxTokens).put("temperature", 0);
        r.set("prompt", JSON.valueToTree(prompt));
        return r;
    }

    static String content(JsonNode response, int choice) {
        return response.get("choices").get(choice).get("message").get("content").asText();
    }

    /** The {@code data:} payloads of an event stream, checked to end with {@code [DONE]}. */
    static List<JsonNode> events(HttpResponse<String> r) throws Exception {
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        List<String> data = new ArrayList<>();
        for (String line : r.body().split("\n")) {
            if (line.startsWith("data: ")) {
                data.add(line.substring(6));
            }
        }
        assertEquals("[DONE]", data.get(data.size() - 1), r.body());
        List<JsonNode> out = new ArrayList<>();
        for (String d : data.subList(0, data.size() - 1)) {
            out.add(JSON.readTree(d));
        }
        return out;
    }

    // ---- tests ----------------------------------------------------------------------------------

    @Test
    void chatIsTheTemplateThenACompletion() throws Exception {
        int[] ids = rendered(CONVERSATION);
        int bos = tokenizer.tokenId(tokenizer.bosToken().orElseThrow()).getAsInt();
        assertEquals(bos, ids[0]);
        assertEquals(1, java.util.Arrays.stream(ids).filter(t -> t == bos).count(), "the template writes BOS once");
        for (String model : new String[] {"demo", ADAPTER}) {
            JsonNode expected = ok("/v1/completions", completionRequest(model, ids, 24));
            JsonNode chat = ok("/v1/chat/completions", chatRequest(model, CONVERSATION).put("max_tokens", 24).put("temperature", 0));
            String want = expected.get("choices").get(0).get("text").asText();
            assertFalse(want.isEmpty(), "the completion says something");
            assertEquals(want, content(chat, 0), model);
            JsonNode c = chat.get("choices").get(0);
            assertEquals(expected.get("choices").get(0).get("finish_reason"), c.get("finish_reason"));
            assertEquals("assistant", c.get("message").get("role").asText());
            assertTrue(c.get("logprobs").isNull());
            assertEquals(0, c.get("index").asInt());
            assertEquals("chat.completion", chat.get("object").asText());
            assertTrue(chat.get("id").asText().startsWith("chatcmpl-"), chat.get("id").asText());
            assertEquals(model, chat.get("model").asText(), "the model the request named");
            assertEquals(ids.length, chat.get("usage").get("prompt_tokens").asInt(), "no special tokens added to the rendered prompt");
            assertEquals(expected.get("usage").get("completion_tokens"), chat.get("usage").get("completion_tokens"));
            assertEquals(ids.length + chat.get("usage").get("completion_tokens").asInt(), chat.get("usage").get("total_tokens").asInt());
        }
    }

    @Test
    void developerIsSystemAndTextPartsJoin() throws Exception {
        List<Map<String, Object>> system = List.of(Map.of("role", "system", "content", "Be brief."),
            Map.of("role", "user", "content", "Hello there"));
        List<Map<String, Object>> developer = List.of(Map.of("role", "developer", "content", "Be brief."),
            Map.<String, Object>of("role", "user", "content",
                List.of(Map.of("type", "text", "text", "Hel"), Map.of("type", "text", "text", "lo there"))));
        JsonNode a = ok("/v1/chat/completions", chatRequest("demo", system).put("max_tokens", 12).put("temperature", 0));
        JsonNode b = ok("/v1/chat/completions", chatRequest("demo", developer).put("max_tokens", 12).put("temperature", 0));
        assertEquals(rendered(system).length, b.get("usage").get("prompt_tokens").asInt());
        assertEquals(content(a, 0), content(b, 0));
    }

    @Test
    void streamedDeltasJoinToTheAnswer() throws Exception {
        ObjectNode req = chatRequest("demo", CONVERSATION).put("max_tokens", 20).put("temperature", 0.9).put("seed", 3).put("n", 2);
        JsonNode full = ok("/v1/chat/completions", req);
        for (boolean includeUsage : new boolean[] {true, false}) {
            ObjectNode s = req.deepCopy().put("stream", true);
            s.putObject("stream_options").put("include_usage", includeUsage);
            List<JsonNode> chunks = events(post(base, "/v1/chat/completions", s.toString()));
            Map<Integer, StringBuilder> text = new TreeMap<>();
            Map<Integer, String> finish = new TreeMap<>();
            JsonNode usage = null;
            String id = chunks.get(0).get("id").asText();
            assertTrue(id.startsWith("chatcmpl-"));
            for (JsonNode chunk : chunks) {
                assertEquals("chat.completion.chunk", chunk.get("object").asText());
                assertEquals(id, chunk.get("id").asText());
                assertEquals("demo", chunk.get("model").asText());
                assertNull(usage, "the usage chunk is last");
                if (chunk.get("choices").isEmpty()) {
                    usage = chunk.get("usage");
                    continue;
                }
                assertEquals(includeUsage, chunk.has("usage"), "usage: null on every other chunk when asked for");
                JsonNode c = chunk.get("choices").get(0);
                int index = c.get("index").asInt();
                JsonNode delta = c.get("delta");
                assertFalse(finish.containsKey(index), "nothing after a choice's finish chunk");
                if (!text.containsKey(index)) {
                    assertEquals("{\"role\":\"assistant\",\"content\":\"\"}", delta.toString(), "a choice's first chunk names the role");
                    text.put(index, new StringBuilder());
                } else if (!c.get("finish_reason").isNull()) {
                    assertEquals(0, delta.size(), "the finish chunk's delta is empty");
                    finish.put(index, c.get("finish_reason").asText());
                } else {
                    assertEquals(1, delta.size(), delta.toString());
                    text.get(index).append(delta.get("content").asText());
                }
            }
            assertEquals(2, text.size());
            assertEquals(2, finish.size(), "one finish chunk per choice");
            for (int i = 0; i < 2; i++) {
                assertEquals(content(full, i), text.get(i).toString(), "choice " + i);
                assertEquals(full.get("choices").get(i).get("finish_reason").asText(), finish.get(i));
            }
            if (includeUsage) {
                assertEquals(full.get("usage"), usage);
            } else {
                assertNull(usage);
            }
        }
    }

    @Test
    void logprobsEqualTheCompletionEndpoints() throws Exception {
        int[] ids = rendered(CONVERSATION);
        ObjectNode creq = completionRequest("demo", ids, 16).put("logprobs", 3);
        JsonNode expected = ok("/v1/completions", creq).get("choices").get(0).get("logprobs");
        ObjectNode req = chatRequest("demo", CONVERSATION).put("max_tokens", 16).put("temperature", 0).put("logprobs", true)
            .put("top_logprobs", 3);
        JsonNode chat = ok("/v1/chat/completions", req);
        JsonNode content = chat.get("choices").get(0).get("logprobs").get("content");
        assertEquals(expected.get("tokens").size(), content.size());
        assertTrue(content.size() > 0);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        for (int i = 0; i < content.size(); i++) {
            JsonNode e = content.get(i);
            assertEquals(expected.get("tokens").get(i).asText(), e.get("token").asText());
            double lp = e.get("logprob").asDouble();
            assertEquals(expected.get("token_logprobs").get(i).asDouble(), lp, 1e-6, "token " + i);
            JsonNode top = e.get("top_logprobs");
            assertEquals(3, top.size());
            for (int k = 1; k < top.size(); k++) {
                assertTrue(top.get(k - 1).get("logprob").asDouble() >= top.get(k).get("logprob").asDouble(), "sorted: " + top);
            }
            assertTrue(lp <= top.get(0).get("logprob").asDouble() + 1e-6, "the chosen token is at most the best: " + e);
            assertEquals(top.get(0).get("token").asText(), e.get("token").asText(), "greedy picks the best");
            for (JsonNode alt : top) {
                assertTrue(alt.get("bytes").size() > 0 || alt.get("token").asText().isEmpty(), alt.toString());
            }
            for (JsonNode b : e.get("bytes")) {
                bytes.write(b.asInt());
            }
        }
        assertEquals(content(chat, 0), new String(bytes.toByteArray(), StandardCharsets.UTF_8), "bytes join to the text");

        // streamed: each chunk carries the entries of its tokens; together they are the same list
        ObjectNode s = req.deepCopy().put("stream", true);
        ArrayNode streamed = JSON.createArrayNode();
        for (JsonNode chunk : events(post(base, "/v1/chat/completions", s.toString()))) {
            JsonNode lp = chunk.get("choices").get(0).get("logprobs");
            if (lp != null && !lp.isNull()) {
                streamed.addAll((ArrayNode) lp.get("content"));
            }
        }
        assertEquals(content, streamed);

        // logprobs without top_logprobs: the chosen token only
        JsonNode plain = ok("/v1/chat/completions", chatRequest("demo", CONVERSATION).put("max_tokens", 4).put("temperature", 0)
            .put("logprobs", true)).get("choices").get(0).get("logprobs").get("content");
        assertEquals(content.get(0).get("logprob"), plain.get(0).get("logprob"));
        assertEquals(0, plain.get(0).get("top_logprobs").size());
    }

    @Test
    void nSeededChoicesRepeat() throws Exception {
        ObjectNode req = chatRequest("demo", CONVERSATION).put("max_tokens", 16).put("temperature", 1.0).put("seed", 42).put("n", 3);
        JsonNode a = ok("/v1/chat/completions", req);
        JsonNode b = ok("/v1/chat/completions", req);
        assertEquals(3, a.get("choices").size());
        HashSet<String> distinct = new HashSet<>();
        for (int i = 0; i < 3; i++) {
            assertEquals(i, a.get("choices").get(i).get("index").asInt());
            assertEquals(content(a, i), content(b, i), "same seed, same choice " + i);
            distinct.add(content(a, i));
        }
        assertTrue(distinct.size() > 1, "the choices are sampled apart: " + distinct);
        assertEquals(rendered(CONVERSATION).length, a.get("usage").get("prompt_tokens").asInt(), "the prompt counts once");
        int completion = a.get("usage").get("completion_tokens").asInt();
        assertTrue(completion >= 3 && completion <= 48, "completion tokens " + completion);
        JsonNode other = ok("/v1/chat/completions", req.deepCopy().put("seed", 43));
        assertNotEquals(a.get("choices"), other.get("choices"), "another seed, other samples");
    }

    @Test
    void maxCompletionTokensIsMaxTokensAndWins() throws Exception {
        ObjectNode req = chatRequest("demo", CONVERSATION).put("temperature", 0);
        JsonNode seven = ok("/v1/chat/completions", req.deepCopy().put("max_tokens", 7));
        assertEquals("length", seven.get("choices").get(0).get("finish_reason").asText(), "precondition: no EOS within 7 tokens");
        assertEquals(7, seven.get("usage").get("completion_tokens").asInt());
        JsonNode mct = ok("/v1/chat/completions", req.deepCopy().put("max_completion_tokens", 7));
        assertEquals(seven.get("choices"), mct.get("choices"));
        JsonNode both = ok("/v1/chat/completions", req.deepCopy().put("max_tokens", 7).put("max_completion_tokens", 7));
        assertEquals(seven.get("choices"), both.get("choices"), "both names, the same limit");
        // both names with different limits: max_completion_tokens wins (vLLM's rule), as on /v1/completions
        JsonNode differ = ok("/v1/chat/completions", req.deepCopy().put("max_tokens", 3).put("max_completion_tokens", 7));
        assertEquals(seven.get("choices"), differ.get("choices"), "max_completion_tokens wins over max_tokens");
        JsonNode three = ok("/v1/chat/completions", req.deepCopy().put("max_completion_tokens", 3));
        assertEquals(3, three.get("usage").get("completion_tokens").asInt());
        assertTrue(content(seven, 0).startsWith(content(three, 0)));
        // neither: the rest of the context
        JsonNode open = ok("/v1/chat/completions", req);
        int prompt = open.get("usage").get("prompt_tokens").asInt();
        int used = open.get("usage").get("completion_tokens").asInt();
        String reason = open.get("choices").get(0).get("finish_reason").asText();
        assertTrue(reason.equals("length") ? used == MAX_LEN - prompt : used < MAX_LEN - prompt, reason + " after " + used);
        assertTrue(used > 7);
    }

    @Test
    void badInputsGetNamedErrorsAndTheServerKeepsServing() throws Exception {
        String msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
        int[] longPrompt = rendered(List.of(Map.of("role", "user", "content", "word ".repeat(200))));
        Object[][] cases = { // body, status, text in the message, param
            {"{not json", 400, "JSON", null},
            {"[1]", 400, "object", null},
            {"{" + msgs + "}", 400, "model", "model"},
            {"{\"model\":\"nope\"," + msgs + "}", 404, "nope", "model"},
            {"{\"model\":\"demo\"}", 400, "messages", "messages"},
            {"{\"model\":\"demo\",\"messages\":[]}", 400, "at least one", "messages"},
            {"{\"model\":\"demo\",\"messages\":\"hi\"}", 400, "array", "messages"},
            {"{\"model\":\"demo\",\"messages\":[\"hi\"]}", 400, "messages[0]", "messages[0]"},
            {"{\"model\":\"demo\",\"messages\":[{\"content\":\"hi\"}]}", 400, "role", "messages[0].role"},
            {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400,
                "wizard", "messages[1].role"},
            {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "content", "messages[0].content"},
            {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\"}]}", 400, "content", "messages[0].content"},
            {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                400, "image_url", "messages[0].content[0].type"},
            {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":7}]}]}", 400, "text",
                "messages[0].content[0].text"},
            {"{\"model\":\"demo\",\"messages\":" + JSON.writeValueAsString(List.of(Map.of("role", "user", "content", "word ".repeat(200))))
                + "}", 400, longPrompt.length + " in the messages", "messages"},
            {"{\"model\":\"demo\"," + msgs + ",\"max_tokens\":100000}", 400, "100000 in the completion", "max_tokens"},
            {"{\"model\":\"demo\"," + msgs + ",\"max_completion_tokens\":100000}", 400, String.valueOf(MAX_LEN), "max_completion_tokens"},
            {"{\"model\":\"demo\"," + msgs + ",\"max_completion_tokens\":-1}", 400, "max_completion_tokens", "max_completion_tokens"},
            {"{\"model\":\"demo\"," + msgs + ",\"n\":17}", 400, "'n'", "n"},
            {"{\"model\":\"demo\"," + msgs + ",\"logprobs\":true,\"top_logprobs\":21}", 400, "top_logprobs", "top_logprobs"},
            {"{\"model\":\"demo\"," + msgs + ",\"top_logprobs\":2}", 400, "logprobs", "top_logprobs"},
            {"{\"model\":\"demo\"," + msgs + ",\"logprobs\":3}", 400, "logprobs", "logprobs"},
            {"{\"model\":\"demo\"," + msgs + ",\"temperature\":3}", 400, "temperature", "temperature"},
            {"{\"model\":\"demo\"," + msgs + ",\"stop\":5}", 400, "stop", "stop"},
            {"{\"model\":\"demo\"," + msgs + ",\"stream_options\":3}", 400, "stream_options", "stream_options"},
        };
        for (Object[] c : cases) {
            HttpResponse<String> r = post(base, "/v1/chat/completions", (String) c[0]);
            assertEquals((int) c[1], r.statusCode(), "for " + c[0] + ": " + r.body());
            JsonNode err = JSON.readTree(r.body()).get("error");
            assertTrue(err.get("message").asText().contains((String) c[2]), "message for " + c[0] + " names " + c[2] + ": " + err);
            assertEquals(c[3] == null ? "null" : c[3], err.get("param").asText(), "param for " + c[0]);
        }
        assertTrue(longPrompt.length > MAX_LEN, "the long prompt is over the limit");
        HttpResponse<String> bad = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/chat/completions"))
            .POST(HttpRequest.BodyPublishers.ofByteArray(new byte[] {'{', '"', (byte) 0xC3, (byte) 0x28, '"', '}'})).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(400, bad.statusCode());
        assertTrue(bad.body().contains("UTF-8"), bad.body());
        HttpResponse<String> noTemplate = post(untemplated, "/v1/chat/completions", "{\"model\":\"demo\"," + msgs + "}");
        assertEquals(400, noTemplate.statusCode());
        assertTrue(noTemplate.body().contains("chat_template"), noTemplate.body());
        // still serving
        JsonNode good = ok("/v1/chat/completions", JSON.readTree("{\"model\":\"demo\"," + msgs + ",\"max_tokens\":3}"));
        assertEquals(1, good.get("choices").size());
    }
}
