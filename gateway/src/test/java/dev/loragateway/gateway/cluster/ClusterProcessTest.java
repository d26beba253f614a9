package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.gateway.ServerProcesses;
import dev.loragateway.gateway.cli.Main;
import dev.loragateway.gateway.demo.DemoModel;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, membership: {@code serve} processes started with the cluster flags form one Hazelcast
 * cluster on 127.0.0.1; {@code GET /v1/cluster} on any of them lists every member with its state and
 * the placement policy; {@code /metrics} counts the members and the idle ones; a member killed with
 * SIGKILL leaves every view; a member with another secret never joins (without the flags:
 * {@code ClusterRouteHttpTest}).
 */
class ClusterProcessTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<Process> processes = new ArrayList<>();

    @AfterEach
    void stop() {
        processes.forEach(Process::destroyForcibly);
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void threeNodesFormOneClusterAKilledNodeLeavesAndAnotherSecretNeverJoins() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path secret = Files.writeString(dir.resolve("secret"), "s3cret-of-the-cluster\n");
        Path other = Files.writeString(dir.resolve("other-secret"), "another-secret\n");
        int[] ports = freePorts(4);
        String members = "127.0.0.1:" + ports[0] + ",127.0.0.1:" + ports[1] + ",127.0.0.1:" + ports[2] + ",127.0.0.1:" + ports[3];
        List<Process> nodes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            nodes.add(start(model, "node-" + i, members, ports[i], secret, i == 2 ? "round-robin" : null));
        }
        Process stranger = start(model, "stranger", members, ports[3], other, null);
        List<String> urls = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            urls.add(ServerProcesses.awaitListening(nodes.get(i), dir.resolve("node-" + i + ".log")));
        }
        String strangerUrl = ServerProcesses.awaitListening(stranger, dir.resolve("stranger.log"));

        for (String url : urls) {
            JsonNode c = awaitCluster(url, ids -> ids.size() == 3);
            assertEquals(new TreeSet<>(List.of("node-0", "node-1", "node-2")), ids(c), c.toString());
            JsonNode m = c.get("members").get(0);
            assertEquals("cpu", m.get("backend").asText(), c.toString());
            assertTrue(m.get("total_kv_blocks").asInt() > 0 && m.get("max_batch").asInt() == 32, c.toString());
            assertTrue(m.get("idle").asBoolean(), c.toString());
        }
        assertEquals("consolidate", get(urls.get(0) + "/v1/cluster").get("placement").asText());
        assertEquals("round-robin", get(urls.get(2) + "/v1/cluster").get("placement").asText());
        String metrics = http.send(HttpRequest.newBuilder(URI.create(urls.get(0) + "/metrics")).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        assertTrue(metrics.contains("lora_gateway_cluster_nodes 3"), metrics);
        assertTrue(metrics.contains("lora_gateway_cluster_nodes_idle 3"), metrics);
        assertTrue(metrics.contains("lora_gateway_cluster_nodes_busy 0"), metrics);

        // requests entering at node-2 (round-robin) run on all three nodes and answer as one node does
        String single = completion(urls.get(0), false);
        String singleStream = completion(urls.get(0), true);
        for (int i = 0; i < 6; i++) {
            assertEquals(single, completion(urls.get(2), false), "forwarded request " + i);
            assertEquals(singleStream, completion(urls.get(2), true), "forwarded stream " + i);
        }
        String m2 = http.send(HttpRequest.newBuilder(URI.create(urls.get(2) + "/metrics")).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        java.util.regex.Matcher fw = java.util.regex.Pattern.compile("lora_gateway_cluster_requests_forwarded_total (\\d+)").matcher(m2);
        assertTrue(fw.find(), m2);
        assertTrue(Integer.parseInt(fw.group(1)) >= 8, "round-robin over 3 nodes forwards two thirds of 12 requests: " + fw.group(0));
        // the internal listener refuses a request without the secret
        String internal = get(urls.get(1) + "/v1/cluster").get("members").get(1).get("address").asText();
        assertTrue(internal.startsWith("http://127.0.0.1:"), internal);
        HttpResponse<String> refused = http.send(HttpRequest.newBuilder(URI.create(internal + "/internal/v1/generate"))
            .POST(HttpRequest.BodyPublishers.ofString("{}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(401, refused.statusCode(), refused.body());

        // another secret: a cluster of its own, seen by nobody else
        assertEquals(new TreeSet<>(List.of("stranger")), ids(get(strangerUrl + "/v1/cluster")));

        // SIGKILL (no drain, no goodbye): the others drop it
        nodes.get(2).destroyForcibly();
        for (int i = 0; i < 2; i++) {
            JsonNode c = awaitCluster(urls.get(i), ids -> ids.size() == 2);
            assertEquals(new TreeSet<>(List.of("node-0", "node-1")), ids(c), c.toString());
        }
        assertEquals(new TreeSet<>(List.of("stranger")), ids(get(strangerUrl + "/v1/cluster")), "the stranger never joined");
        // a node still serves on its own
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(urls.get(0) + "/v1/completions"))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"demo\",\"prompt\":\"Hi\",\"max_tokens\":4,\"temperature\":0}")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
    }

    /** A greedy completion's text (whole, or the streamed deltas joined) with its finish reason. */
    private String completion(String base, boolean stream) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .header("Content-Type", "application/json").timeout(Duration.ofSeconds(60))
            .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"demo\",\"prompt\":\"The cluster\",\"max_tokens\":12,"
                + "\"temperature\":0.8,\"seed\":7,\"n\":2,\"stream\":" + stream + "}")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        if (!stream) {
            JsonNode b = JSON.readTree(r.body());
            StringBuilder out = new StringBuilder();
            b.get("choices").forEach(c -> out.append(c.get("index").asInt()).append(':').append(c.get("text").asText())
                .append('/').append(c.get("finish_reason").asText()).append('\n'));
            return out.toString();
        }
        String[] text = {"", ""};
        String[] finish = {"", ""};
        for (String line : r.body().split("\n")) {
            if (line.startsWith("data: {")) {
                JsonNode c = JSON.readTree(line.substring(6)).get("choices").get(0);
                int i = c.get("index").asInt();
                text[i] += c.get("text").asText();
                if (!c.get("finish_reason").isNull()) {
                    finish[i] = c.get("finish_reason").asText();
                }
            }
        }
        assertTrue(r.body().endsWith("data: [DONE]\n\n"), r.body());
        return "0:" + text[0] + "/" + finish[0] + "\n1:" + text[1] + "/" + finish[1] + "\n";
    }

    private JsonNode awaitCluster(String url, Predicate<TreeSet<String>> done) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(40);
        JsonNode last = null;
        while (System.nanoTime() < deadline) {
            last = get(url + "/v1/cluster");
            if (done.test(ids(last))) {
                return last;
            }
            Thread.sleep(100);
        }
        fail("the cluster view of " + url + " did not settle: " + last);
        return null;
    }

    private static TreeSet<String> ids(JsonNode cluster) {
        TreeSet<String> ids = new TreeSet<>();
        cluster.get("members").forEach(m -> ids.add(m.get("id").asText()));
        return ids;
    }

    private JsonNode get(String url) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), url + ": " + r.body());
        return JSON.readTree(r.body());
    }

    private static int[] freePorts(int n) throws IOException {
        int[] ports = new int[n];
        List<ServerSocket> held = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                ServerSocket s = new ServerSocket(0);
                held.add(s);
                ports[i] = s.getLocalPort();
            }
        } finally {
            for (ServerSocket s : held) {
                s.close();
            }
        }
        return ports;
    }

    private Process start(Path model, String node, String members, int clusterPort, Path secret, String placement) throws IOException {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"), "--add-modules", "jdk.incubator.vector"));
        if (Runtime.version().feature() >= 22) {
            cmd.add("--enable-native-access=ALL-UNNAMED");
        }
        cmd.addAll(List.of("-Xmx384m", "-Dlora.relaunched=true", "-DOPT_OUT_TRACKING=true", Main.class.getName(), "serve",
            "--host", "127.0.0.1", "--port", "0", "--data-dir", dir.resolve("data-" + node).toString(), "--model", model.toString(),
            "--model-id", "demo", "--backend", "cpu", "--cluster-name", "t14", "--cluster-members", members,
            "--cluster-port", String.valueOf(clusterPort), "--cluster-secret-file", secret.toString(), "--node-id", node));
        if (placement != null) {
            cmd.addAll(List.of("--placement", placement));
        }
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(dir.resolve(node + ".log").toFile());
        pb.environment().put("OPT_OUT_TRACKING", "true");
        pb.environment().put("LORA_GATEWAY_CACHE", dir.resolve("cache").toString());
        Process p = pb.start();
        processes.add(p);
        return p;
    }
}
