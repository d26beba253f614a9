package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.gateway.text.ChatTemplate;
import dev.loragateway.gateway.text.TextTokenizer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Bad input to {@code POST /v1/chat/completions}: each gets its status and an OpenAI error body whose
 * message names the problem, and afterwards the server answers a good chat request as before. The
 * checks of the body are {@link BadInputHttpTest}'s.
 */

class BadChatInputHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10)).build();
    private static final int MAX_LEN = 128;
    private static final String USER = "{\"role\":\"user\",\"content\":\"Hello there\"}";
    private static final String GOOD = "{\"model\":\"demo\",\"messages\":[" + USER + "],\"max_tokens\":8,\"temperature\":0}";

    @TempDir
    static Path dir;
    private static DemoServer server;
    private static String base;
    private static TextTokenizer tokenizer;
    private static JsonNode goodChoices;

    @BeforeAll
    static void start() throws Exception {
        server = DemoServer.start(dir, 8, MAX_LEN);
        tokenizer = server.tokenizer;
        base = server.base;
        HttpResponse<String> r = post(GOOD);
        assertEquals(200, r.statusCode(), r.body());
        goodChoices = JSON.readTree(r.body()).get("choices");
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    @AfterEach
    void stillServes() throws Exception {
        HttpResponse<String> r = post(GOOD);
        assertEquals(200, r.statusCode(), r.body());
        assertEquals(goodChoices, JSON.readTree(r.body()).get("choices"), "the good request's answer changed after bad input");
    }

    static HttpResponse<String> post(String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/chat/completions")).header("Content-Type", "application/json")
            .timeout(Duration.ofSeconds(30)).POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static String with(String fieldAndValue) {
        return "{\"model\":\"demo\",\"messages\":[" + USER + "]," + fieldAndValue + "}";
    }

    static String messages(String messagesJson) {
        return "{\"model\":\"demo\",\"messages\":" + messagesJson + "}";
    }

    static Stream<Arguments> cases() {
        String longText = "word ".repeat(200);
        int longTokens = tokenizer.encode(ChatTemplate.of(tokenizer).orElseThrow()
            .render(List.of(Map.of("role", "user", "content", longText)), true), false).length;
        return Stream.of(
            // name, body, status, param, message fragments
            Arguments.of("malformed JSON", "{\"model\":\"demo\",\"messages\":[", 400, null, new String[] {"JSON"}),
            Arguments.of("JSON array body", "[" + USER + "]", 400, null, new String[] {"object"}),
            Arguments.of("missing messages", "{\"model\":\"demo\"}", 400, "messages", new String[] {"messages", "required"}),
            Arguments.of("empty messages", messages("[]"), 400, "messages", new String[] {"messages"}),
            Arguments.of("messages a string", messages("\"hello\""), 400, "messages", new String[] {"messages", "array"}),
            Arguments.of("a message not an object", messages("[\"hello\"]"), 400, "messages[0]", new String[] {"messages"}),
            Arguments.of("a message without role", messages("[{\"content\":\"hi\"}]"), 400, "messages[0].role", new String[] {"role"}),
            Arguments.of("unknown role", messages("[{\"role\":\"wizard\",\"content\":\"hi\"}]"), 400, "messages[0].role",
                new String[] {"wizard"}),
            Arguments.of("role a number", messages("[{\"role\":3,\"content\":\"hi\"}]"), 400, "messages[0].role", new String[] {"role"}),
            Arguments.of("content a number", messages("[{\"role\":\"user\",\"content\":42}]"), 400, "messages[0].content",
                new String[] {"content"}),
            Arguments.of("missing model", "{\"messages\":[" + USER + "]}", 400, "model", new String[] {"model", "required"}),
            Arguments.of("model a number", "{\"model\":1,\"messages\":[" + USER + "]}", 400, "model", new String[] {"model", "string"}),
            Arguments.of("max_tokens a string", with("\"max_tokens\":\"ten\""), 400, "max_tokens", new String[] {"max_tokens"}),
            Arguments.of("max_completion_tokens negative", with("\"max_completion_tokens\":-1"), 400, "max_completion_tokens",
                new String[] {"max_completion_tokens"}),
            Arguments.of("max_tokens over the max model length", with("\"max_tokens\":100000"), 400, "max_tokens",
                new String[] {String.valueOf(MAX_LEN), "100000"}),
            Arguments.of("a prompt over the max model length",
                messages("[{\"role\":\"user\",\"content\":" + quote(longText) + "}]"), 400, null,
                new String[] {String.valueOf(MAX_LEN), String.valueOf(longTokens)}),
            Arguments.of("temperature a string", with("\"temperature\":\"hot\""), 400, "temperature", new String[] {"temperature"}),
            Arguments.of("temperature above 2", with("\"temperature\":3"), 400, "temperature", new String[] {"temperature"}),
            Arguments.of("top_p zero", with("\"top_p\":0"), 400, "top_p", new String[] {"top_p"}),
            Arguments.of("n over its limit", with("\"n\":" + (Completions.MAX_N + 1)), 400, "n", new String[] {"'n'"}),
            Arguments.of("logprobs a string", with("\"logprobs\":\"yes\""), 400, "logprobs", new String[] {"logprobs", "boolean"}),
            Arguments.of("top_logprobs over 20", with("\"logprobs\":true,\"top_logprobs\":21"), 400, "top_logprobs",
                new String[] {"top_logprobs", "20"}),
            Arguments.of("top_logprobs without logprobs", with("\"top_logprobs\":2"), 400, "top_logprobs",
                new String[] {"logprobs"}),
            Arguments.of("stop a number", with("\"stop\":5"), 400, "stop", new String[] {"stop"}),
            Arguments.of("stream a string", with("\"stream\":\"yes\""), 400, "stream", new String[] {"stream", "boolean"}),
            Arguments.of("seed a string", with("\"seed\":\"7\""), 400, "seed", new String[] {"seed"}));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void badChatRequestsGetA400ThatNamesTheProblem(String name, String body, int status, String param, String[] fragments) throws Exception {
        HttpResponse<String> r = post(body);
        BadInputHttpTest.assertError(status, param, "invalid_request_error", r.statusCode(), r.body(), fragments);
    }

    @Test
    void unknownModelIs404() throws Exception {
        HttpResponse<String> r = post("{\"model\":\"nope-model\",\"messages\":[" + USER + "]}");
        JsonNode err = BadInputHttpTest.assertError(404, "model", "invalid_request_error", r.statusCode(), r.body(), "nope-model");
        assertEquals("model_not_found", err.get("code").asText());
    }

    @Test
    void emptyBodyAndWrongMethod() throws Exception {
        HttpResponse<String> empty = post("");
        BadInputHttpTest.assertError(400, null, "invalid_request_error", empty.statusCode(), empty.body(), "empty");
        HttpResponse<String> get = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/chat/completions"))
            .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
        BadInputHttpTest.assertError(405, null, "invalid_request_error", get.statusCode(), get.body(), "GET");
    }

    private static String quote(String s) {
        try {
            return JSON.writeValueAsString(s);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
