package dev.loragateway.loadtests;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A {@code serve} process of the built jar on 127.0.0.1, for the load tests that start their own
 * gateway: {@code java -jar lora-gateway.jar serve --host 127.0.0.1 --port 0 ...} with the same Java
 * as this JVM, ready when it prints the contract's line ({@code lora-gateway listening on URL ...}).
 * {@link #close} sends SIGTERM (the server drains and exits 0), then kills it after 15 s.
 *
 * <p>The same ready line is read by the gateway's {@code LocalCluster}; this module talks to the
 * gateway over HTTP only and does not put its shaded jar (Vert.x, Netty) beside Gatling's Netty.
 */
public final class GatewayProcess implements AutoCloseable {
    private static final Pattern LISTENING = Pattern.compile("lora-gateway listening on (http://\\S+) ");

    private final Process process;
    private final URI url;
    private final Path log;

    private GatewayProcess(Process process, URI url, Path log) {
        this.process = process;
        this.url = url;
        this.log = log;
    }

    /** The java of this JVM (the Java 25 pass of the tests then serves on 25 too). */
    public static String java() {
        return ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    }

    /** Writes the demo model with its adapters ({@code DIR/adapters/NAME}) into {@code dir}. */
    public static void demoModel(Path jar, Path dir) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(java(), "-jar", jar.toString(), "demo-model", "--out", dir.toString())
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
            p.destroyForcibly();
            throw new IllegalStateException("demo-model --out " + dir + " failed (exit " + (p.isAlive() ? "none: timed out" : p.exitValue()) + ")");
        }
    }

    /**
     * Starts {@code serve} and waits up to {@code startSeconds} for its ready line.
     *
     * @param serveOptions further options ({@code --model}, {@code --lora-modules}, {@code --data-dir}...)
     * @param log          the server's stderr
     */
    public static GatewayProcess start(Path jar, List<String> serveOptions, Path log, int startSeconds) throws Exception {
        if (!Files.isRegularFile(jar))
            throw new IllegalStateException(jar + " is missing: build it first (mvn -q package -DskipTests)");
        List<String> cmd = new ArrayList<>(List.of(java(), "-jar", jar.toString(), "serve", "--host", "127.0.0.1", "--port", "0"));
        cmd.addAll(serveOptions);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
        pb.environment().put("OPT_OUT_TRACKING", "true");
        Process p = pb.start();
        CompletableFuture<String> ready = new CompletableFuture<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    Matcher m = LISTENING.matcher(line);
                    if (m.find()) ready.complete(m.group(1));
                }
                ready.completeExceptionally(new IllegalStateException("serve's stdout closed before its ready line"));
            } catch (IOException e) {
                ready.completeExceptionally(e);
            }
        }, "serve-stdout");
        reader.setDaemon(true);
        reader.start();
        try {
            return new GatewayProcess(p, URI.create(ready.get(startSeconds, TimeUnit.SECONDS)), log);
        } catch (Exception e) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            throw new IllegalStateException("serve did not get ready in " + startSeconds + " s; its log ends:\n" + tail(log), e);
        }
    }

    public URI url() {
        return url;
    }

    public Path log() {
        return log;
    }

    static String tail(Path log) {
        try {
            String s = Files.readString(log);
            return s.length() > 3000 ? s.substring(s.length() - 3000) : s;
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    @Override
    public void close() throws InterruptedException {
        process.destroy();
        if (!process.waitFor(15, TimeUnit.SECONDS)) {
            // java -jar relaunches itself: the serving JVM is a child of the one started here
            process.descendants().forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }
}
