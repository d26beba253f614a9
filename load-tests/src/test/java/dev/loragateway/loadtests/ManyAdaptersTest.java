package dev.loragateway.loadtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The many-adapters run's arithmetic and its option checks (the run itself needs minutes: README). */
class ManyAdaptersTest {
    private static StepResult step(double reqPerS, double tokPerS, double ttft) {
        return new StepResult(Double.NaN, 100, 0, reqPerS, tokPerS, ttft / 2, ttft, 0.02, ttft + 1, ttft, 0.02, 20, 0, 0, null);
    }

    @Test
    void summaryIsTheRatioOfRoundMeans() {
        List<ManyAdapters.Run> runs = List.of(
            new ManyAdapters.Run("hot", 1, step(10, 200, 0.1), 0, 0),
            new ManyAdapters.Run("many", 1, step(9, 170, 0.3), 4, 6),
            new ManyAdapters.Run("hot", 2, step(12, 240, 0.2), 0, 0),
            new ManyAdapters.Run("many", 2, step(11, 214, 0.5), 2, 4));
        String s = ManyAdapters.summary(runs);
        assertTrue(s.startsWith("many / hot throughput: 0.87 (output tokens/s 192.0 / 220.0"), s);
        assertTrue(s.contains("p99 TTFT 0.400 s many, 0.150 s hot") && s.contains("device 5.00, host 3.00"), s);
    }

    @Test
    void badOptionsExit2NamingThem() {
        StringWriter err = new StringWriter();
        int code = new CommandLine(new ManyAdapters()).setErr(new PrintWriter(err)).execute("--adapters", "250", "--tenants", "100");
        assertEquals(2, code);
        assertTrue(err.toString().contains("--adapters must be a positive multiple of --tenants, got 250 and 100"), err.toString());
        err.getBuffer().setLength(0);
        assertEquals(2, new CommandLine(new ManyAdapters()).setErr(new PrintWriter(err)).execute("--hot", "0"));
        assertTrue(err.toString().contains("--hot must be 1 to --tenants (100), got 0"), err.toString());
    }
}
