package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.loragateway.kernels.cuda.CudaDevice;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The quick GPU bench end to end on a device: every table printed, every time positive, and the
 * three LoRA paths agreeing. Skips without a usable device; run with {@code kernels/gpu-check.sh run}.
 */
class GpuBenchGpuTest {
    @ParameterizedTest
    @EnumSource(GpuBenchConfig.Launch.class)
    void theQuickBenchPrintsEveryTableWithAgreeingPaths(GpuBenchConfig.Launch launch) {
        CudaDevice.Probe probe = CudaDevice.probe();
        assumeTrue(probe.usable(), () -> "no usable CUDA device: " + probe.reason());
        GpuBenchConfig q = GpuBenchConfig.quick();
        GpuBenchConfig c = new GpuBenchConfig(Set.of(GpuBenchConfig.Section.values()), launch, q.hidden(), q.batch(),
            q.adapterCounts(), q.ranks(), List.of(ModelShape.TINY, ModelShape.parse("256:512:1:4:4:64:100")),
            q.decodeBatches(), q.manyAdapters(), q.decodeRank(), q.decodeContext(), q.decodeSteps(), 1, 2);
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        assertEquals(0, GpuBench.run(c, probe, Optional.empty(), new PrintWriter(out), new PrintWriter(err)), err.toString());
        String s = out.toString();
        System.out.println(s);
        List<String[]> sgmv = rows(s, "## SGMV");
        assertEquals(q.adapterCounts().size() * q.ranks().size(), sgmv.size(), s);
        for (String[] r : sgmv) {
            for (int col = 2; col <= 4; col++) {
                assertTrue(Double.parseDouble(r[col]) > 0, "µs in column " + col + ": " + String.join("|", r));
            }
            assertTrue(Double.parseDouble(r[7]) < 1e-3, "the three paths disagree: " + String.join("|", r));
        }
        List<String[]> bw = rows(s, "## Memory bandwidth");
        assertEquals(2, bw.size(), s);
        for (String[] r : bw) {
            // time and copy bandwidth (the gemv GB/s column may print 0 on the CPU emulator, which is slow)
            assertTrue(Double.parseDouble(r[3]) > 0 && Double.parseDouble(r[5]) > 0, String.join("|", r));
        }
        assertTrue(s.contains(DecodeSection.NEEDS_FORWARD_PASS), s);
    }

    /** The data rows (cells trimmed) of the table after the heading that starts with {@code heading}. */
    static List<String[]> rows(String out, String heading) {
        List<String> lines = out.lines().toList();
        int i = 0;
        while (!lines.get(i).startsWith(heading)) {
            i++;
        }
        while (!lines.get(i).startsWith("|")) {
            i++;
        }
        i += 2; // header and rule
        List<String[]> rows = new java.util.ArrayList<>();
        for (; i < lines.size() && lines.get(i).startsWith("|"); i++) {
            String[] cells = lines.get(i).substring(1).split("\\|");
            for (int c = 0; c < cells.length; c++) {
                cells[c] = cells[c].trim();
            }
            rows.add(cells);
        }
        return rows;
    }
}
