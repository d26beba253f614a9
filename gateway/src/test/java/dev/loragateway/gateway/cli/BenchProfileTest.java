package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.scheduler.sim.Profile;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
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
 * {@code bench profile} on the demo model and its adapters, for a couple of seconds: the profile
 * it writes reads back with positive step costs and the engine's capacities, and {@code simulate}
 * runs on it, {@code --kv-cache-mb} included; bad options exit 2 naming them.
 */
class BenchProfileTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path profile;
    static String printed;

    final StringWriter err = new StringWriter();

    @BeforeAll
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    static void profileTheDemoModel() throws Exception {
        model = tmp.resolve("demo");
        DemoModel.write(model, DemoModel.Options.tiny());
        profile = tmp.resolve("demo-cpu.json");
        StringWriter err = new StringWriter();
        int rc = run(err, "bench", "profile", "--model", model.toString(), "--out", profile.toString(), "--seconds", "1.5",
            "--threads", "1", "--max-batch", "8", "--kv-cache-mb", "4", "--steps-out", tmp.resolve("steps.csv").toString());
        assertEquals(0, rc, err + "\n" + printed);
    }

    static int run(StringWriter err, String... args) {
        PrintStream saved = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            return new CommandLine(new Main()).setOut(new PrintWriter(new StringWriter())).setErr(new PrintWriter(err)).execute(args);
        } finally {
            System.setOut(saved);
            printed = captured.toString(StandardCharsets.UTF_8);
        }
    }

    @Test
    void theProfileReadsBackWithPositiveCostsAndServesCapacities() throws Exception {
        Profile p = Profile.load(profile.toString());
        assertEquals("demo-cpu", p.name());
        assertTrue(p.source().startsWith("measured by bench profile on ") && p.source().contains("cores"), p.source());
        // a step of the demo model is ~0.1 ms, nearly all of it rows: over a 1.5 s run the fixed cost can fit to 0 (pinned there)
        assertTrue(p.baseMs() >= 0 && p.decodeRowMs() > 0 && p.promptTokenMs() > 0, p.toString());
        assertTrue(p.hostLoadMs() > 0 && p.diskLoadMs() > 0, "four demo adapters were loaded: " + p);
        assertEquals(8, p.node().maxBatch());
        assertEquals(512, p.node().maxStepTokens());
        assertEquals(64, p.node().adapterSlots());
        // --kv-cache-mb 4 of blocks of 16 positions × 2 layers × (k, v) × 32 floats: 8192 bytes each, as serve sizes the pool
        assertEquals(8192, p.kvBlockBytes());
        assertEquals(4 * 1024 * 1024 / 8192, p.node().kvBlocks());
        String csv = Files.readString(tmp.resolve("steps.csv"));
        assertTrue(csv.startsWith("load,decode_rows,prompt_tokens,adapters,attended,ms,predicted_ms\n") && csv.contains("\ndecode,")
            && csv.contains("\nprompt,"), csv.substring(0, Math.min(csv.length(), 400)));
    }

    @Test
    void simulateRunsOnTheMeasuredProfileAndSizesKvByMegabytes() {
        assertEquals(0, run(err, "simulate", "--nodes", "1", "--requests", "50", "--rate", "20", "--policies", "consolidate",
            "--profile", profile.toString(), "--kv-cache-mb", "2"), err.toString());
        assertTrue(printed.contains("profile demo-cpu: measured by bench profile on "), printed);
        assertTrue(printed.contains("256 KV blocks of 16"), printed); // 2 MB / 8192 bytes
        assertTrue(printed.contains("| consolidate | 1 | 50 |"), printed);
    }

    @Test
    void badOptionsExit2NamingThem() {
        assertEquals(2, run(err, "bench", "profile", "--out", tmp.resolve("x.json").toString(), "--max-batch", "0"));
        assertTrue(err.toString().contains("--max-batch must be at least 1, got 0"), err.toString());
        assertEquals(2, run(err, "bench", "profile", "--out", tmp.resolve("no/such/x.json").toString(), "--model", model.toString()));
        assertTrue(err.toString().contains("--out " + tmp.resolve("no/such/x.json") + ": the directory"), err.toString());
        assertEquals(2, run(err, "bench", "profile", "--out", tmp.resolve("x.json").toString(), "--seconds", "0"));
        assertTrue(err.toString().contains("--seconds must be in (0, 3600], got 0.0"), err.toString());
        assertEquals(2, run(err, "simulate", "--nodes", "1", "--requests", "5", "--kv-cache-mb", "64"));
        assertTrue(err.toString().contains("--kv-cache-mb 64: the profile punica-a100-7b does not record kv_block_bytes"), err.toString());
        assertEquals(2, run(err, "simulate", "--nodes", "1", "--requests", "5", "--profile", profile.toString(), "--kv-cache-mb", "2",
            "--kv-blocks", "9"));
        assertTrue(err.toString().contains("--kv-cache-mb and --kv-blocks both size the KV pool"), err.toString());
    }

    @Test
    void fromStepsFitsTheRecordedStepsAndRefusesBadFiles() throws Exception {
        // steps of a known model (3 ms + 2/row + 0.5/prompt token + 1/adapter + 0.001/position), ±2 % noise
        StringBuilder csv = new StringBuilder(StepRecorder.HEADER + "\n");
        java.util.SplittableRandom r = new java.util.SplittableRandom(3);
        for (int i = 0; i < 400; i++) {
            int rows = 1 + r.nextInt(31);
            int prompt = r.nextInt(4) == 0 ? 1 + r.nextInt(500) : 0;
            int adapters = r.nextInt(9);
            long attended = (long) rows * (20 + r.nextInt(400)) + (long) prompt * (prompt + 1) / 2;
            double ms = (3 + 2 * rows + 0.5 * prompt + adapters + 0.001 * attended) * (0.98 + 0.04 * r.nextDouble());
            csv.append(String.format(java.util.Locale.ROOT, "serve,%d,%d,%d,%d,%.4f%n", rows, prompt, adapters, attended, ms));
        }
        csv.append("serve,3,0,1"); // a node killed mid-line
        Path steps = tmp.resolve("served.csv");
        Files.writeString(steps, csv);
        Path out = tmp.resolve("served.json");
        assertEquals(0, run(err, "bench", "profile", "--model", model.toString(), "--out", out.toString(), "--from-steps", steps.toString(),
            "--threads", "1", "--max-batch", "8"), err + "\n" + printed);
        assertTrue(printed.contains("steps from [" + steps + "]: 400"), printed);
        Profile p = Profile.load(out.toString());
        assertTrue(p.source().startsWith("fitted by bench profile to 400 steps a serving node recorded"), p.source());
        assertEquals(2, p.decodeRowMs(), 0.1, p.toString());
        assertEquals(0.5, p.promptTokenMs(), 0.05, p.toString());
        assertEquals(1, p.adapterMs(), 0.15, p.toString());
        assertEquals(8, p.node().maxBatch(), "the node block is still this machine's, for the given options");
        Files.writeString(tmp.resolve("bad.csv"), "a,b\n1,2\n");
        assertEquals(2, run(err, "bench", "profile", "--out", out.toString(), "--from-steps", tmp.resolve("bad.csv").toString()));
        assertTrue(err.toString().contains("not a steps file"), err.toString());
    }
}
