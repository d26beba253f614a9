package dev.loragateway.gateway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code n} {@code serve} processes on 127.0.0.1 forming one cluster, for {@code bench cluster}:
 * child JVMs of this JVM's own classpath (the jar, under {@code java -jar}), a fresh cluster name and
 * secret per set (so two sets, or another bench on the machine, never merge), free ports, node ids
 * {@code node-0 .. node-(n-1)}. {@link #start} returns once every node is listening and sees all
 * {@code n} members in {@code GET /v1/cluster}; {@link #close} stops them (SIGTERM, then kill).
 *
 * <pre>
 *   java [--add-modules=jdk.incubator.vector] -XmxHm -Dlora.relaunched=true -cp CLASSPATH Main serve
 *        --port 0 --cluster-name bench-3f9c… --cluster-members 127.0.0.1:p0,127.0.0.1:p1,…
 *        --cluster-port pI --cluster-secret-file DIR/secret --node-id node-I --placement P ...
 * </pre>
 */
public final class LocalCluster implements AutoCloseable {
    private static final Pattern LISTENING = Pattern.compile("lora-gateway listening on (http://\\S+) ");
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One started node: its id, API base URL, process and stderr log. */
    record Node(String id, String url, Process process, Path log) {
    }

    private final List<Node> nodes = new ArrayList<>();
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    private LocalCluster() {
    }

    /**
     * Starts the set and waits (up to {@code startSeconds} per stage) until it is one cluster.
     *
     * @param dir   a fresh directory for the secret, the nodes' data directories and their logs
     * @param serve the other {@code serve} options of every node (model, placement, batch, adapters...)
     * @throws IllegalStateException when a node exits or does not get ready in time, with its log's tail
     */
    static LocalCluster start(Path dir, int n, int heapMb, List<String> serve, int startSeconds) throws Exception {
        Files.createDirectories(dir);
        byte[] random = new byte[16];
        new SecureRandom().nextBytes(random);
        String hex = HexFormat.of().formatHex(random);
        Path secret = Files.writeString(dir.resolve("secret"), hex + "\n");
        String name = "bench-" + hex.substring(0, 12);
        int[] ports = freePorts(n);
        List<String> members = new ArrayList<>();
        for (int p : ports) {
            members.add("127.0.0.1:" + p);
        }
        LocalCluster c = new LocalCluster();
        try {
            List<CompletableFuture<String>> ready = new ArrayList<>();
            List<Process> started = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                String id = "node-" + i;
                Path log = dir.resolve(id + ".log");
                List<String> cmd = new ArrayList<>(javaCommand(heapMb));
                cmd.addAll(List.of("serve", "--host", "127.0.0.1", "--port", "0", "--backend", "cpu",
                    "--data-dir", dir.resolve("data-" + id).toString(), "--cluster-name", name,
                    "--cluster-members", String.join(",", members), "--cluster-port", String.valueOf(ports[i]),
                    "--cluster-secret-file", secret.toString(), "--node-id", id));
                cmd.addAll(serve);
                ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
                pb.environment().put("OPT_OUT_TRACKING", "true");
                Process p = pb.start();
                started.add(p);
                c.nodes.add(new Node(id, null, p, log));
                ready.add(readyLine(p));
            }
            for (int i = 0; i < n; i++) {
                Node node = c.nodes.get(i);
                String url;
                try {
                    url = ready.get(i).get(startSeconds, TimeUnit.SECONDS);
                } catch (Exception e) {
                    throw new IllegalStateException(node.id() + " did not get ready in " + startSeconds + " s (alive "
                        + started.get(i).isAlive() + "); its log ends:\n" + tail(node.log()), e);
                }
                c.nodes.set(i, new Node(node.id(), url, node.process(), node.log()));
            }
            for (Node node : c.nodes) {
                c.awaitMembers(node, n, startSeconds);
            }
            return c;
        } catch (Exception | Error e) {
            c.close();
            throw e;
        }
    }

    /** The nodes, {@code node-0} first. */
    List<Node> nodes() {
        return nodes;
    }

    /** The java command that runs {@link Main} in a child JVM like this one (no relaunch there). */
    private static List<String> javaCommand(int heapMb) {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.addAll(Main.jvmFlags(Runtime.version().feature()));
        cmd.addAll(List.of("-Xmx" + heapMb + "m", "-Dlora.relaunched=true", "-DOPT_OUT_TRACKING=true",
            "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        return cmd;
    }

    /** Completes with the base URL of {@code p}'s ready line ({@code serve}'s); the rest of its stdout is drained. */
    public static CompletableFuture<String> readyLine(Process p) {
        CompletableFuture<String> url = new CompletableFuture<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    Matcher m = LISTENING.matcher(line);
                    if (m.find()) {
                        url.complete(m.group(1));
                    }
                }
                url.completeExceptionally(new IllegalStateException("stdout closed before the ready line"));
            } catch (IOException e) {
                url.completeExceptionally(e);
            }
        }, "serve-stdout");
        reader.setDaemon(true);
        reader.start();
        return url;
    }

    private void awaitMembers(Node node, int n, int seconds) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        String last = "";
        while (System.nanoTime() < deadline) {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(node.url() + "/v1/cluster"))
                .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
            last = r.body();
            if (r.statusCode() == 200) {
                JsonNode members = JSON.readTree(last).path("members");
                if (members.size() == n) {
                    return;
                }
            }
            Thread.sleep(100);
        }
        throw new IllegalStateException(node.id() + " did not see " + n + " members in " + seconds + " s: " + last);
    }

    /** {@code n} distinct free ports of 127.0.0.1 ({@link dev.loragateway.scheduler.cluster.LocalPorts#free}). */
    public static int[] freePorts(int n) throws IOException {
        return dev.loragateway.scheduler.cluster.LocalPorts.free(n);
    }

    /** The last 3000 characters of a log. */
    static String tail(Path log) {
        try {
            String s = Files.readString(log);
            return s.length() > 3000 ? s.substring(s.length() - 3000) : s;
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    /** SIGTERM to every node (an idle node drains at once), then SIGKILL to any still running after 10 s. */
    @Override
    public void close() {
        nodes.forEach(n -> n.process().destroy());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        for (Node n : nodes) {
            try {
                if (!n.process().waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                    n.process().destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                nodes.forEach(x -> x.process().destroyForcibly());
                return;
            }
        }
    }
}
