package dev.loragateway.gateway.http;

import static dev.loragateway.gateway.http.RawHttp.concat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.gateway.http.RawHttp.Raw;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
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
 * Bad input to {@code POST /v1/completions} and the routes around it, over real HTTP: each one gets
 * its status and an OpenAI error body {@code {"error": {"message", "type", "param", "code"}}} whose
 * message names what is wrong (the field, and both numbers where a limit was passed), and after
 * each one the server still answers a good request exactly as it did before any bad input.
 *
 * <p>Bodies that {@link HttpClient} will not send (invalid UTF-8 with a JSON content type, broken
 * HTTP framing) go over a raw socket.
 */
class BadInputHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10)).build();
    private static final int MAX_LEN = 128;
    private static final String GOOD = "{\"model\":\"demo\",\"prompt\":\"The gateway serves\",\"max_tokens\":12,\"temperature\":0}";

    @TempDir
    static Path dir;
    private static DemoServer server;
    private static TextTokenizer tokenizer;
    private static int vocab;
    private static int port;
    private static String base;
    /** The good request's answer before any bad input: choices and usage (ids and times differ per request). */
    private static JsonNode goodChoices;
    private static JsonNode goodUsage;

    @BeforeAll
    static void start() throws Exception {
        server = DemoServer.start(dir, 8, MAX_LEN);
        tokenizer = server.tokenizer;
        vocab = server.model.config().vocabSize();
        port = server.port;
        base = server.base;
        HttpResponse<String> r = post("/v1/completions", GOOD);
        assertEquals(200, r.statusCode(), r.body());
        JsonNode body = JSON.readTree(r.body());
        goodChoices = body.get("choices");
        goodUsage = body.get("usage");
        assertTrue(goodChoices.get(0).get("text").asText().length() > 0, "the good request generates text: " + r.body());
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    /** After every bad input: the server answers the good request as before, and its health is ok. */
    @AfterEach
    void stillServes() throws Exception {
        HttpResponse<String> r = post("/v1/completions", GOOD);
        assertEquals(200, r.statusCode(), r.body());
        JsonNode body = JSON.readTree(r.body());
        assertEquals(goodChoices, body.get("choices"), "the good request's answer changed after bad input");
        assertEquals(goodUsage, body.get("usage"));
        assertEquals(200, get("/health").statusCode());
    }

    static HttpResponse<String> post(String path, String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + path)).header("Content-Type", "application/json")
            .timeout(Duration.ofSeconds(30)).POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(String path) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30)).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    /**
     * Asserts an OpenAI error body: all four fields, a non-empty message holding every fragment
     * (case-insensitive), the type, and the param when one is expected.
     */
    static JsonNode assertError(int status, String param, String type, int gotStatus, String body, String... fragments) throws Exception {
        assertEquals(status, gotStatus, body);
        JsonNode root = JSON.readTree(body);
        assertNotNull(root, "no body");
        JsonNode err = root.get("error");
        assertNotNull(err, "no 'error' object: " + body);
        for (String f : List.of("message", "type", "param", "code")) {
            assertTrue(err.has(f), "error body lacks '" + f + "': " + body);
        }
        String message = err.get("message").asText();
        assertTrue(!message.isBlank(), body);
        for (String f : fragments) {
            assertTrue(message.toLowerCase(Locale.ROOT).contains(f.toLowerCase(Locale.ROOT)),
                "the message should name '" + f + "': " + message);
        }
        assertEquals(type, err.get("type").asText(), body);
        if (param != null) {
            assertEquals(param, err.get("param").asText(), body);
        }
        return err;
    }

    static String with(String fieldAndValue) {
        return "{\"model\":\"demo\",\"prompt\":\"Hello\"," + fieldAndValue + "}";
    }

    static Stream<Arguments> jsonCases() {
        String longPrompt = "word ".repeat(200);
        int longPromptTokens = tokenizer.encode(longPrompt, true).length; // as the server encodes it
        List<Arguments> c = new ArrayList<>(List.of(
            // name, body, status, param, message fragments
            Arguments.of("malformed JSON", "{\"model\":\"demo\",\"prompt\":", 400, null, new String[] {"JSON"}),
            Arguments.of("trailing garbage after the JSON object", "{\"model\":\"demo\",\"prompt\":\"x\"} trailing", 400, null,
                new String[] {"JSON"}),
            Arguments.of("JSON array body", "[{\"model\":\"demo\",\"prompt\":\"x\"}]", 400, null, new String[] {"object"}),
            Arguments.of("JSON string body", "\"hello\"", 400, null, new String[] {"object"}),
            Arguments.of("model a number", "{\"model\":5,\"prompt\":\"x\"}", 400, "model", new String[] {"model", "string"}),
            Arguments.of("prompt an object", "{\"model\":\"demo\",\"prompt\":{\"text\":\"x\"}}", 400, "prompt",
                new String[] {"prompt", "object"}),
            Arguments.of("prompt an empty array", "{\"model\":\"demo\",\"prompt\":[]}", 400, "prompt", new String[] {"prompt", "empty"}),
            Arguments.of("prompt token ids mixed with a string", "{\"model\":\"demo\",\"prompt\":[1,\"x\"]}", 400, "prompt",
                new String[] {"prompt"}),
            Arguments.of("max_tokens a string", with("\"max_tokens\":\"ten\""), 400, "max_tokens", new String[] {"max_tokens", "integer"}),
            Arguments.of("max_tokens a fraction", with("\"max_tokens\":2.5"), 400, "max_tokens", new String[] {"max_tokens", "integer"}),
            Arguments.of("temperature a string", with("\"temperature\":\"hot\""), 400, "temperature",
                new String[] {"temperature", "number"}),
            Arguments.of("top_p a string", with("\"top_p\":\"all\""), 400, "top_p", new String[] {"top_p", "number"}),
            Arguments.of("stop a number", with("\"stop\":5"), 400, "stop", new String[] {"stop", "string"}),
            Arguments.of("stop an array with a number", with("\"stop\":[\"a\",5]"), 400, "stop", new String[] {"stop", "string"}),
            Arguments.of("n a string", with("\"n\":\"two\""), 400, "n", new String[] {"'n'", "integer"}),
            Arguments.of("stream a string", with("\"stream\":\"yes\""), 400, "stream", new String[] {"stream", "boolean"}),
            Arguments.of("logprobs a string", with("\"logprobs\":\"3\""), 400, "logprobs", new String[] {"logprobs", "integer"}),
            Arguments.of("echo a string", with("\"echo\":\"true\""), 400, "echo", new String[] {"echo", "boolean"}),
            Arguments.of("seed a string", with("\"seed\":\"42\""), 400, "seed", new String[] {"seed", "integer"}),
            Arguments.of("user a number", with("\"user\":7"), 400, "user", new String[] {"user", "string"}),
            Arguments.of("stream_options a string", with("\"stream_options\":\"usage\""), 400, "stream_options",
                new String[] {"stream_options", "object"}),
            Arguments.of("missing model", "{\"prompt\":\"x\"}", 400, "model", new String[] {"model", "required"}),
            Arguments.of("missing prompt", "{\"model\":\"demo\"}", 400, "prompt", new String[] {"prompt", "required"}),
            Arguments.of("negative max_tokens", with("\"max_tokens\":-1"), 400, "max_tokens", new String[] {"max_tokens", "-1"}),
            Arguments.of("max_tokens over the max model length", with("\"max_tokens\":100000"), 400, "max_tokens",
                new String[] {String.valueOf(MAX_LEN), "100000"}),
            Arguments.of("max_tokens beyond 32 bits", with("\"max_tokens\":10000000000"), 400, "max_tokens",
                new String[] {String.valueOf(MAX_LEN), "10000000000"}),
            Arguments.of("max_tokens beyond 64 bits", with("\"max_tokens\":99999999999999999999"), 400, "max_tokens",
                new String[] {"max_tokens", "99999999999999999999"}),
            Arguments.of("prompt over the max model length", "{\"model\":\"demo\",\"prompt\":" + quote(longPrompt) + ",\"max_tokens\":1}",
                400, "prompt", new String[] {String.valueOf(MAX_LEN), String.valueOf(longPromptTokens)}),
            Arguments.of("n over its limit", with("\"n\":" + (Completions.MAX_N + 1)), 400, "n",
                new String[] {"'n'", String.valueOf(Completions.MAX_N), String.valueOf(Completions.MAX_N + 1)}),
            Arguments.of("n zero", with("\"n\":0"), 400, "n", new String[] {"'n'"}),
            Arguments.of("logprobs over 5", with("\"logprobs\":6"), 400, "logprobs", new String[] {"logprobs", "5", "6"}),
            Arguments.of("logprobs negative", with("\"logprobs\":-1"), 400, "logprobs", new String[] {"logprobs"}),
            Arguments.of("temperature above 2", with("\"temperature\":2.5"), 400, "temperature", new String[] {"temperature", "2.5"}),
            Arguments.of("temperature negative", with("\"temperature\":-0.5"), 400, "temperature", new String[] {"temperature", "-0.5"}),
            Arguments.of("top_p zero", with("\"top_p\":0"), 400, "top_p", new String[] {"top_p"}),
            Arguments.of("top_p above 1", with("\"top_p\":1.5"), 400, "top_p", new String[] {"top_p", "1.5"}),
            Arguments.of("seed beyond 64 bits", with("\"seed\":123456789012345678901234567890"), 400, "seed", new String[] {"seed"}),
            Arguments.of("too many stop strings", with("\"stop\":" + stops(Completions.MAX_STOPS + 1)), 400, "stop",
                new String[] {"stop", String.valueOf(Completions.MAX_STOPS)})));
        // token ids outside the vocabulary (the server's tiny model has vocab ids 0..vocab-1)
        c.add(Arguments.of("token id = vocabulary size", "{\"model\":\"demo\",\"prompt\":[1,2," + vocab + "]}", 400, "prompt",
            new String[] {"prompt", String.valueOf(vocab), "vocabulary"}));
        c.add(Arguments.of("negative token id", "{\"model\":\"demo\",\"prompt\":[[1,-3]]}", 400, "prompt", new String[] {"prompt", "-3"}));
        c.add(Arguments.of("token id a fraction", "{\"model\":\"demo\",\"prompt\":[1,2.5]}", 400, "prompt", new String[] {"prompt"}));
        return c.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("jsonCases")
    void badJsonRequestsGetA400ThatNamesTheProblem(String name, String body, int status, String param, String[] fragments) throws Exception {
        HttpResponse<String> r = post("/v1/completions", body);
        assertError(status, param, "invalid_request_error", r.statusCode(), r.body(), fragments);
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"), name);
    }

    @Test
    void unknownModelIs404NamingIt() throws Exception {
        HttpResponse<String> r = post("/v1/completions", "{\"model\":\"no-such-model\",\"prompt\":\"x\"}");
        JsonNode err = assertError(404, "model", "invalid_request_error", r.statusCode(), r.body(), "no-such-model");
        assertEquals("model_not_found", err.get("code").asText());
        // streaming requests fail the same way, before any event is sent
        HttpResponse<String> s = post("/v1/completions", "{\"model\":\"no-such-model\",\"prompt\":\"x\",\"stream\":true}");
        assertError(404, "model", "invalid_request_error", s.statusCode(), s.body(), "no-such-model");
    }

    @Test
    void emptyBodyIs400() throws Exception {
        HttpResponse<String> r = post("/v1/completions", "");
        assertError(400, null, "invalid_request_error", r.statusCode(), r.body(), "empty");
    }

    @Test
    void bodyOverTheJsonLimitIs413() throws Exception {
        // a valid request padded past the limit: only the size is wrong
        int limit = 16 << 20;
        String body = "{\"model\":\"demo\",\"prompt\":\"x\",\"user\":\"" + "u".repeat(limit) + "\"}";
        HttpResponse<String> r = post("/v1/completions", body);
        assertError(413, null, "invalid_request_error", r.statusCode(), r.body(), String.valueOf(limit));
    }

    @Test
    void unknownRouteIs404AndWrongMethodIs405() throws Exception {
        HttpResponse<String> nf = get("/v1/nothing-here");
        assertError(404, null, "not_found_error", nf.statusCode(), nf.body(), "/v1/nothing-here");
        HttpResponse<String> nf2 = post("/not-v1", "{}");
        assertError(404, null, "not_found_error", nf2.statusCode(), nf2.body(), "/not-v1");
        HttpResponse<String> wm = get("/v1/completions");
        assertError(405, null, "invalid_request_error", wm.statusCode(), wm.body(), "GET", "/v1/completions");
        HttpResponse<String> del = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions")).DELETE()
            .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
        assertError(405, null, "invalid_request_error", del.statusCode(), del.body(), "DELETE");
    }

    /** Invalid UTF-8 inside a JSON string (a lone continuation byte, an overlong '/'), sent over a raw socket. */
    @Test
    void invalidUtf8BodyIs400() throws Exception {
        for (byte[] bad : List.of(new byte[] {(byte) 0xC3, (byte) 0x28}, new byte[] {(byte) 0x80}, new byte[] {(byte) 0xC0, (byte) 0xAF},
            new byte[] {(byte) 0xED, (byte) 0xA0, (byte) 0x80})) {
            byte[] head = "{\"model\":\"demo\",\"prompt\":\"ab".getBytes(StandardCharsets.US_ASCII);
            byte[] tail = "\"}".getBytes(StandardCharsets.US_ASCII);
            byte[] body = new byte[head.length + bad.length + tail.length];
            System.arraycopy(head, 0, body, 0, head.length);
            System.arraycopy(bad, 0, body, head.length, bad.length);
            System.arraycopy(tail, 0, body, head.length + bad.length, tail.length);
            Raw r = raw(concat(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: " + body.length + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.US_ASCII), body));
            assertError(400, null, "invalid_request_error", r.status(), r.body(), "UTF-8");
        }
    }

    /**
     * Broken HTTP: a request line that is not HTTP, a non-numeric Content-Length, a bad chunk size
     * (which vertx-web's BodyHandler passes on with status 200), an HTTP/1.1 request without Host.
     * Each gets a 400 with an error body that names the problem, and the connection is closed.
     */
    @Test
    void malformedHttpIs400WithAnErrorBody() throws Exception {
        Raw line = raw("THIS IS NOT HTTP\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        assertError(400, null, "invalid_request_error", line.status(), line.body(), "version");

        Raw length = raw(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + "Content-Length: twelve\r\n\r\n{}").getBytes(StandardCharsets.US_ASCII));
        assertError(400, null, "invalid_request_error", length.status(), length.body(), "Content-Length");

        Raw chunk = raw(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + "Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        assertError(400, null, "invalid_request_error", chunk.status(), chunk.body(), "chunk");

        byte[] body = GOOD.getBytes(StandardCharsets.UTF_8);
        Raw noHost = raw(concat(("POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " + body.length
            + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII), body));
        assertError(400, null, "invalid_request_error", noHost.status(), noHost.body(), "Host");
        for (Raw r : List.of(line, length, chunk, noHost)) {
            assertTrue(r.head().toLowerCase(Locale.ROOT).contains("connection: close"), "the connection is closed after\n" + r);
        }
    }

    /** A well-framed chunked request still works (the framing test above is not refusing chunked bodies as such). */
    @Test
    void chunkedGoodRequestOverRawSocketWorks() throws Exception {
        byte[] body = GOOD.getBytes(StandardCharsets.UTF_8);
        int half = body.length / 2;
        ByteArrayOutputStream req = new ByteArrayOutputStream();
        req.write(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + "Transfer-Encoding: chunked\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        req.write((Integer.toHexString(half) + "\r\n").getBytes(StandardCharsets.US_ASCII));
        req.write(body, 0, half);
        req.write(("\r\n" + Integer.toHexString(body.length - half) + "\r\n").getBytes(StandardCharsets.US_ASCII));
        req.write(body, half, body.length - half);
        req.write("\r\n0\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        Raw r = raw(req.toByteArray());
        assertEquals(200, r.status(), r.toString());
        assertEquals(goodChoices, JSON.readTree(r.body()).get("choices"));
    }

    // ---- helpers ----

    /** Sends {@code request} on a fresh connection and reads one response (10 s at most). */
    static Raw raw(byte[] request) throws IOException {
        return RawHttp.exchange(port, request, 10_000);
    }

    private static String quote(String s) {
        try {
            return JSON.writeValueAsString(s);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static String stops(int n) {
        List<String> s = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            s.add("s" + i);
        }
        return JSON.valueToTree(s).toString();
    }

}
