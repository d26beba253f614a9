package dev.loragateway.gateway.http;

import static dev.loragateway.gateway.http.RawHttp.concat;
import static dev.loragateway.gateway.http.RawHttp.head;
import static dev.loragateway.gateway.http.RawHttp.read;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.batcher.Engine;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.gateway.http.UploadFixtures.Multipart;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.gateway.http.RawHttp.Raw;
import io.vertx.core.Vertx;
import java.io.IOException;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a hostile client found (issue 12, items 4, 5, 6, 9 and 13), over real HTTP against a real
 * server on 127.0.0.1 with short timeouts: each answer's status, that it comes within a bounded
 * time, that {@code /health} keeps answering meanwhile, and that afterwards the server still
 * answers the same good request identically (greedy, so the same text).
 */
class HostileInputTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10)).build();
    private static final int MAX_LEN = 128;
    private static final Duration IDLE = Duration.ofMillis(1500);
    private static final Duration HEADER = Duration.ofMillis(1000);
    private static final Duration BODY = Duration.ofMillis(1000);
    private static final int MAX_CONNECTIONS = 48;
    private static final int HEALTH_CONNECTIONS = 4;
    /** How long /health may take while the server is under attack (generous for a shared 2-core machine). */
    private static final long HEALTH_MS = 500;
    private static final String KEY = "sk-acme";
    private static final String GOOD = "{\"model\":\"demo\",\"prompt\":\"The gateway serves\",\"max_tokens\":12,\"temperature\":0}";

    @TempDir
    static Path dir;
    private static DemoStack stack;
    private static Vertx vertx;
    private static Engine engine;
    private static int port;
    private static JsonNode goodChoices;

    @BeforeAll
    static void start() throws Exception {
        stack = DemoStack.create(dir, 4, true);
        Files.writeString(dir.resolve("keys.json"), """
            { "tenants": [ { "id": "acme", "keys": ["sk-acme"] }, { "id": "globex", "keys": ["sk-globex"] } ] }""");
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, 8, 64);
        vertx = Vertx.vertx();
        port = new ApiServer(vertx, engine, stack.tokenizer, "demo", MAX_LEN, stack.registry).tenants(Tenants.load(dir.resolve("keys.json")))
            .deviceTier(stack.device).maxAdapterBytes(1 << 20)
            .httpLimits(limits())
            .listen("127.0.0.1", 0).await();
        Raw r = post("/v1/completions", GOOD);
        assertEquals(200, r.statusCode(), r.body());
        goodChoices = JSON.readTree(r.body()).get("choices");
        assertFalse(goodChoices.get(0).get("text").asText().isEmpty(), r.body());
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        stack.loader.shutdownNow();
    }

    /** After each attack: the same good request gets the same answer, /health is ok, and no upload is left in staging. */
    @AfterEach
    void stillServes() throws Exception {
        Raw r = post("/v1/completions", GOOD);
        assertEquals(200, r.statusCode(), r.body());
        assertEquals(goodChoices, JSON.readTree(r.body()).get("choices"), "the good request's answer changed");
        assertHealthFast();
        assertEquals(List.of(), staged(), "an upload's staging directory was left behind");
    }

    // ---- item 4: string prompts are bounded by bytes and tokenized off the event loop ----------

    @Test
    void item4_aStringPromptOverTheByteBoundIsRefusedAtOnceNamingBothNumbers() throws Exception {
        String prompt = "word ".repeat((2 << 20) / 5); // 2 MB
        long t0 = System.nanoTime();
        Raw r = post("/v1/completions", "{\"model\":\"demo\",\"prompt\":" + JSON.writeValueAsString(prompt) + "}");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        long bound = (long) MAX_LEN * stack.tokenizer.maxTokenBytes() * Completions.PROMPT_BYTES_SLACK;
        assertError(r, 400, "prompt", String.valueOf(prompt.length()), String.valueOf(bound), "--max-model-len " + MAX_LEN);
        assertTrue(ms < 1000, "a 2 MB prompt took " + ms + " ms to be refused");
    }

    @Test
    void item4_chatMessagesOverTheByteBoundAreRefusedAtOnce() throws Exception {
        String text = "word ".repeat((2 << 20) / 5);
        long t0 = System.nanoTime();
        Raw r = post("/v1/chat/completions", "{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":"
            + JSON.writeValueAsString(text) + "}]}");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        // every string of the messages counts (the role too): the template renders them all
        assertError(r, 400, "messages", String.valueOf(text.length() + "user".length()), "--max-model-len " + MAX_LEN);
        assertTrue(ms < 1000, "2 MB of chat text took " + ms + " ms to be refused");
    }

    /**
     * A prompt that the byte bound lets through (a server whose --max-model-len is large) keeps a
     * worker thread busy for seconds: meanwhile /health and another tenant's request are answered
     * as fast as ever, because tokenizing runs off the event loop.
     */
    @Test
    void item4_healthAndOtherTenantsAnswerWhileABigPromptIsTokenized() throws Exception {
        int longLen = 100_000; // bound: 100000 × longest token × 2 bytes, well above the prompt's 640 KB
        int bigPort = new ApiServer(vertx, engine, stack.tokenizer, "demo", longLen).httpLimits(limits()).listen("127.0.0.1", 0).await();
        String prompt = words(640 << 10); // ~250,000 tokens: over 100,000, found only by tokenizing (seconds)
        long t0 = System.nanoTime();
        CompletableFuture<HttpResponse<String>> big = HTTP.sendAsync(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + bigPort
            + "/v1/completions")).header("Content-Type", "application/json").timeout(Duration.ofSeconds(120))
            .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"demo\",\"prompt\":" + JSON.writeValueAsString(prompt) + "}")).build(),
            HttpResponse.BodyHandlers.ofString());
        Thread.sleep(200); // the body is in; tokenizing has begun
        Raw good = post("/v1/completions", GOOD); // another tenant's request, on the other server
        assertEquals(goodChoices, JSON.readTree(good.body()).get("choices"), good.body());
        boolean goodDuring = !big.isDone();
        int polls = 0;
        long worst = 0;
        while (!big.isDone() && polls < 100) {
            worst = Math.max(worst, assertHealthFast(bigPort)); // the same server (and event loop) as the big prompt
            polls++;
            Thread.sleep(50);
        }
        HttpResponse<String> r = big.get(120, TimeUnit.SECONDS);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertError(r.statusCode(), r.body(), 400, "prompt", String.valueOf(longLen), "maximum context length");
        assertTrue(polls >= 3 && goodDuring, "the big prompt took only " + ms + " ms: too fast to show anything (" + polls + " polls)");
        System.out.println("item 4: a 640 KB prompt tokenized in " + ms + " ms; /health answered " + polls + " times meanwhile, worst "
            + worst + " ms");
    }

    /** The JSON body cap (16 MB) is enforced from the Content-Length, before a byte of the body is read. */
    @Test
    void item4_aJsonBodyDeclaredOverTheCapIs413AtOnce() throws Exception {
        long t0 = System.nanoTime();
        Raw r = raw(head("POST", "/v1/completions", "Authorization: Bearer " + KEY, "Content-Type: application/json",
            "Content-Length: " + (1L << 30)), 5000);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertError(r.status(), r.body(), 413, null, String.valueOf(16 << 20));
        assertTrue(ms < 1000, "413 after " + ms + " ms");
    }

    // ---- item 5: an upload without its end times out and leaves nothing ---------------------

    /** The demo adapter's upload, as bytes without the closing boundary ("--B--"), and its Content-Type. */
    static byte[] uploadWithoutEnd(Multipart form) {
        byte[] all = form.bytes();
        int end = ("--" + form.boundary + "--\r\n").length();
        return Arrays.copyOf(all, all.length - end);
    }

    /** A whole body whose multipart lacks its closing boundary: answered 400 at once, naming it; nothing staged stays. */
    @Test
    void item5_anUploadBodyThatEndsWithoutItsClosingBoundaryIs400NamingIt() throws Exception {
        Multipart form = UploadFixtures.demo(dir, "demo-r4").form("no-end");
        byte[] body = uploadWithoutEnd(form);
        long t0 = System.nanoTime();
        Raw r = raw(concat(head("POST", "/v1/adapters", "Authorization: Bearer " + KEY, "Content-Type: " + form.contentType(),
            "Content-Length: " + body.length), body), 10_000);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertError(r.status(), r.body(), 400, null, "closing boundary '--" + form.boundary + "--'");
        assertTrue(ms < 1000, "answered after " + ms + " ms");
        assertNoStaging();
        assertEquals(404, get("/v1/adapters/no-end").statusCode());
    }

    /** A body that stops arriving (Content-Length not reached): 408 after the body timeout, connection closed, nothing staged stays. */
    @Test
    void item5_anUploadThatStallsIs408AfterTheBodyTimeoutAndLeavesNothing() throws Exception {
        Multipart form = UploadFixtures.demo(dir, "demo-r4").form("stalled");
        byte[] body = uploadWithoutEnd(form);
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(10_000);
            s.getOutputStream().write(concat(head("POST", "/v1/adapters", "Authorization: Bearer " + KEY, "Content-Type: "
                + form.contentType(), "Content-Length: " + (body.length + 1000)), body));
            long t0 = System.nanoTime();
            Raw r = read(s);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertError(r.status(), r.body(), 408, null, "--body-timeout-s");
            assertTrue(ms >= BODY.toMillis() - 100 && ms < BODY.toMillis() + 2000, "answered after " + ms + " ms");
            assertEquals(-1, s.getInputStream().read(), "the connection stays open");
        }
        assertNoStaging();
        assertEquals(404, get("/v1/adapters/stalled").statusCode());
    }

    /** The same with a chunked body that never sends its last chunk. */
    @Test
    void item5_aChunkedUploadThatStallsIs408AndLeavesNothing() throws Exception {
        Multipart form = UploadFixtures.demo(dir, "demo-r4").form("stalled-chunks");
        byte[] body = uploadWithoutEnd(form);
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(10_000);
            s.getOutputStream().write(concat(head("POST", "/v1/adapters", "Authorization: Bearer " + KEY, "Content-Type: "
                + form.contentType(), "Transfer-Encoding: chunked"), concat((Integer.toHexString(body.length) + "\r\n")
                .getBytes(StandardCharsets.US_ASCII), concat(body, "\r\n".getBytes(StandardCharsets.US_ASCII)))));
            Raw r = read(s);
            assertError(r.status(), r.body(), 408, null, "--body-timeout-s");
        }
        assertNoStaging();
    }

    /** Waits (bounded) for the staging directory to empty: a closed upload's cleanup runs on a worker. */
    static void assertNoStaging() throws Exception {
        for (int i = 0; i < 40 && !staged().isEmpty(); i++) {
            Thread.sleep(50);
        }
        assertEquals(List.of(), staged(), "an upload's staging directory was left behind");
    }

    // ---- item 6: idle, header and body timeouts; a connection cap that keeps room for /health --

    /**
     * Slow-loris: 40 connections send a request head a line at a time and never finish it. Each is
     * answered 408 and closed once its head has taken the header timeout (trickling does not
     * extend it); /health answers meanwhile.
     */
    @Test
    void item6_slowlorisHeadsGet408AfterTheHeaderTimeoutWhileHealthAnswers() throws Exception {
        List<Socket> loris = new ArrayList<>();
        try {
            long t0 = System.nanoTime();
            for (int i = 0; i < 40; i++) {
                Socket s = new Socket("127.0.0.1", port);
                s.setSoTimeout(5000);
                s.getOutputStream().write("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n".getBytes(StandardCharsets.US_ASCII));
                loris.add(s);
            }
            long[] closedAt = new long[loris.size()];
            for (int round = 0; round < 8; round++) { // 2 s of trickling (twice the header timeout), a line every 250 ms
                for (int i = 0; i < loris.size(); i++) {
                    if (closedAt[i] == 0 && !trickle(loris.get(i), "X-Loris-" + round + ": z\r\n")) {
                        closedAt[i] = System.nanoTime();
                    }
                }
                if (round % 4 == 0) {
                    assertHealthFast();
                }
                Thread.sleep(250);
            }
            for (int i = 0; i < loris.size(); i++) {
                Raw r = read(loris.get(i));
                assertError(r.status(), r.body(), 408, null, "--header-timeout-s");
                assertTrue(closedAt[i] != 0, "connection " + i + " still takes header lines after 2 s");
                long ms = (closedAt[i] - t0) / 1_000_000;
                assertTrue(ms < HEADER.toMillis() + 1000, "connection " + i + " was closed only after " + ms + " ms");
            }
        } finally {
            for (Socket s : loris) {
                s.close();
            }
        }
    }

    /** Writes a line; false once the server has closed the connection. */
    static boolean trickle(Socket s, String line) {
        try {
            s.getOutputStream().write(line.getBytes(StandardCharsets.US_ASCII));
            s.getOutputStream().flush();
            return s.getInputStream().available() == 0;
        } catch (IOException closed) {
            return false;
        }
    }

    /**
     * More idle keep-alive connections than --max-connections: each newcomer closes the oldest idle
     * one, so /health always gets in; every idle one is closed after the idle timeout.
     */
    @Test
    void item6_idleConnectionsBeyondTheCapNeverKeepHealthOutAndCloseAfterTheIdleTimeout() throws Exception {
        List<Socket> idle = new ArrayList<>();
        try {
            for (int i = 0; i < MAX_CONNECTIONS + HEALTH_CONNECTIONS + 12; i++) {
                Socket s = new Socket("127.0.0.1", port);
                s.setSoTimeout(5000);
                s.getOutputStream().write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                assertEquals(200, read(s).status(), "keep-alive connection " + i);
                idle.add(s);
            }
            assertHealthFast();
            int evicted = 0;
            for (Socket s : idle) {
                if (closedByServer(s, 1)) {
                    evicted++;
                }
            }
            assertTrue(evicted >= 12 + HEALTH_CONNECTIONS, "only " + evicted + " idle connections were closed for newcomers");
            long t0 = System.nanoTime();
            for (Socket s : idle) {
                assertTrue(closedByServer(s, (int) (IDLE.toMillis() + 1500)), "an idle connection outlived the idle timeout");
            }
            assertTrue((System.nanoTime() - t0) / 1_000_000 < IDLE.toMillis() + 1500);
        } finally {
            for (Socket s : idle) {
                s.close();
            }
        }
    }

    /** Whether the server closes {@code s} within {@code ms} (reads nothing but the end). */
    static boolean closedByServer(Socket s, int ms) throws IOException {
        s.setSoTimeout(ms);
        try {
            return s.getInputStream().read() == -1;
        } catch (SocketTimeoutException open) {
            return false;
        } catch (IOException reset) {
            return true;
        }
    }

    /**
     * Every connection of the cap busy with a request whose body trickles in: a newcomer still gets
     * /health (then its connection closes), anything else 503 naming the cap; when the bodies stop,
     * each gets 408 after the body timeout and the server serves as before.
     */
    @Test
    void item6_connectionsAllBusyStillLeaveRoomForHealthChecks() throws Exception {
        List<Socket> busy = new ArrayList<>();
        try {
            for (int i = 0; i < MAX_CONNECTIONS; i++) {
                Socket s = new Socket("127.0.0.1", port);
                s.setSoTimeout(5000);
                s.getOutputStream().write(head("POST", "/v1/completions", "Authorization: Bearer " + KEY, "Content-Type: application/json",
                    "Content-Length: 100000"));
                busy.add(s);
            }
            for (int round = 0; round < 3; round++) { // keep every body alive across the checks
                for (Socket s : busy) {
                    assertTrue(trickle(s, " "), "a busy connection was closed");
                }
                Thread.sleep(200);
            }
            Raw health = raw("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII), 5000);
            assertEquals(200, health.status(), health.toString());
            assertTrue(health.head().toLowerCase(Locale.ROOT).contains("connection: close"), health.toString());
            Raw models = raw(head("GET", "/v1/models", "Authorization: Bearer " + KEY), 5000);
            assertError(models.status(), models.body(), 503, null, "--max-connections " + MAX_CONNECTIONS, "/health");
            for (Socket s : busy) {
                assertTrue(trickle(s, " "), "a busy connection was closed for a health check");
            }
            long t0 = System.nanoTime();
            for (Socket s : busy) { // the bodies stop: each is answered 408 after the body timeout
                Raw r = read(s);
                assertError(r.status(), r.body(), 408, null, "--body-timeout-s");
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < BODY.toMillis() + 2000, "408s after " + ms + " ms");
        } finally {
            for (Socket s : busy) {
                s.close();
            }
        }
    }

    /**
     * A stream that waits longer than the idle timeout for its first token (its adapter's load is
     * held up) is busy, not idle: it is not cut, and it streams the same text as the unstreamed
     * request.
     */
    @Test
    void item6_aStreamWaitingLongerThanTheIdleTimeoutForItsFirstTokenIsNotCut() throws Exception {
        String body = "{\"model\":\"demo-r8\",\"prompt\":\"The gateway serves\",\"max_tokens\":8,\"temperature\":0";
        long hold = IDLE.toMillis() + 500;
        stack.loader.execute(() -> { // the adapter's load queues behind this on the loader thread
            try {
                Thread.sleep(hold);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        long t0 = System.nanoTime();
        Raw streamed = post("/v1/completions", body + ",\"stream\":true}");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(200, streamed.statusCode(), streamed.body());
        assertTrue(ms >= hold - 100, "the stream did not wait (" + ms + " ms): the test shows nothing");
        assertTrue(streamed.body().trim().endsWith("data: [DONE]"), streamed.body());
        StringBuilder text = new StringBuilder();
        for (String line : streamed.body().split("\n")) {
            if (line.startsWith("data: {")) {
                text.append(JSON.readTree(line.substring(6)).get("choices").get(0).get("text").asText());
            }
        }
        Raw whole = post("/v1/completions", body + "}");
        assertEquals(JSON.readTree(whole.body()).get("choices").get(0).get("text").asText(), text.toString());
    }

    /** A JSON body that stops arriving: 408 after the body timeout, then the connection is closed. */
    @Test
    void item6_aJsonBodyThatStallsIs408AfterTheBodyTimeout() throws Exception {
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(5000);
            s.getOutputStream().write(concat(head("POST", "/v1/chat/completions", "Authorization: Bearer " + KEY,
                "Content-Type: application/json", "Content-Length: 500"), "{\"model\":\"demo\",".getBytes(StandardCharsets.US_ASCII)));
            long t0 = System.nanoTime();
            Raw r = read(s);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertError(r.status(), r.body(), 408, null, "--body-timeout-s");
            assertTrue(ms >= BODY.toMillis() - 100 && ms < BODY.toMillis() + 1500, "408 after " + ms + " ms");
            assertTrue(closedByServer(s, 2000), "the connection stayed open after the 408");
        }
    }

    // ---- item 9: duplicates are refused, not "first one wins"; folded headers too ---------------

    @Test
    void item9_twoAuthorizationHeadersAre400NamingTheHeader() throws Exception {
        Raw r = raw(head("GET", "/v1/models", "Authorization: Bearer sk-acme", "Authorization: Bearer sk-globex", "Connection: close"), 5000);
        assertError(r.status(), r.body(), 400, null, "2 Authorization headers");
        Raw same = raw(head("GET", "/v1/models", "Authorization: Bearer sk-acme", "Authorization: Bearer sk-acme", "Connection: close"), 5000);
        assertError(same.status(), same.body(), 400, null, "Authorization");
    }

    @Test
    void item9_twoNameFieldsOrTwoFilePartsOfOneNameAre400NamingTheDuplicate() throws Exception {
        UploadFixtures.Files2 f = UploadFixtures.demo(dir, "demo-r4");
        Multipart names = new Multipart().field("name", "first").field("name", "second").file("adapter_config", "adapter_config.json", f.config())
            .file("adapter_model", "adapter_model.safetensors", f.model());
        Raw r = upload(names);
        assertError(r, 400, "name", "'name'", "2 times");
        Multipart configs = f.form("two-configs").file("adapter_config", "adapter_config.json", f.config());
        assertError(upload(configs), 400, "adapter_config", "'adapter_config'", "twice");
        Multipart models = f.form("two-models").file("adapter_model", "adapter_model.safetensors", f.model());
        assertError(upload(models), 400, "adapter_model", "'adapter_model'", "twice");
        for (String n : List.of("first", "second", "two-configs", "two-models")) {
            assertEquals(404, get("/v1/adapters/" + n).statusCode(), n + " was created");
        }
    }

    @Test
    void item9_obsoleteHeaderFoldingIs400() throws Exception {
        byte[] body = GOOD.getBytes(StandardCharsets.UTF_8);
        for (String folded : List.of("X-Note: first\r\n second", "X-Note: first\r\n\tsecond", "Authorization: Bearer\r\n " + KEY)) {
            Raw r = raw(concat(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + folded
                + "\r\nContent-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII), body), 5000);
            assertError(r.status(), r.body(), 400, null, "folding", folded.substring(0, folded.indexOf(':')));
            assertTrue(r.head().toLowerCase(Locale.ROOT).contains("connection: close"), r.toString());
        }
        // the same request without folding is served (the check is not refusing the headers themselves)
        Raw ok = raw(concat(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Note: first second\r\n"
            + "Authorization: Bearer " + KEY + "\r\nConnection: close\r\nContent-Length: " + body.length + "\r\n\r\n")
            .getBytes(StandardCharsets.US_ASCII), body), 10_000);
        assertEquals(200, ok.status(), ok.toString());
        assertEquals(goodChoices, JSON.readTree(ok.body()).get("choices"));
    }

    // ---- item 13: no message ends in "null" --------------------------------------------------------

    /** Bodies the multipart decoder cannot read: the 400 says what is wrong or missing, never "null". */
    @Test
    void item13_brokenMultipartBodiesGetMessagesThatNameWhatIsMissing() throws Exception {
        Multipart form = UploadFixtures.demo(dir, "demo-r4").form("broken");
        byte[] garbage = "this is not multipart at all\r\n".getBytes(StandardCharsets.US_ASCII);
        Raw r = raw(concat(head("POST", "/v1/adapters", "Authorization: Bearer " + KEY, "Content-Type: " + form.contentType(),
            "Content-Length: " + garbage.length), garbage), 10_000);
        assertError(r.status(), r.body(), 400, null, "closing boundary '--" + form.boundary + "--'");
        Raw tooLong = upload(new Multipart().field("name", "n".repeat(10_000)));
        Multipart many = new Multipart();
        for (int i = 0; i < 300; i++) {
            many.field("f" + i, "v");
        }
        Raw tooMany = upload(many);
        assertError(tooLong, 400, null, "longer than 8192 bytes", "name");
        assertError(tooMany, 400, null, "more than 256 form fields");
        Raw noBoundary = raw(concat(head("POST", "/v1/adapters", "Authorization: Bearer " + KEY, "Content-Type: multipart/form-data",
            "Content-Length: " + garbage.length), garbage), 10_000);
        assertError(noBoundary.status(), noBoundary.body(), 400, null, "no boundary parameter");
        assertNoStaging();
    }

    static Raw upload(Multipart form) throws Exception {
        byte[] body = form.bytes();
        return raw(concat(head("POST", "/v1/adapters", "Authorization: Bearer " + KEY, "Content-Type: " + form.contentType(),
            "Content-Length: " + body.length, "Connection: close"), body), 30_000);
    }

    // ---- helpers --------------------------------------------------------------------------------

    /** About {@code bytes} of English-like text: words of the demo corpus's kind, in a fixed pseudo-random order. */
    static String words(int bytes) {
        String[] w = {"the", "gateway", "serves", "adapters", "to", "many", "tenants", "on", "one", "copy", "of", "a", "base", "model",
            "requests", "share", "batches", "while", "each", "row", "keeps", "its", "own", "weights", "and", "tokens"};
        java.util.Random rnd = new java.util.Random(12);
        StringBuilder sb = new StringBuilder(bytes + 16);
        while (sb.length() < bytes) {
            sb.append(w[rnd.nextInt(w.length)]).append(rnd.nextInt(8) == 0 ? ". " : " ");
        }
        return sb.toString();
    }

    /**
     * A request on a fresh connection that closes after it (a pooled connection could be closed by
     * the server's short idle timeout just as a client reuses it).
     */
    static Raw post(String path, String body) throws Exception {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        return raw(concat(head("POST", path, "Authorization: Bearer " + KEY, "Content-Type: application/json", "Content-Length: " + b.length,
            "Connection: close"), b), 30_000);
    }

    static Raw get(String path) throws Exception {
        return raw(head("GET", path, "Authorization: Bearer " + KEY, "Connection: close"), 30_000);
    }

    static HttpLimits limits() {
        return new HttpLimits(IDLE, HEADER, BODY, MAX_CONNECTIONS, HEALTH_CONNECTIONS);
    }

    /** /health answers 200 within {@link #HEALTH_MS}, on a fresh connection (a pooled one could hide a refused accept). */
    static long assertHealthFast() throws Exception {
        return assertHealthFast(port);
    }

    static long assertHealthFast(int port) throws Exception {
        long t0 = System.nanoTime();
        Raw r = RawHttp.exchange(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".getBytes(StandardCharsets.US_ASCII), 5000);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(200, r.status(), r.toString());
        assertTrue(ms < HEALTH_MS, "/health took " + ms + " ms");
        return ms;
    }

    static void assertError(Raw r, int status, String param, String... fragments) throws Exception {
        assertError(r.status(), r.body(), status, param, fragments);
    }

    static void assertError(int gotStatus, String body, int status, String param, String... fragments) throws Exception {
        assertEquals(status, gotStatus, body);
        JsonNode err = JSON.readTree(body).get("error");
        assertNotNull(err, body);
        for (String f : List.of("message", "type", "param", "code")) {
            assertTrue(err.has(f), "error body lacks '" + f + "': " + body);
        }
        String message = err.get("message").asText();
        assertFalse(message.contains("null"), "the message says null: " + message);
        for (String f : fragments) {
            assertTrue(message.toLowerCase(Locale.ROOT).contains(f.toLowerCase(Locale.ROOT)), "'" + f + "' not in: " + message);
        }
        if (param != null) {
            assertEquals(param, err.get("param").asText(), body);
        }
    }

    /** Staging directories of uploads under the data directory. */
    static List<String> staged() throws IOException {
        Path tmp = dir.resolve("data").resolve("tmp");
        if (!Files.isDirectory(tmp)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(tmp)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    static Raw raw(byte[] request, int timeoutMs) throws IOException {
        return RawHttp.exchange(port, request, timeoutMs);
    }
}
