package dev.loragateway.gateway.cli;

import dev.loragateway.gateway.ServerProcesses;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.Tensor;
import java.io.IOException;
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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code serve} as the contract starts it, in child JVMs: {@code java -cp ... Main serve} without
 * the Vector API flag, so Main relaunches itself as it does under {@code java -jar}.
 */
class ServeProcessTest {

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(5)).build();

    /**
     * Issue 12, item 12: SIGTERM to the relaunching parent used to reach the serving JVM through the
     * parent's shutdown hooks, and a request ~20 ms after the signal sometimes still got 200. Now a
     * signal handler passes it on and the server refuses new work from its own signal handler: on a
     * machine loaded by busy threads, a request sent 50 ms after the signal gets 503.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void sigtermToTheRelaunchingParentStopsNewWorkWithin50Ms() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        List<Thread> load = new ArrayList<>();
        for (int i = 0; i < Math.max(1, Runtime.getRuntime().availableProcessors() / 2); i++) { // a loaded machine: half its cores busy
            Thread t = new Thread(() -> {
                long x = 0;
                while (!Thread.currentThread().isInterrupted()) {
                    x += System.nanoTime() % 7;
                }
                if (x == 42) {
                    System.out.print("");
                }
            });
            t.setDaemon(true);
            load.add(t);
        }
        Path stderr = dir.resolve("stderr.log");
        Path steps = dir.resolve("steps.csv");
        Process parent = start(stderr, "--model", model.toString(), "--model-id", "demo", "--record-steps", steps.toString());
        try {
            String base = ServerProcesses.awaitListening(parent, stderr);
            String body = "{\"model\":\"demo\",\"prompt\":\"Hello\",\"max_tokens\":2,\"temperature\":0}";
            assertEquals(200, post(base + "/v1/completions", body).statusCode());
            assertTrue(parent.children().findAny().isPresent(), "Main did not relaunch itself: the parent was not tested");
            // a long generation running keeps the draining server's port open after the signal
            CompletableFuture<HttpResponse<String>> running = http.sendAsync(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
                .header("Content-Type", "application/json").timeout(Duration.ofSeconds(60)).POST(HttpRequest.BodyPublishers.ofString(
                    "{\"model\":\"demo\",\"prompt\":\"Once upon a time the gateway\",\"max_tokens\":640,\"temperature\":0}")).build(),
                HttpResponse.BodyHandlers.ofString());
            load.forEach(Thread::start);
            Thread.sleep(200);
            long signalled = System.nanoTime();
            parent.destroy(); // SIGTERM to the pid the user started
            // probe /health back to back: the last probe still answered 200 bounds when work stopped being taken
            long lastOk = -1;
            long refusedSent;
            HttpResponse<String> probe;
            do {
                refusedSent = System.nanoTime() - signalled;
                probe = get(base + "/health");
                if (probe.statusCode() == 200) {
                    lastOk = refusedSent;
                }
            } while (probe.statusCode() == 200 && System.nanoTime() - signalled < TimeUnit.SECONDS.toNanos(5));
            // and a completion sent 50 ms after the signal must be refused
            long at = signalled + TimeUnit.MILLISECONDS.toNanos(50);
            while (System.nanoTime() < at) {
                Thread.onSpinWait();
            }
            HttpResponse<String> late = post(base + "/v1/completions", body);
            load.forEach(Thread::interrupt);
            System.out.printf("sigterm: the last /health probe answered 200 was sent %.1f ms after the signal, the first answered 503 %.1f ms"
                + " after it%n", lastOk / 1e6, refusedSent / 1e6);
            assertEquals(503, probe.statusCode(), probe.body());
            assertTrue(lastOk < TimeUnit.MILLISECONDS.toNanos(50), "a /health probe sent " + lastOk / 1e6
                + " ms after SIGTERM still answered 200: the server took work for longer than 50 ms");
            assertEquals(503, late.statusCode(), "a request sent 50 ms after SIGTERM was taken: " + late.body());
            assertTrue(late.body().contains("draining"), late.body());
            assertEquals(200, running.get(60, TimeUnit.SECONDS).statusCode(), "the running generation was cut by the drain");
            assertTrue(parent.waitFor(30, TimeUnit.SECONDS), "the server did not exit after SIGTERM");
            assertEquals(0, parent.exitValue(), "exit code after a drain; stderr:\n" + ServerProcesses.tail(stderr));
            // --record-steps: one line per step of the served requests (not the self-check's), prompt then decodes
            List<String> recorded = Files.readAllLines(steps);
            assertEquals(StepRecorder.HEADER, recorded.get(0));
            assertTrue(recorded.size() > 600, "640 tokens were generated in one stream: " + recorded.size() + " lines");
            assertTrue(recorded.stream().skip(1).allMatch(l -> l.matches("serve,\\d+,\\d+,\\d+,\\d+,\\d+\\.\\d{4}")), recorded.get(1));
            assertTrue(recorded.stream().skip(1).anyMatch(l -> l.startsWith("serve,0,") && !l.startsWith("serve,0,0,")), "a prompt step");
            assertTrue(recorded.stream().skip(1).anyMatch(l -> l.startsWith("serve,1,0,")), "a decode step");
        } finally {
            load.forEach(Thread::interrupt);
            kill(parent);
        }
    }

    /**
     * Issue 12, item 3: a server that cannot compute never says it is ready. A model whose weights
     * give non-finite logits fails the startup self-check: no listening line, a non-zero exit, and a
     * message naming the JDK, the backend and the kernels.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aServerThatCannotComputeNeverSaysItIsReady() throws Exception {
        Path model = dir.resolve("nan-model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path weights = model.resolve("model.safetensors");
        Map<String, Tensor> copy = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : SafeTensors.open(weights).entrySet()) {
            Tensor t = e.getValue();
            float[] v = t.toFloats();
            if (e.getKey().equals("model.norm.weight")) {
                Arrays.fill(v, Float.NaN);
            }
            copy.put(e.getKey(), Tensor.of(e.getKey(), DType.F32, v, t.shape()));
        }
        Path tmp = model.resolve("model.safetensors.tmp");
        SafeTensors.write(tmp, copy, Map.of());
        Files.move(tmp, weights, java.nio.file.StandardCopyOption.REPLACE_EXISTING);

        Path stderr = dir.resolve("stderr.log");
        Process p = start(stderr, "--model", model.toString(), "--model-id", "demo");
        try {
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "serve did not exit");
            assertEquals(SelfCheck.EXIT_CODE, p.exitValue(), "stdout:\n" + out + "\nstderr:\n" + ServerProcesses.tail(stderr));
            assertFalse(out.contains("listening"), "a server that cannot compute printed its ready line: " + out);
            String err = Files.readString(stderr);
            assertTrue(err.contains("self-check failed") && err.contains("Java " + Runtime.version().feature())
                && err.contains("backend cpu") && err.contains("kernels"), ServerProcesses.tail(stderr));
        } finally {
            kill(p);
        }
    }

    private Process start(Path stderr, String... args) throws IOException {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"), "-Xmx512m",
            "-DOPT_OUT_TRACKING=true", Main.class.getName(), "serve", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", dir.resolve("data").toString(), "--backend", "cpu"));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(stderr.toFile());
        pb.environment().put("OPT_OUT_TRACKING", "true");
        pb.environment().put("LORA_GATEWAY_CACHE", dir.resolve("cache").toString());
        return pb.start();
    }

    private static void kill(Process p) throws InterruptedException {
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        if (p.isAlive()) {
            p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }

    private HttpResponse<String> get(String url) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> post(String url, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).header("Content-Type", "application/json").timeout(Duration.ofSeconds(30))
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }
}
