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
    private ClusterNodes cluster;

    @AfterEach
    void stop() {
        if (cluster != null) {
            cluster.close();
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void threeNodesFormOneClusterAKilledNodeLeavesAndAnotherSecretNeverJoins() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path secret = Files.writeString(dir.resolve("secret"), "s3cret-of-the-cluster\n");
        Path other = Files.writeString(dir.resolve("other-secret"), "another-secret\n");
        int[] ports = ClusterNodes.freePorts(4);
        String members = ClusterNodes.members(ports);
        cluster = new ClusterNodes(dir, "t14");
        List<Process> nodes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            nodes.add(i == 2 ? cluster.start(model, "node-" + i, members, ports[i], secret, "--placement", "round-robin")
                : cluster.start(model, "node-" + i, members, ports[i], secret));
        }
        Process stranger = cluster.start(model, "stranger", members, ports[3], other);
        List<String> urls = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            urls.add(cluster.awaitListening(nodes.get(i), "node-" + i));
        }
        String strangerUrl = cluster.awaitListening(stranger, "stranger");

        for (String url : urls) {
            JsonNode c = cluster.awaitCluster(url, ids -> ids.size() == 3);
            assertEquals(new TreeSet<>(List.of("node-0", "node-1", "node-2")), ClusterNodes.ids(c), c.toString());
            JsonNode m = c.get("members").get(0);
            assertEquals("cpu", m.get("backend").asText(), c.toString());
            assertTrue(m.get("total_kv_blocks").asInt() > 0 && m.get("max_batch").asInt() == 32, c.toString());
            assertTrue(m.get("idle").asBoolean(), c.toString());
        }
        assertEquals("consolidate", cluster.get(urls.get(0) + "/v1/cluster").get("placement").asText());
        assertEquals("round-robin", cluster.get(urls.get(2) + "/v1/cluster").get("placement").asText());
        String metrics = cluster.metrics(urls.get(0));
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
        String m2 = cluster.metrics(urls.get(2));
        java.util.regex.Matcher fw = java.util.regex.Pattern.compile("lora_gateway_cluster_requests_forwarded_total (\\d+)").matcher(m2);
        assertTrue(fw.find(), m2);
        assertTrue(Integer.parseInt(fw.group(1)) >= 8, "round-robin over 3 nodes forwards two thirds of 12 requests: " + fw.group(0));
        // the internal listener refuses a request without the secret
        String internal = cluster.get(urls.get(1) + "/v1/cluster").get("members").get(1).get("address").asText();
        assertTrue(internal.startsWith("http://127.0.0.1:"), internal);
        HttpResponse<String> refused = http.send(HttpRequest.newBuilder(URI.create(internal + "/internal/v1/generate"))
            .POST(HttpRequest.BodyPublishers.ofString("{}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(401, refused.statusCode(), refused.body());

        // another secret: a cluster of its own, seen by nobody else
        assertEquals(new TreeSet<>(List.of("stranger")), ClusterNodes.ids(cluster.get(strangerUrl + "/v1/cluster")));

        // SIGKILL (no drain, no goodbye): the others drop it
        nodes.get(2).destroyForcibly();
        for (int i = 0; i < 2; i++) {
            JsonNode c = cluster.awaitCluster(urls.get(i), ids -> ids.size() == 2);
            assertEquals(new TreeSet<>(List.of("node-0", "node-1")), ClusterNodes.ids(c), c.toString());
        }
        assertEquals(new TreeSet<>(List.of("stranger")), ClusterNodes.ids(cluster.get(strangerUrl + "/v1/cluster")), "the stranger never joined");
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

}
