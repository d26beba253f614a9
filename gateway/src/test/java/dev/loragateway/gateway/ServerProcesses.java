package dev.loragateway.gateway;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** For tests that run {@code serve} in a child JVM: its ready line, and the tail of its stderr. */
public final class ServerProcesses {
    private static final Pattern LISTENING = Pattern.compile("lora-gateway listening on (http://\\S+) ");

    private ServerProcesses() {
    }

    /** Reads the child's stdout until the ready line and returns its URL; the rest of stdout is drained in the background. */
    public static String awaitListening(Process server, Path stderr) throws Exception {
        CompletableFuture<String> url = new CompletableFuture<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8))) {
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
        }, "server-stdout");
        reader.setDaemon(true);
        reader.start();
        try {
            return url.get(60, TimeUnit.SECONDS);
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
