package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.gateway.ServerProcesses;
import dev.loragateway.gateway.demo.DemoModel;
import java.io.BufferedReader;
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
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, migration: streams entering at a front node and running on another node survive that
 * node's drain (SIGTERM) and its death (SIGKILL of its serving JVM) mid-stream. Every stream
 * completes, and its whole text equals what a single node answers for the same request (greedy
 * and seeded sampling, {@code n = 2}, chat); {@code lora_gateway_cluster_requests_migrated_total}
 * counts the moves by reason.
 *
 * <p>Nodes: {@code node-0} and {@code node-1} execute, {@code node-9} is the front. Consolidation
 * breaks ties by node id, so an idle cluster places the front's requests on {@code node-0}, and
 * once it has gone, on {@code node-1}.
 */
class FailoverProcessTest {
    private static final int MAX_TOKENS = 300;
    private static final Pattern MIGRATED = Pattern.compile("lora_gateway_cluster_requests_migrated_total\\{reason=\"(\\w+)\"[^}]*} (\\d+)");

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private ClusterNodes cluster;
    private final ExecutorService clients = Executors.newCachedThreadPool();

    @AfterEach
    void stop() {
        clients.shutdownNow();
        if (cluster != null) {
            cluster.close();
        }
    }

    /** One streamed chat request's choices as "index:text/finish" lines, and how many chunks arrived so far. */
    private static final class Stream {
        final int i;
        final AtomicInteger chunks = new AtomicInteger();
        Future<String> answer;

        Stream(int i) {
            this.i = i;
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void streamsSurviveTheirNodesDrainAndDeath() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path secret = Files.writeString(dir.resolve("secret"), "failover-secret\n");
        int[] ports = ClusterNodes.freePorts(3);
        String members = ClusterNodes.members(ports);
        cluster = new ClusterNodes(dir, "t14-failover");
        String[] ids = {"node-0", "node-1", "node-9"};
        List<Process> nodes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            nodes.add(cluster.start(model, ids[i], members, ports[i], secret, "--max-batch", "128", "--max-model-len", "512"));
        }
        List<String> urls = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            urls.add(cluster.awaitListening(nodes.get(i), ids[i]));
        }
        String front = urls.get(2);
        cluster.awaitCluster(front, s -> s.size() == 3);

        // drain: SIGTERM on node-0 while 20 streams run there
        List<Stream> drained = startStreams(front, 0, 20);
        awaitChunks(drained, 3);
        assertTrue(cluster.get(front + "/v1/cluster").toString().contains("\"running\""));
        nodes.get(0).destroy(); // SIGTERM
        HttpResponse<String> during = post(front, body(1000, false));
        assertEquals(200, during.statusCode(), "a request sent during the drain is placed elsewhere: " + during.body());
        assertTrue(nodes.get(0).waitFor(60, TimeUnit.SECONDS), "the drained node exits");
        assertEquals(0, nodes.get(0).exitValue(), "a drain ends with exit 0: " + ServerProcesses.tail(cluster.log("node-0")));
        List<String> drainedAnswers = answers(drained);
        cluster.awaitCluster(front, s -> s.size() == 2);
        assertTrue(migrated(front, "drain") >= 1, cluster.metrics(front));

        // node lost: SIGKILL on node-1's serving JVM while 60 streams run there
        long lostBefore = migrated(front, "node_lost");
        List<Stream> killed = startStreams(front, 100, 60);
        awaitChunks(killed, 3);
        int unfinished = (int) killed.stream().filter(s -> !s.answer.isDone()).count();
        nodes.get(1).destroyForcibly();
        List<String> killedAnswers = answers(killed);
        assertTrue(unfinished > 0, "the kill came too late to test anything");
        long lost = migrated(front, "node_lost") - lostBefore;
        assertTrue(lost >= 1 && lost <= 60, "requests migrated for node_lost: " + lost + " (" + unfinished + " streams unfinished at the kill)");
        cluster.awaitCluster(front, s -> s.size() == 1);

        // what one node answers: the front, alone now, runs every request itself
        List<String> seededDiffs = new ArrayList<>();
        compare(front, drained, drainedAnswers, "drain", seededDiffs);
        compare(front, killed, killedAnswers, "kill", seededDiffs);
        assertTrue(seededDiffs.size() <= 2, "seeded streams that differ from one node's answer: " + seededDiffs);
    }

    /**
     * Greedy streams must equal one node's answer exactly. Seeded ones must too, with one known
     * exception: the CPU kernels are not batch-invariant (a row's logits differ in the last bit
     * with the batch it runs in, and between prefill and decode), so where the sampler's uniform
     * number falls within about 1e-7 of a boundary, a recomputed choice can take another token than
     * the original run would have; measured about one seeded choice in 80 over 300 tokens. A wrong
     * seed or position would make every seeded stream differ; at most two may.
     */
    private void compare(String front, List<Stream> streams, List<String> answers, String phase, List<String> seededDiffs)
        throws Exception {
        for (int k = 0; k < streams.size(); k++) {
            int i = streams.get(k).i;
            String expected = single(front, i);
            if (i % 2 == 0) {
                assertEquals(expected, answers.get(k), "greedy stream " + i + " through the " + phase);
            } else if (!expected.equals(answers.get(k))) {
                seededDiffs.add(phase + " stream " + i);
            }
        }
    }

    /** Request {@code i}: a chat with n = 2, greedy for even i and seeded sampling for odd i. */
    private static String body(int i, boolean stream) {
        String sampling = i % 2 == 0 ? "\"temperature\":0" : "\"temperature\":0.9,\"seed\":" + (1000 + i);
        return "{\"model\":\"demo\",\"messages\":[{\"role\":\"system\",\"content\":\"You are node number " + i + ".\"},"
            + "{\"role\":\"user\",\"content\":\"Tell the story of request " + i + ".\"}],\"max_tokens\":" + MAX_TOKENS + ",\"n\":2,"
            + sampling + ",\"stream\":" + stream + "}";
    }

    private HttpResponse<String> post(String base, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(base + "/v1/chat/completions")).header("Content-Type", "application/json")
            .timeout(Duration.ofSeconds(120)).POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private List<Stream> startStreams(String base, int first, int count) {
        List<Stream> streams = new ArrayList<>();
        for (int k = 0; k < count; k++) {
            Stream s = new Stream(first + k);
            s.answer = clients.submit(() -> read(base, s));
            streams.add(s);
        }
        return streams;
    }

    /** Reads one stream to its end: each choice's text and finish; fails on a second finish or anything after [DONE]. */
    private String read(String base, Stream s) throws Exception {
        HttpResponse<InputStream> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/chat/completions"))
            .header("Content-Type", "application/json").timeout(Duration.ofSeconds(150))
            .POST(HttpRequest.BodyPublishers.ofString(body(s.i, true))).build(), HttpResponse.BodyHandlers.ofInputStream());
        assertEquals(200, r.statusCode(), "stream " + s.i);
        StringBuilder[] text = {new StringBuilder(), new StringBuilder()};
        String[] finish = new String[2];
        boolean done = false;
        try (BufferedReader in = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (!line.startsWith("data: ")) {
                    continue;
                }
                assertTrue(!done, "stream " + s.i + ": data after [DONE]");
                if (line.equals("data: [DONE]")) {
                    done = true;
                    continue;
                }
                JsonNode event = ClusterNodes.JSON.readTree(line.substring(6));
                assertTrue(!event.has("error"), "stream " + s.i + " failed: " + line);
                for (JsonNode c : event.get("choices")) {
                    int idx = c.get("index").asInt();
                    assertTrue(finish[idx] == null, "stream " + s.i + " choice " + idx + " goes on after its finish");
                    text[idx].append(c.path("delta").path("content").asText(""));
                    if (!c.get("finish_reason").isNull()) {
                        finish[idx] = c.get("finish_reason").asText();
                    }
                }
                s.chunks.incrementAndGet();
            }
        }
        assertTrue(done, "stream " + s.i + " ended without [DONE]");
        return "0:" + text[0] + "/" + finish[0] + "\n1:" + text[1] + "/" + finish[1] + "\n";
    }

    /** The same request, not streamed, answered by {@code base}: in the same shape as {@link #read}. */
    private String single(String base, int i) throws Exception {
        HttpResponse<String> r = post(base, body(i, false));
        assertEquals(200, r.statusCode(), r.body());
        JsonNode b = ClusterNodes.JSON.readTree(r.body());
        String[] out = new String[2];
        for (JsonNode c : b.get("choices")) {
            out[c.get("index").asInt()] = c.get("index").asInt() + ":" + c.get("message").path("content").asText("") + "/"
                + c.get("finish_reason").asText() + "\n";
        }
        return out[0] + out[1];
    }

    private static void awaitChunks(List<Stream> streams, int atLeast) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!streams.stream().allMatch(s -> s.chunks.get() >= atLeast || s.answer.isDone())) {
            if (System.nanoTime() > deadline) {
                fail("the streams did not start within 60 s");
            }
            Thread.sleep(5);
        }
    }

    private static List<String> answers(List<Stream> streams) throws Exception {
        List<String> out = new ArrayList<>();
        for (Stream s : streams) {
            try {
                out.add(s.answer.get(150, TimeUnit.SECONDS));
            } catch (java.util.concurrent.ExecutionException e) {
                throw new AssertionError("stream " + s.i + " failed: " + e.getCause(), e.getCause());
            }
        }
        return out;
    }

    private long migrated(String base, String reason) throws Exception {
        Matcher m = MIGRATED.matcher(cluster.metrics(base));
        while (m.find()) {
            if (m.group(1).equals(reason)) {
                return Long.parseLong(m.group(2));
            }
        }
        fail("no migrated counter for " + reason + " in " + cluster.metrics(base));
        return -1;
    }
}
