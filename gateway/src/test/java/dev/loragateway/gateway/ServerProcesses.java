package dev.loragateway.gateway;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/** For tests that run {@code serve} in a child JVM: its ready line, and the tail of its stderr. */
public final class ServerProcesses {
    private ServerProcesses() {
    }

    /** Reads the child's stdout until the ready line and returns its URL; the rest of stdout is drained in the background. */
    public static String awaitListening(Process server, Path stderr) throws Exception {
        CompletableFuture<String> url = dev.loragateway.gateway.cli.LocalCluster.readyLine(server);
        try {
            return url.get(120, TimeUnit.SECONDS); // several JVMs starting at once on 2 busy cores can take a minute
        } catch (Exception e) {
            fail("the server did not get ready (" + e + "); alive " + server.isAlive() + "; stderr:\n" + tail(stderr));
            return null;
        }
    }

    /** The last 4000 characters of a log. */
    public static String tail(Path log) {
        try {
            String s = Files.readString(log);
            return s.length() > 4000 ? s.substring(s.length() - 4000) : s;
        } catch (IOException e) {
            return "(no stderr: " + e + ")";
        }
    }
}
