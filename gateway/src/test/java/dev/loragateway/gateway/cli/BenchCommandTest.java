package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.gateway.demo.DemoModel;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code bench decode | lora | serve | gpu | cluster}: each subcommand runs on a tiny model, refuses another
 * mode's option by name, and the earlier flag forms run the same subcommand.
 */
class BenchCommandTest {
    @TempDir
    static Path tmp;
    static String model;

    final StringWriter out = new StringWriter();
    final StringWriter err = new StringWriter();
    String stdout = ""; // the benches print their tables to System.out

    @BeforeAll
    static void tinyModel() throws IOException {
        Path dir = tmp.resolve("tiny");
        DemoModel.write(dir, DemoModel.Options.tiny());
        model = dir.toString();
    }

    int bench(String... args) {
        List<String> all = new ArrayList<>(List.of("bench"));
        all.addAll(List.of(args));
        PrintStream saved = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            return new CommandLine(new Main()).setOut(new PrintWriter(out)).setErr(new PrintWriter(err))
                .execute(all.toArray(String[]::new));
        } finally {
            System.setOut(saved);
            stdout = captured.toString(StandardCharsets.UTF_8);
        }
    }

    static final String[] DECODE = {"--runs", "1", "--tokens", "2", "--prompt-tokens", "2", "--copy-mb", "1", "--threads", "1"};
    static final String[] LORA = {"--adapters", "2", "--batch", "2", "--rank", "2", "--steps", "1", "--runs", "1", "--threads", "1"};
    static final String[] SERVE = {"--concurrency", "1,2", "--requests", "2", "--tokens", "2", "--prompt-tokens", "4", "--warmup", "0",
        "--think-ms", "0", "--threads", "1"};

    static String[] args(String first, String[] rest) {
        List<String> a = new ArrayList<>();
        if (first != null) {
            a.add(first);
        }
        a.add("--model");
        a.add(model);
        a.addAll(List.of(rest));
        return a.toArray(String[]::new);
    }

    /** {@code bench SUB --model tiny REST...} and the flag form {@code bench --model tiny REST...} both print {@code expected}. */
    void runsInBothForms(String sub, String[] rest, String... expected) {
        for (String first : new String[] {sub, null}) {
            assertEquals(0, bench(args(first, rest)), first + ": " + err);
            for (String e : expected) {
                assertTrue(stdout.contains(e), first + ": " + stdout);
            }
        }
    }

    @Test
    void decodeRunsAndSoDoesTheBareFlagForm() {
        runsInBothForms("decode", DECODE, "| decode, one sequence (median of 1 runs x 2 tokens) |", "| plain copy of 1 MB (read + write) |");
    }

    @Test
    void loraRunsAndSoDoesTheAdaptersFlagForm() {
        runsInBothForms("lora", LORA, "| (b) 2 adapters mixed in one batch (distinct) |");
    }

    @Test
    void serveRunsAndSoDoesTheConcurrencyFlagForm() {
        runsInBothForms("serve", SERVE, "knee:", "| 2 | 2 |");
    }

    /**
     * {@code bench cluster} on 2 serve processes, one policy: consolidate with 2 clients (never more
     * than a node's 4 sequences) keeps every request on node-0, and the overhead pairs reuse that set.
     */
    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void clusterRunsTwoNodesAndPrintsTheTableAndTheOverhead() {
        assertEquals(0, bench("cluster", "--model", model, "--nodes", "2", "--policies", "consolidate", "--clients", "2", "--requests", "6",
            "--tokens", "4", "--warmup", "1", "--overhead-pairs", "4"), err.toString() + stdout);
        String header = "| policy | requests | failed | output tokens/s | TTFT p50 ms | TTFT p99 ms | nodes busy | requests per node | forwarded |";
        assertTrue(stdout.contains(header + "\n|---|---|---|---|---|---|---|---|---|\n"), stdout);
        String row = stdout.lines().filter(l -> l.startsWith("| consolidate |")).findFirst().orElseThrow(() -> new AssertionError(stdout));
        String[] c = row.split("\\|");
        assertEquals("6", c[2].trim(), row);
        assertEquals("0", c[3].trim(), row);
        assertTrue(Double.parseDouble(c[4].trim()) > 0, "tokens/s: " + row);
        double p50 = Double.parseDouble(c[5].trim());
        assertTrue(p50 > 0 && p50 <= Double.parseDouble(c[6].trim()), "TTFT p50 <= p99: " + row);
        assertEquals("1 of 2", c[7].trim(), "consolidate at 2 clients fills one node: " + row);
        assertEquals("6 / 0", c[8].trim(), row);
        assertEquals("0", c[9].trim(), "nothing forwarded: " + row);
        String overhead = stdout.lines().filter(l -> l.startsWith("| overhead (via − direct, per pair) |")).findFirst()
            .orElseThrow(() -> new AssertionError(stdout));
        assertEquals(4, overhead.split("\\|").length, overhead);
        assertTrue(stdout.contains("| direct (node-0) |") && stdout.contains("| via node-1 (forwarded to node-0) |"), stdout);
        assertTrue(stdout.contains("checked: node-1 forwarded 4 of 4 via-node-1 requests; node-0 ran 8 of 8."), stdout);
    }

    @Test
    void clusterRefusesBadOptionsNamingThem() {
        assertEquals(2, bench("cluster", "--nodes", "1"));
        assertTrue(err.toString().startsWith("--nodes must be at least 2"), err.toString());
        err.getBuffer().setLength(0);
        assertEquals(2, bench("cluster", "--policies", "consolidate,fastest"));
        assertTrue(err.toString().startsWith("--policies: unknown placement 'fastest': use one of consolidate, least-loaded, round-robin, adapter-affinity"),
            err.toString());
        err.getBuffer().setLength(0);
        assertEquals(2, bench("cluster", "--model", tmp.resolve("missing").toString()));
        assertTrue(err.toString().startsWith("--model " + tmp.resolve("missing") + " is not a directory"), err.toString());
    }

    @Test
    void anotherModesOptionIsAUsageErrorNamingIt() {
        assertEquals(2, bench("decode", "--rank", "4"));
        assertTrue(err.toString().startsWith("Unknown options: '--rank', '4'"), err.toString());
    }

    @Test
    void eachSubcommandTakesOnlyItsOwnOptions() {
        // {refused option, the command line}
        String[][] refused = {{"--copy-mb", "lora", "--adapters", "2", "--copy-mb", "8"},
            {"--steps", "serve", "--concurrency", "1", "--steps", "2"}, {"--gpu-quick", "decode", "--gpu-quick"},
            {"--model", "gpu", "--model", "x"}, {"--gpu", "gpu", "--gpu"}};
        for (String[] r : refused) {
            String[] a = List.of(r).subList(1, r.length).toArray(String[]::new);
            err.getBuffer().setLength(0);
            assertEquals(2, bench(a), String.join(" ", a));
            assertTrue(err.toString().startsWith("Unknown option") && err.toString().lines().findFirst().orElseThrow().contains("'" + r[0] + "'"),
                String.join(" ", a) + ": " + err);
        }
    }

    @Test
    void theFlagFormHandsItsOptionsToTheSubcommandWhichChecksThem() {
        assertEquals(2, bench("--adapters", "2", "--copy-mb", "8"));
        assertTrue(err.toString().startsWith("Unknown options: '--copy-mb', '8'"), err.toString());
        assertTrue(err.toString().contains("Usage: lora-gateway bench lora"), err.toString());
    }

    @Test
    void optionsBeforeTheSubcommandAreRefusedNotIgnored() {
        assertEquals(2, bench("--model", "x", "lora", "--adapters", "2"));
        assertTrue(err.toString().startsWith("--model given before 'lora': options go after the subcommand"), err.toString());
    }

    @Test
    void loraNeedsAdapters() {
        assertEquals(2, bench("lora"));
        assertTrue(err.toString().startsWith("Missing required option: '--adapters=N'"), err.toString());
    }

    @Test
    void eachSubcommandsHelpListsOnlyItsOptions() {
        assertEquals(0, bench("decode", "--help"));
        assertTrue(out.toString().contains("--copy-mb"), out.toString());
        assertFalse(out.toString().contains("--rank") || out.toString().contains("--gpu"), out.toString());
        out.getBuffer().setLength(0);
        assertEquals(0, bench("gpu", "--help"));
        assertTrue(out.toString().contains("--gpu-quick"), out.toString());
        assertFalse(out.toString().contains("--model") || out.toString().contains("--threads"), out.toString());
        out.getBuffer().setLength(0);
        assertEquals(0, bench("--help"));
        for (String s : new String[] {"decode", "lora", "serve", "gpu", "cluster"}) {
            assertTrue(out.toString().contains("  " + s + " "), s + " in\n" + out);
        }
    }
}
