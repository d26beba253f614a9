package dev.loragateway.gateway.cli;

import dev.loragateway.batcher.Engine;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code serve --record-steps FILE}: every engine step as one CSV line, flushed at once (a node
 * stopped or killed keeps what it recorded), for {@code bench profile --from-steps}. A profile fitted
 * to these is the node as it serves: HTTP, streaming, tokenizing and anything else sharing its cores
 * slow its steps, which a profile of the engine alone does not see.
 *
 * <pre>
 *   load,decode_rows,prompt_tokens,adapters,attended,ms
 *   serve,7,48,3,1904,61.2170
 * </pre>
 */
final class StepRecorder {
    static final String HEADER = "load,decode_rows,prompt_tokens,adapters,attended,ms";
    private static final Logger LOG = LoggerFactory.getLogger(StepRecorder.class);

    private StepRecorder() {
    }

    /** Starts recording {@code engine}'s steps into {@code file} (created or truncated now, so a bad path fails at start). */
    static void attach(Engine engine, Path file) throws IOException {
        BufferedWriter w = Files.newBufferedWriter(file, StandardCharsets.UTF_8);
        w.write(HEADER);
        w.newLine();
        w.flush();
        boolean[] failed = {false};
        engine.onStep((shape, nanos) -> { // the engine thread only
            if (failed[0]) {
                return;
            }
            try {
                w.write(String.format(Locale.ROOT, "serve,%d,%d,%d,%d,%.4f%n", shape.decodeRows(), shape.promptTokens(), shape.adapters(),
                    shape.attended(), nanos / 1e6));
                w.flush();
            } catch (IOException e) {
                failed[0] = true; // a full disk must not stop serving
                LOG.warn("--record-steps {}: stopped recording: {}", file, new UncheckedIOException(e).getMessage());
            }
        });
    }
}
