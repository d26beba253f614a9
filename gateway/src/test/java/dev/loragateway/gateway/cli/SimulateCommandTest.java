package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.workload.Traces;
import dev.loragateway.scheduler.workload.Workload;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code simulate}: a trace file in, the report out; bad options exit 2 naming the option and value. No server. */
class SimulateCommandTest {
    @TempDir
    Path tmp;

    final StringWriter err = new StringWriter();
    String stdout = "";

    int simulate(String... args) {
        List<String> all = new ArrayList<>(List.of("simulate"));
        all.addAll(List.of(args));
        PrintStream saved = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            return new CommandLine(new Main()).setOut(new PrintWriter(new StringWriter())).setErr(new PrintWriter(err))
                .execute(all.toArray(String[]::new));
        } finally {
            System.setOut(saved);
            stdout = captured.toString(StandardCharsets.UTF_8);
        }
    }

    @Test
    void aTraceFileRunsEveryPolicyAndWritesTheReport() throws Exception {
        Path trace = tmp.resolve("trace.jsonl");
        try (Writer w = Files.newBufferedWriter(trace)) {
            Traces.write(Workload.of(Map.of("rate", "50", "seed", "5")).trace(300), w);
        }
        Path out = tmp.resolve("report");
        assertEquals(0, simulate("--nodes", "4", "--requests", "200", "--trace", trace.toString(), "--out", out.toString(),
            "--slo-ttft-p99", "5"), err.toString());
        assertTrue(stdout.contains("trace " + trace + ": 200 requests (the first 200 of 300)"), stdout);
        for (String policy : List.of("consolidate", "least-loaded", "round-robin", "adapter-affinity")) {
            assertTrue(stdout.contains("| " + policy + " | 4 | 200 |"), stdout);
        }
        String html = Files.readString(out.resolve("report.html"));
        assertTrue(html.contains("<svg") && html.contains("<polyline") && html.contains("nodes busy"), html);
        assertTrue(Files.readString(out.resolve("report.md")).contains("busy.svg"));
        assertTrue(Files.readString(out.resolve("results.json")).contains("\"nodes_busy_over_time\""));
    }

    @Test
    void badOptionsExit2NamingTheProblem() {
        assertEquals(2, simulate("--nodes", "4", "--requests", "10", "--policies", "consolidate,fastest"));
        assertTrue(err.toString().contains("unknown policy 'fastest'"), err.toString());
        assertEquals(2, simulate("--nodes", "0", "--requests", "10"));
        assertTrue(err.toString().contains("--nodes must be >= 1, got 0"), err.toString());
        Path missing = tmp.resolve("nope.jsonl");
        assertEquals(2, simulate("--nodes", "2", "--requests", "10", "--trace", missing.toString()));
        assertTrue(err.toString().contains("--trace " + missing + ": no such file"), err.toString());
        assertEquals(2, simulate("--nodes", "2", "--requests", "10", "--popularity", "zipf:-1"));
        assertTrue(err.toString().contains("zipf"), err.toString());
        assertEquals(2, simulate("--nodes", "2", "--requests", "10", "--profile", tmp.resolve("p.json").toString()));
        assertTrue(err.toString().contains("does not exist"), err.toString());
    }
}
