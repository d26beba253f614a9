package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterConfig;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code demo-model --extra-adapters}: more random adapters for load tests; bad counts exit 2 naming the option. */
class DemoModelCommandTest {
    @TempDir
    Path tmp;

    final StringWriter err = new StringWriter();

    int run(String... args) {
        return new CommandLine(new Main()).setOut(new PrintWriter(new StringWriter())).setErr(new PrintWriter(err)).execute(args);
    }

    @Test
    void extraAdaptersAreWrittenWithTheirRankAndDistinctWeights() throws Exception {
        Path out = tmp.resolve("m");
        assertEquals(0, run("demo-model", "--out", out.toString(), "--extra-adapters", "3", "--extra-rank", "4"), err.toString());
        for (int i = 0; i < 3; i++) {
            Path d = out.resolve("adapters/extra-" + i);
            assertEquals(4, AdapterConfig.parse(Files.readAllBytes(d.resolve("adapter_config.json"))).r());
        }
        assertTrue(Files.isDirectory(out.resolve("adapters/demo-r8")), "the demo adapters are still there");
        assertFalse(Arrays.equals(Files.readAllBytes(out.resolve("adapters/extra-0/adapter_model.safetensors")),
            Files.readAllBytes(out.resolve("adapters/extra-1/adapter_model.safetensors"))));
    }

    @Test
    void badCountsNameTheOption() {
        assertEquals(2, run("demo-model", "--out", tmp.resolve("x").toString(), "--extra-adapters", "-1"));
        assertTrue(err.toString().contains("--extra-adapters must be 0 to 100000, got -1"), err.toString());
        assertEquals(2, run("demo-model", "--out", tmp.resolve("y").toString(), "--extra-adapters", "1", "--extra-rank", "0"));
        assertTrue(err.toString().contains("--extra-rank must be 1 to 64, got 0"), err.toString());
    }
}
