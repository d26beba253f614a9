package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
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
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, consolidation end to end: three {@code serve} processes with {@code --max-batch 4}
 * (one node's capacity: four sequences). Entering at a {@code consolidate} node, a load one node
 * can hold runs on one node and {@code /metrics} reports two idle nodes; past that node's capacity
 * the second node fills before the third gets anything. Entering at a {@code round-robin} node,
 * three requests keep all three nodes busy.
 *
 * <p>Why it does not depend on timing: each load request is a greedy stream of up to 16,000 tokens
 * (tens of seconds of decoding on the tiny model, far longer than the test needs it), so nothing
 * finishes while a phase runs (checked: a stream that ends early fails the test). Requests are sent
 * one at a time, and the next one is sent only once the front node's own view
 * ({@code GET /v1/cluster}, the map placement reads) shows every earlier one running: placement
 * then always sees the true load, and the node each request went to is read from that view. After
 * a phase the streams are closed (which cancels them on their nodes) and the per-node counts of
 * requests executed come from each node's {@code lora_gateway_engine_time_to_first_token_seconds_count}.
 */
class ConsolidationProcessTest {
    private static final int MAX_BATCH = 4;
    private static final Pattern TTFT_COUNT =
        Pattern.compile("(?m)^lora_gateway_engine_time_to_first_token_seconds_count\\{tenant=\"default\"} (\\d+)");
    private static final Pattern FORWARDED = Pattern.compile("(?m)^lora_gateway_cluster_requests_forwarded_total (\\d+)");

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<LongStream> streams = new ArrayList<>();
    private ClusterNodes cluster;

    @AfterEach
    void stop() {
        streams.forEach(LongStream::close);
        if (cluster != null) {
            cluster.close();
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void consolidateFillsOneNodeThenTheSecondBeforeTheThirdWhileRoundRobinKeepsAllBusy() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path secret = Files.writeString(dir.resolve("secret"), "consolidation-secret\n");
        int[] ports = ClusterNodes.freePorts(3);
        String members = ClusterNodes.members(ports);
        cluster = new ClusterNodes(dir, "t14-consolidate");
        List<Process> nodes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            // 16,384 positions (beyond the demo config's 2,048: RoPE has no table) make a request long-lived;
            // 48 MB of KV holds five of them, so the batch (4) is what fills a node
            nodes.add(cluster.start(model, "node-" + i, members, ports[i], secret, "--placement", i == 2 ? "round-robin" : "consolidate",
                "--max-batch", String.valueOf(MAX_BATCH), "--max-model-len", "16384", "--kv-cache-mb", "48"));
        }
        List<String> urls = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            urls.add(cluster.awaitListening(nodes.get(i), "node-" + i));
        }
        for (String url : urls) {
            cluster.awaitCluster(url, ids -> ids.size() == 3);
        }

        // round-robin (entering at node-2): three requests, one per node, all three busy at once
        String rr = urls.get(2);
        int[] before = executed(urls);
        for (int k = 0; k < 3; k++) {
            open(rr, k);
        }
        awaitGauges(rr, 3, 0);
        assertEquals(List.of(1, 1, 1), List.copyOf(load(cluster.get(rr + "/v1/cluster")).values()), "round-robin: one per node");
        finishPhase(rr);
        assertArrayEquals(new int[] {1, 1, 1}, delta(before, executed(urls)), "requests executed per node under round-robin");

        // consolidate (entering at node-1): one request at a time, each sent once the front's view shows the last one running
        String front = urls.get(1);
        before = executed(urls);
        long forwardedBefore = forwarded(front);
        List<String> placedOn = new ArrayList<>();
        Map<String, Integer> last = load(cluster.get(front + "/v1/cluster"));
        for (int k = 0; k < 2 * MAX_BATCH + 1; k++) {
            open(front, 100 + k);
            int sent = k + 1;
            JsonNode view = awaitView(front, v -> total(load(v)) == sent, "request " + sent + " running in the view");
            Map<String, Integer> now = load(view);
            placedOn.add(grownNode(last, now));
            last = now;
            if (sent == 3) { // a load one node can hold: every request on one node, two idle
                assertEquals(Map.of("node-0", 3, "node-1", 0, "node-2", 0), now, "three requests, one node");
                awaitGauges(front, 1, 2);
            } else if (sent == 2 * MAX_BATCH) { // two nodes full, the third never used
                assertEquals(Map.of("node-0", 4, "node-1", 4, "node-2", 0), now, "eight requests, two full nodes");
                awaitGauges(front, 2, 1);
            }
        }
        assertEquals(List.of("node-0", "node-0", "node-0", "node-0", "node-1", "node-1", "node-1", "node-1", "node-2"), placedOn,
            "consolidate fills node-0, then node-1, and only then starts node-2");
        awaitGauges(front, 3, 0);
        finishPhase(front);
        assertArrayEquals(new int[] {4, 4, 1}, delta(before, executed(urls)), "requests executed per node under consolidate");
        assertEquals(5, forwarded(front) - forwardedBefore, "node-1 ran its own four and forwarded the other five");
    }

    /** Opens a long greedy stream at {@code url} and waits for its first chunk (the request is running somewhere). */
    private void open(String url, int k) throws Exception {
        LongStream s = new LongStream(http, url, "The cluster " + k);
        streams.add(s);
        s.awaitFirstChunk();
    }

    /** Checks no stream finished while the phase ran, closes them all and waits until every node is idle again. */
    private void finishPhase(String url) throws Exception {
        for (LongStream s : streams) {
            assertNull(s.ended, "a load request ended before its phase did (it must outlive the phase): " + s.ended);
        }
        streams.forEach(LongStream::close);
        streams.clear();
        awaitView(url, v -> total(load(v)) == 0, "every node idle after the streams closed");
    }

    /** Polls {@code url/metrics} (up to 30 s) until the busy and idle node gauges read {@code busy} and {@code idle}. */
    private void awaitGauges(String url, int busy, int idle) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        String m = "";
        while (System.nanoTime() < deadline) {
            m = cluster.metrics(url);
            if (gauge(m, "lora_gateway_cluster_nodes_busy") == busy && gauge(m, "lora_gateway_cluster_nodes_idle") == idle) {
                return;
            }
            Thread.sleep(50);
        }
        fail("the cluster gauges of " + url + " never read busy " + busy + ", idle " + idle + ":\n" + gaugeLines(m));
    }

    /** The value of an unlabelled gauge ({@code NAME 3.0}), or NaN when it is absent. */
    private static double gauge(String metrics, String name) {
        Matcher g = Pattern.compile("(?m)^" + name + " (\\S+)$").matcher(metrics);
        return g.find() ? Double.parseDouble(g.group(1)) : Double.NaN;
    }

    /** Polls {@code url/v1/cluster} (up to 30 s) until {@code done} holds; returns that view. */
    private JsonNode awaitView(String url, Predicate<JsonNode> done, String what) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        JsonNode v = null;
        while (System.nanoTime() < deadline) {
            v = cluster.get(url + "/v1/cluster");
            if (done.test(v)) {
                return v;
            }
            Thread.sleep(20);
        }
        fail("never saw " + what + " in " + url + "'s view: " + v);
        return null;
    }

    /** Running plus queued sequences of each member, by node id. */
    private static Map<String, Integer> load(JsonNode view) {
        Map<String, Integer> load = new TreeMap<>();
        view.get("members").forEach(m -> load.put(m.get("id").asText(), m.get("running").asInt() + m.get("queued").asInt()));
        return load;
    }

    private static int total(Map<String, Integer> load) {
        return load.values().stream().mapToInt(Integer::intValue).sum();
    }

    /** The one node whose load grew by one from {@code before} to {@code after}. */
    private static String grownNode(Map<String, Integer> before, Map<String, Integer> after) {
        List<String> grown = new ArrayList<>();
        after.forEach((id, n) -> {
            if (n != before.getOrDefault(id, 0)) {
                grown.add(id + " " + before.getOrDefault(id, 0) + "→" + n);
            }
        });
        assertEquals(1, grown.size(), "one request should change one node's load: " + grown);
        return grown.get(0).substring(0, grown.get(0).indexOf(' '));
    }

    /** Requests each node's engine has started (first token), in node order. */
    private int[] executed(List<String> urls) throws Exception {
        int[] n = new int[urls.size()];
        for (int i = 0; i < n.length; i++) {
            String m = cluster.metrics(urls.get(i));
            Matcher c = TTFT_COUNT.matcher(m);
            n[i] = c.find() ? Integer.parseInt(c.group(1)) : 0;
        }
        return n;
    }

    private long forwarded(String url) throws Exception {
        Matcher f = FORWARDED.matcher(cluster.metrics(url));
        return f.find() ? Long.parseLong(f.group(1)) : 0;
    }

    private static int[] delta(int[] before, int[] after) {
        int[] d = new int[before.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = after[i] - before[i];
        }
        return d;
    }

    private static void assertArrayEquals(int[] expected, int[] actual, String what) {
        assertEquals(java.util.Arrays.toString(expected), java.util.Arrays.toString(actual), what);
    }

    private static String gaugeLines(String metrics) {
        StringBuilder b = new StringBuilder();
        for (String line : metrics.split("\n")) {
            if (line.startsWith("lora_gateway_cluster_")) {
                b.append(line).append('\n');
            }
        }
        return b.toString();
    }

    /**
     * One streamed greedy completion of up to 16,000 tokens, read (and dropped) on its own thread
     * until it ends or {@link #close} closes its body, which drops the connection and so cancels
     * the request on the node that runs it.
     */
    private static final class LongStream implements AutoCloseable {
        private final CompletableFuture<Void> firstChunk = new CompletableFuture<>();
        private final CompletableFuture<InputStream> body = new CompletableFuture<>();
        /** Why the stream ended by itself (finish reason or error), or null while it runs. */
        volatile String ended;
        private volatile boolean closed;

        LongStream(HttpClient http, String url, String prompt) {
            String json = "{\"model\":\"demo\",\"prompt\":\"" + prompt + "\",\"max_tokens\":16000,\"temperature\":0,\"stream\":true}";
            HttpRequest req = HttpRequest.newBuilder(URI.create(url + "/v1/completions")).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build();
            Thread t = new Thread(() -> read(http, req), "long-stream");
            t.setDaemon(true);
            t.start();
        }

        private void read(HttpClient http, HttpRequest req) {
            try {
                HttpResponse<InputStream> r = http.send(req, HttpResponse.BodyHandlers.ofInputStream());
                body.complete(r.body());
                if (r.statusCode() != 200) {
                    ended = "status " + r.statusCode() + ": " + new String(r.body().readAllBytes(), StandardCharsets.UTF_8);
                    firstChunk.completeExceptionally(new IllegalStateException(ended));
                    return;
                }
                BufferedReader lines = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8));
                String line;
                while ((line = lines.readLine()) != null) {
                    if (line.startsWith("data: {")) {
                        firstChunk.complete(null);
                        if (!line.contains("\"finish_reason\":null")) {
                            ended = "finished: " + line;
                        }
                    }
                }
                if (!closed && ended == null) {
                    ended = "the stream closed without a finish reason";
                }
            } catch (IOException e) {
                if (!closed && ended == null) {
                    ended = "read failed: " + e;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                body.complete(null);
                firstChunk.completeExceptionally(new IllegalStateException("no chunk: " + ended));
            }
        }

        void awaitFirstChunk() throws Exception {
            firstChunk.get(60, TimeUnit.SECONDS);
        }

        @Override
        public void close() {
            closed = true;
            InputStream in = body.getNow(null);
            if (in != null) {
                try {
                    in.close();
                } catch (IOException ignored) {
                    // closing is all we want
                }
            }
        }
    }
}
