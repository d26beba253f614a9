package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.gateway.cli.Main;
import dev.loragateway.gateway.ServerProcesses;
import dev.loragateway.gateway.demo.DemoModel;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * SIGTERM while completions stream, against the real server in a child JVM ({@code Main serve}, as
 * the contract starts it): the port stays open and every new request, {@code /health} included,
 * gets 503 while the streams already running go on to their last token, their finish_reason, their
 * usage chunk and {@code data: [DONE]}; then the process exits 0.
 *
 * <p>The streams are greedy and long (640 tokens, a few seconds for four of them on two cores);
 * the test checks that each stream received chunks after the server was
 * seen draining (else it would prove nothing) and that its text equals the same request answered
 * before the signal (nothing cut short).
 */
class DrainTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int STREAMS = 4;
    private static final String PROMPT = "Once upon a time the gateway";

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(5)).build();

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void sigtermFinishesRunningStreamsAnswers503MeanwhileAndExitsZero() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path stderr = dir.resolve("server-stderr.log");
        Process server = start(model, stderr);
        try {
            String base = ServerProcesses.awaitListening(server, stderr);
            assertEquals(200, get(base + "/health").statusCode());
            int maxTokens = 640; // four such streams take a few seconds on the tiny demo model, most of it after the signal
            ObjectNode req = JSON.createObjectNode().put("model", "demo").put("prompt", PROMPT).put("max_tokens", maxTokens)
                .put("temperature", 0);
            HttpResponse<String> ref = post(base + "/v1/completions", req.toString());
            assertEquals(200, ref.statusCode(), ref.body());
            JsonNode reference = JSON.readTree(ref.body());

            req.put("stream", true).putObject("stream_options").put("include_usage", true);
            List<Stream> streams = new ArrayList<>();
            for (int i = 0; i < STREAMS; i++) {
                streams.add(new Stream(base, req.toString()));
            }
            for (Stream s : streams) {
                assertTrue(s.firstChunk.await(20, TimeUnit.SECONDS), "stream " + s + " sent no chunk");
            }

            long signalled = System.nanoTime();
            server.destroy(); // SIGTERM
            // /health turns 503 while the streams still run
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            HttpResponse<String> health;
            do {
                health = get(base + "/health");
            } while (health.statusCode() == 200 && System.nanoTime() < deadline);
            long drainingSeen = System.nanoTime();
            boolean runningAtHealth503 = streams.stream().anyMatch(s -> !s.ended.isDone());
            assertError(503, health);
            assertTrue(runningAtHealth503, "every stream had ended before the server was seen draining: nothing was tested");

            // a new completion (and any other route) gets 503 while the streams run; a refused
            // connection would only be acceptable once every stream is done
            boolean allDoneBefore = streams.stream().allMatch(s -> s.ended.isDone());
            try {
                HttpResponse<String> late = post(base + "/v1/completions",
                    "{\"model\":\"demo\",\"prompt\":\"late\",\"max_tokens\":4}");
                assertError(503, late);
                assertTrue(JSON.readTree(late.body()).get("error").get("message").asText().contains("drain"), late.body());
                assertError(503, get(base + "/v1/models"));
                assertError(503, post(base + "/v1/completions", req.toString()));
            } catch (IOException refused) {
                assertTrue(allDoneBefore, "a request during the drain was refused (" + refused + ") while streams were still running");
            }

            for (Stream s : streams) {
                s.ended.get(30, TimeUnit.SECONDS);
                assertTrue(s.done, s + " ended without data: [DONE]");
                assertEquals(200, s.status, s.toString());
                assertEquals(reference.get("choices").get(0).get("text").asText(), s.text.toString(), s + " was cut short or changed");
                assertEquals(List.of(reference.get("choices").get(0).get("finish_reason").asText()), s.finishReasons, s.toString());
                assertEquals(reference.get("usage"), s.usage, s.toString());
                assertTrue(s.chunksAfter(drainingSeen) > 0, s + " got no chunk after the server was seen draining");
            }

            assertTrue(server.waitFor(30, TimeUnit.SECONDS), "the server did not exit after its streams finished");
            System.out.printf("drain: /health 503 %d ms after SIGTERM; chunks per stream after that %s; exit %d ms after SIGTERM%n",
                TimeUnit.NANOSECONDS.toMillis(drainingSeen - signalled), streams.stream().map(s -> s.chunksAfter(drainingSeen)).toList(),
                TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - signalled));
            assertEquals(0, server.exitValue(), "exit code after a drain; stderr:\n" + ServerProcesses.tail(stderr));
            assertTrue(Files.readString(stderr).contains("draining"), "the drain is logged");
        } finally {
            if (server.isAlive()) {
                server.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    /** {@code java ... Main serve} on a free port, with the Vector API module given so that Main does not relaunch itself. */
    private Process start(Path model, Path stderr) throws IOException {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"), "--add-modules", "jdk.incubator.vector"));
        if (Runtime.version().feature() >= 22) {
            cmd.add("--enable-native-access=ALL-UNNAMED"); // as Main's relaunch does: no native-access warnings on stderr
        }
        cmd.addAll(List.of("-Xmx512m", "-Dlora.relaunched=true", "-DOPT_OUT_TRACKING=true", Main.class.getName(), "serve",
            "--host", "127.0.0.1", "--port", "0", "--data-dir", dir.resolve("data").toString(), "--model", model.toString(),
            "--model-id", "demo", "--backend", "cpu"));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(stderr.toFile());
        pb.environment().put("OPT_OUT_TRACKING", "true");
        pb.environment().put("LORA_GATEWAY_CACHE", dir.resolve("cache").toString());
        return pb.start();
    }

    private HttpResponse<String> get(String url) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> post(String url, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).header("Content-Type", "application/json").timeout(Duration.ofSeconds(30))
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private static void assertError(int status, HttpResponse<String> r) throws Exception {
        assertEquals(status, r.statusCode(), r.uri() + ": " + r.body());
        JsonNode err = JSON.readTree(r.body()).get("error");
        assertNotNull(err, r.body());
        assertTrue(err.has("message") && err.has("type"), r.body());
    }

    /** One streaming completion read on its own thread: text, finish reasons, usage, [DONE], chunk arrival times. */
    private final class Stream {
        final CountDownLatch firstChunk = new CountDownLatch(1);
        final CompletableFuture<Void> ended = new CompletableFuture<>();
        final StringBuilder text = new StringBuilder();
        final List<String> finishReasons = new ArrayList<>();
        final List<Long> arrivals = new ArrayList<>();
        volatile int status;
        volatile boolean done;
        volatile JsonNode usage;

        Stream(String base, String body) {
            Thread t = new Thread(() -> {
                try {
                    HttpResponse<InputStream> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
                        .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                        HttpResponse.BodyHandlers.ofInputStream());
                    status = r.statusCode();
                    read(r.body());
                    ended.complete(null);
                } catch (Throwable e) {
                    ended.completeExceptionally(e);
                } finally {
                    firstChunk.countDown();
                }
            }, "stream");
            t.setDaemon(true);
            t.start();
        }

        private void read(InputStream in) throws IOException {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (!line.startsWith("data: ")) {
                        continue;
                    }
                    String data = line.substring(6);
                    synchronized (this) {
                        arrivals.add(System.nanoTime());
                    }
                    firstChunk.countDown();
                    if (data.equals("[DONE]")) {
                        done = true;
                        continue;
                    }
                    JsonNode chunk = JSON.readTree(data);
                    if (chunk.hasNonNull("usage")) {
                        usage = chunk.get("usage");
                    }
                    for (JsonNode c : chunk.path("choices")) {
                        text.append(c.get("text").asText());
                        if (c.hasNonNull("finish_reason")) {
                            finishReasons.add(c.get("finish_reason").asText());
                        }
                    }
                }
            }
        }

        synchronized long chunksAfter(long nanos) {
            return arrivals.stream().filter(t -> t > nanos).count();
        }

        @Override
        public synchronized String toString() {
            return "stream(status " + status + ", " + arrivals.size() + " chunks, " + text.length() + " chars, finish " + finishReasons
                + ", done " + done + ")";
        }
    }
}
