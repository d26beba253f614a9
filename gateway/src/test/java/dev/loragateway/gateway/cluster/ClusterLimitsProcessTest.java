package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.gateway.ServerProcesses;
import dev.loragateway.gateway.demo.DemoModel;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
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
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, limits and logs: three {@code serve} processes as one cluster, with an
 * {@code --api-keys} file whose tenants have {@code max_requests_per_second} and
 * {@code max_concurrent_requests}. The limits hold for the tenant across the cluster (within 10 %),
 * not per node; the front node's access log names the node that ran each request; a killed node's
 * slots come back.
 *
 * <p>Requests are held in flight by sending their head and only part of their body: the tenant's
 * slot is taken when the head arrives and kept until the response ends, so a held request counts
 * exactly as a long stream does, for as long as the test wants and without spending the 2 cores on
 * decoding. A held request is let go by sending the rest of its body; it then streams its answer.
 */
class ClusterLimitsProcessTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int CONCURRENT = 3;
    private static final double RATE = 10;
    private static final String STREAM = "{\"model\":\"demo\",\"prompt\":\"held\",\"max_tokens\":4,\"temperature\":0,\"stream\":true}";
    private static final String SMALL = "{\"model\":\"demo\",\"prompt\":\"Hi\",\"max_tokens\":2,\"temperature\":0}";

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<Socket> held = new ArrayList<>();
    private ClusterNodes cluster;

    @AfterEach
    void stop() throws IOException {
        for (Socket s : held) {
            s.close();
        }
        if (cluster != null) {
            cluster.close();
        }
    }

    @Test
    @Timeout(value = 150, unit = TimeUnit.SECONDS)
    void tenantLimitsHoldForTheClusterAndTheAccessLogNamesTheExecutingNode() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path secret = Files.writeString(dir.resolve("secret"), "limits-of-the-cluster\n");
        Path keys = Files.writeString(dir.resolve("keys.json"), """
            { "tenants": [
                { "id": "busy", "keys": ["sk-busy"], "max_concurrent_requests": %d },
                { "id": "rated", "keys": ["sk-rated"], "max_requests_per_second": %s },
                { "id": "open", "keys": ["sk-open"] },
                { "id": "both", "keys": ["sk-both"], "max_requests_per_second": 50, "max_concurrent_requests": 2 }
            ] }""".formatted(CONCURRENT, RATE));
        int[] ports = ClusterNodes.freePorts(3);
        String members = ClusterNodes.members(ports);
        cluster = new ClusterNodes(dir, "t14-limits");
        List<Process> nodes = new ArrayList<>();
        List<String> urls = new ArrayList<>();
        for (int i = 0; i < 3; i++) { // one after the other: three JVMs starting at once on 2 busy cores can take minutes
            nodes.add(cluster.start(model, "node-" + i, members, ports[i], secret, "--api-keys", keys.toString(), "--placement",
                "round-robin"));
            urls.add(cluster.awaitListening(nodes.get(i), "node-" + i));
        }
        for (String url : urls) {
            awaitMetric(url, "lora_gateway_cluster_nodes 3");
        }

        // access log: requests entering node-2 run round-robin on all three; node-2's lines say where
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            HttpResponse<String> r = post(urls.get(2), "sk-open", SMALL);
            assertEquals(200, r.statusCode(), r.body());
            ids.add(r.headers().firstValue("X-Request-Id").orElseThrow());
        }
        Set<String> ranOn = new TreeSet<>();
        for (String id : ids) {
            ranOn.add(accessLine(cluster.log("node-2"), id).get("node").asText());
        }
        assertEquals(Set.of("node-0", "node-1", "node-2"), ranOn, "the executing nodes named in node-2's access log");
        // both limits, so two round trips to the cluster before the body is read: the body arrives whole
        for (String url : urls) {
            HttpResponse<String> r = post(url, "sk-both", SMALL);
            assertEquals(200, r.statusCode(), r.body());
            assertEquals(2, JSON.readTree(r.body()).at("/usage/completion_tokens").asInt(), r.body());
        }

        // rate: one bucket for the tenant wherever its requests enter, not one per node. Four clients send
        // GET /v1/models (a /v1/ request like any other, and cheap, so that the offered load stays far above
        // the rate on 2 busy cores) round-robin to the three nodes for 5 s
        AtomicInteger admitted = new AtomicInteger();
        AtomicInteger refused = new AtomicInteger();
        AtomicLong last = new AtomicLong();
        long t0 = System.nanoTime();
        List<Thread> clients = new ArrayList<>();
        List<Throwable> failures = new java.util.concurrent.CopyOnWriteArrayList<>();
        for (int c = 0; c < 4; c++) {
            int first = c;
            Thread t = new Thread(() -> {
                try {
                    for (int k = first; System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5); k++) {
                        last.accumulateAndGet(System.nanoTime(), Math::max);
                        HttpResponse<String> r = get(urls.get(k % 3) + "/v1/models", "sk-rated");
                        if (r.statusCode() == 200) {
                            admitted.incrementAndGet();
                        } else if (r.statusCode() == 429 && r.headers().firstValue("Retry-After").isPresent()) {
                            refused.incrementAndGet();
                        } else {
                            throw new AssertionError(r.statusCode() + " " + r.body());
                        }
                    }
                } catch (Throwable e) {
                    failures.add(e);
                }
            }, "rate-client-" + c);
            clients.add(t);
            t.start();
        }
        for (Thread t : clients) {
            t.join(TimeUnit.SECONDS.toMillis(60));
        }
        assertEquals(List.of(), failures);
        double seconds = (last.get() - t0) / 1e9;
        double expected = RATE + RATE * seconds; // a full bucket (one second's worth), then the refill
        String what = admitted + " of " + (admitted.get() + refused.get()) + " requests admitted in " + seconds + " s at " + RATE
            + "/s; expected " + expected + " (per node it would be " + 3 * expected + ")";
        assertTrue(refused.get() > 2 * admitted.get(), "the clients asked for far more than the rate: " + what);
        assertTrue(Math.abs(admitted.get() - expected) <= 0.1 * expected, what + fallbacks());

        // concurrency: three held requests, one entering each node, fill the tenant's three slots
        for (int i = 0; i < 3; i++) {
            held.add(hold(urls.get(i), "sk-busy", STREAM));
        }
        Thread.sleep(500); // each head reached its node and took its slot (well under 1 ms each)
        for (String url : urls) {
            HttpResponse<String> r = post(url, "sk-busy", SMALL);
            assertEquals(429, r.statusCode(), url + ": " + r.body());
            assertEquals("1", r.headers().firstValue("Retry-After").orElseThrow());
            assertTrue(r.body().contains("already has 3 requests running"), r.body());
        }
        // one finishes (its stream runs to [DONE]): another is admitted, on another node
        String streamed = release(held.get(0), STREAM);
        assertTrue(streamed.startsWith("HTTP/1.1 200") && streamed.contains("data: [DONE]"), streamed);
        // (the slot is given back when the response has ended on the server, a moment after the
        // client read its last byte: a bounded retry)
        long freeBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        HttpResponse<String> next;
        do {
            next = post(urls.get(1), "sk-busy", SMALL);
        } while (next.statusCode() == 429 && System.nanoTime() < freeBy && sleep(50));
        assertEquals(200, next.statusCode(), next.body());
        Thread.sleep(500); // its slot is given back a moment after its response ended
        held.set(0, hold(urls.get(0), "sk-busy", STREAM));
        Thread.sleep(500);
        assertEquals(429, post(urls.get(2), "sk-busy", SMALL).statusCode(), "three held again");

        // node-1 is killed while it holds a slot: the others give that slot back when it leaves
        nodes.get(1).destroyForcibly();
        awaitMetric(urls.get(0), "lora_gateway_cluster_nodes 2");
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        int status;
        do {
            Thread.sleep(100);
            status = post(urls.get(2), "sk-busy", SMALL).statusCode();
        } while (status == 429 && System.nanoTime() < until);
        assertEquals(200, status, "the dead node's slot is free again" + fallbacks());
        Thread.sleep(500); // that request's own slot is given back a moment after its response ended
        held.add(hold(urls.get(0), "sk-busy", STREAM)); // with those of node-0 and node-2: three again
        Thread.sleep(500);
        assertEquals(429, post(urls.get(2), "sk-busy", SMALL).statusCode(), "the limit still holds on the two left");
    }

    private static boolean sleep(long millis) throws InterruptedException {
        Thread.sleep(millis);
        return true;
    }

    /** Any "counting on this node alone" warning of a node, for a failure message. */
    private String fallbacks() throws IOException {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 3; i++) {
            for (String line : Files.readAllLines(cluster.log("node-" + i), StandardCharsets.UTF_8)) {
                if (line.contains("counting on this node alone")) {
                    b.append("\nnode-").append(i).append(": ").append(line);
                }
            }
        }
        return b.toString();
    }

    private HttpResponse<String> post(String base, String key, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
            .header("Authorization", "Bearer " + key).timeout(Duration.ofSeconds(30)).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> get(String url, String key) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).header("Authorization", "Bearer " + key).timeout(Duration.ofSeconds(30))
            .build(), HttpResponse.BodyHandlers.ofString());
    }

    /** Sends the head of a completion and the first half of {@code body}; the request waits for the rest. */
    private static Socket hold(String base, String key, String body) throws IOException {
        URI u = URI.create(base);
        Socket s = new Socket(u.getHost(), u.getPort());
        s.setSoTimeout(30_000);
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        String head = "POST /v1/completions HTTP/1.1\r\nHost: " + u.getHost() + "\r\nAuthorization: Bearer " + key
            + "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + b.length + "\r\n\r\n";
        s.getOutputStream().write(head.getBytes(StandardCharsets.US_ASCII));
        s.getOutputStream().write(b, 0, b.length / 2);
        s.getOutputStream().flush();
        return s;
    }

    /** Sends the rest of a held request's body and reads its whole response (the server closes after it). */
    private static String release(Socket s, String body) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        s.getOutputStream().write(b, b.length / 2, b.length - b.length / 2);
        s.getOutputStream().flush();
        InputStream in = s.getInputStream();
        ByteArrayOutputStream got = new ByteArrayOutputStream();
        in.transferTo(got);
        return got.toString(StandardCharsets.UTF_8);
    }

    /** Node {@code log}'s access-log line of request {@code id} (waits up to 10 s for it). */
    private static JsonNode accessLine(Path log, String id) throws Exception {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < until) {
            for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
                int brace = line.indexOf('{');
                if (line.contains("lora_gateway.access") && brace >= 0 && line.contains(id)) {
                    return JSON.readTree(line.substring(brace));
                }
            }
            Thread.sleep(100);
        }
        fail("no access-log line of " + id + " in " + log + ":\n" + ServerProcesses.tail(log));
        return null;
    }

    private void awaitMetric(String url, String line) throws Exception {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(40);
        String last = "";
        while (System.nanoTime() < until) {
            last = cluster.metrics(url);
            if (last.lines().anyMatch(l -> l.equals(line) || l.equals(line + ".0"))) { // a gauge may print as 3.0
                return;
            }
            Thread.sleep(100);
        }
        fail(url + " never showed '" + line + "':\n" + last.lines().filter(l -> l.startsWith("lora_gateway_cluster")).toList());
    }
}
