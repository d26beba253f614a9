package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.gateway.ServerProcesses;
import dev.loragateway.gateway.cli.Main;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * For tests that run several {@code serve} processes as one cluster on 127.0.0.1: free ports, the
 * child command line, and waiting for the members' views. Every process started here is killed
 * by {@link #close}.
 */
public final class ClusterNodes implements AutoCloseable {
    static final ObjectMapper JSON = new ObjectMapper();

    private final Path dir;
    private final String clusterName;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<Process> processes = new ArrayList<>();

    /** @param dir where data directories ({@code data-NODE}) and logs ({@code NODE.log}) go */
    public ClusterNodes(Path dir, String clusterName) {
        this.dir = dir;
        this.clusterName = clusterName;
    }

    /** {@code n} distinct free ports of 127.0.0.1 ({@link dev.loragateway.gateway.cli.LocalCluster#freePorts}). */
    public static int[] freePorts(int n) throws IOException {
        return dev.loragateway.gateway.cli.LocalCluster.freePorts(n);
    }

    /** {@code 127.0.0.1:p0,127.0.0.1:p1,...}: the {@code --cluster-members} value. */
    public static String members(int... clusterPorts) {
        return String.join(",", Arrays.stream(clusterPorts).mapToObj(p -> "127.0.0.1:" + p).toList());
    }

    /**
     * Starts {@code serve} for node {@code node} in a child JVM (no relaunch: the child is the
     * serving JVM, so killing it kills the server), on a free HTTP port of 127.0.0.1, with its data
     * in {@code data-NODE} and its stderr in {@code NODE.log}.
     *
     * @param extra more {@code serve} arguments (e.g. {@code --placement round-robin}, {@code --api-keys-file F})
     */
    public Process start(Path model, String node, String members, int clusterPort, Path secret, String... extra) throws IOException {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"), "--add-modules", "jdk.incubator.vector"));
        if (Runtime.version().feature() >= 22) {
            cmd.add("--enable-native-access=ALL-UNNAMED");
        }
        cmd.addAll(List.of("-Xmx384m", "-Dlora.relaunched=true", "-DOPT_OUT_TRACKING=true", Main.class.getName(), "serve",
            "--host", "127.0.0.1", "--port", "0", "--data-dir", dir.resolve("data-" + node).toString(), "--model", model.toString(),
            "--model-id", "demo", "--backend", "cpu", "--cluster-name", clusterName, "--cluster-members", members,
            "--cluster-port", String.valueOf(clusterPort), "--cluster-secret-file", secret.toString(), "--node-id", node));
        cmd.addAll(List.of(extra));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log(node).toFile()));
        pb.environment().put("OPT_OUT_TRACKING", "true");
        pb.environment().put("LORA_GATEWAY_CACHE", dir.resolve("cache").toString());
        Process p = pb.start();
        processes.add(p);
        return p;
    }

    /** Node {@code node}'s stderr. */
    public Path log(String node) {
        return dir.resolve(node + ".log");
    }

    /** Waits for {@code p}'s ready line and returns its HTTP base URL. */
    public String awaitListening(Process p, String node) throws Exception {
        return ServerProcesses.awaitListening(p, log(node));
    }

    /** Polls {@code GET url/v1/cluster} (up to 40 s) until the member ids satisfy {@code done}; returns that view. */
    public JsonNode awaitCluster(String url, Predicate<TreeSet<String>> done) throws Exception {
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

    /** The member ids of a {@code /v1/cluster} answer. */
    public static TreeSet<String> ids(JsonNode cluster) {
        TreeSet<String> ids = new TreeSet<>();
        cluster.get("members").forEach(m -> ids.add(m.get("id").asText()));
        return ids;
    }

    /** {@code GET url}, which must answer 200 with JSON. */
    public JsonNode get(String url) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), url + ": " + r.body());
        return JSON.readTree(r.body());
    }

    /** {@code GET url/metrics} as text. */
    public String metrics(String url) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
            HttpResponse.BodyHandlers.ofString()).body();
    }

    /** Kills every process started here. */
    @Override
    public void close() {
        processes.forEach(Process::destroyForcibly);
        for (Process p : processes) {
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
