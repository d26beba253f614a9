package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.bench.gpu.GpuBenchConfig.Launch;
import dev.loragateway.bench.gpu.GpuBenchConfig.Section;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class GpuBenchOptionsTest {
    static GpuBenchConfig parse(String... args) {
        GpuBenchMain main = new GpuBenchMain();
        new CommandLine(main).parseArgs(args);
        return main.options.resolve();
    }

    @Test
    void noOptionsGiveTheIssuesMatrix() {
        GpuBenchConfig c = parse();
        assertEquals(GpuBenchConfig.full(), c);
        assertEquals(List.of(1, 2, 4, 8, 16, 32, 64), c.adapterCounts());
        assertEquals(List.of(8, 16, 32, 64), c.ranks());
        assertEquals(64, c.batch());
        assertEquals(4096, c.hidden());
        assertEquals(List.of(ModelShape.LLAMA_1B, ModelShape.LLAMA_7B), c.models());
        assertEquals(Set.of(Section.values()), c.sections());
        assertEquals(Launch.GRAPH, c.launch());
    }

    @Test
    void quickIsTinyAndExplicitOptionsStillWin() {
        assertEquals(GpuBenchConfig.quick(), parse("--gpu-quick"));
        GpuBenchConfig c = parse("--gpu-quick", "--gpu-ranks", "4,12", "--gpu-iterations=7", "--gpu-models", "tiny,1b");
        assertEquals(List.of(4, 12), c.ranks());
        assertEquals(7, c.iterations());
        assertEquals(List.of(ModelShape.TINY, ModelShape.LLAMA_1B), c.models());
        assertEquals(GpuBenchConfig.quick().hidden(), c.hidden());
        assertEquals(GpuBenchConfig.quick().adapterCounts(), c.adapterCounts());
    }

    @Test
    void sectionsAndLaunchModeAreChosenByName() {
        GpuBenchConfig c = parse("--gpu-only", "bandwidth,SGMV", "--gpu-launch", "stream");
        assertEquals(Set.of(Section.BANDWIDTH, Section.SGMV), c.sections());
        assertEquals(Launch.STREAM, c.launch());
        var e = assertThrows(IllegalArgumentException.class, () -> parse("--gpu-only", "sgmv,latency"));
        assertEquals("--gpu-only takes sgmv, bandwidth, decode; got [sgmv, latency]", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> parse("--gpu-launch", "graphs"));
        assertEquals("--gpu-launch must be graph or stream, got 'graphs'", e.getMessage());
    }

    @Test
    void boundsAreCheckedNamingBothNumbers() {
        var e = assertThrows(IllegalArgumentException.class, () -> parse("--gpu-adapters", "1,128"));
        assertEquals("distinct adapters 128 must be 1 to the batch, 64 (each adapter gets at least one row)", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> parse("--gpu-batch", "8", "--gpu-adapters", "16"));
        assertTrue(e.getMessage().startsWith("distinct adapters 16 must be 1 to the batch, 8"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> parse("--gpu-iterations", "0"));
        assertEquals("iterations must be at least 1, got 0", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> parse("--gpu-ranks", "16,-1"));
        assertEquals("rank must be at least 1, got -1", e.getMessage());
        // warm-up 0 is fine
        assertEquals(0, parse("--gpu-warmup", "0").warmup());
    }

    @Test
    void aSectionThatWouldPrintNothingIsRefusedOnlyWhenAskedFor() {
        GpuBenchConfig full = GpuBenchConfig.full();
        assertThrows(IllegalArgumentException.class, () -> new GpuBenchConfig(Set.of(Section.DECODE), Launch.GRAPH, 64, 8,
            List.of(1), List.of(8), List.of(ModelShape.TINY), List.of(), 4, 8, 16, 2, 1, 1));
        GpuBenchConfig sgmvOnly = new GpuBenchConfig(Set.of(Section.SGMV), Launch.GRAPH, 64, 8, List.of(1), List.of(8),
            List.of(), List.of(), 4, 8, 16, 2, 1, 1);
        assertEquals(Set.of(Section.SGMV), sgmvOnly.sections());
        assertEquals(64, full.batch());
    }
}
