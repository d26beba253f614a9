package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.DeviceMemoryExhaustedException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The decode table over a made-up {@link GpuDecodeBench}: what it is asked, and what the table makes of the answers. */
class DecodeSectionTest {
    static final GpuBenchConfig CONFIG = new GpuBenchConfig(Set.of(GpuBenchConfig.Section.DECODE),
        GpuBenchConfig.Launch.GRAPH, 64, 8, List.of(1), List.of(8), List.of(ModelShape.TINY, ModelShape.LLAMA_7B),
        List.of(1, 8), 4, 16, 128, 10, 3, 1);

    /** Takes 1 ms per step for the base model, 2 ms with one adapter, 4 ms with several; 7b does not fit. */
    static final class Fake implements GpuDecodeBench {
        final List<String> calls = new ArrayList<>();

        @Override
        public String describe() {
            return "fake forward pass";
        }

        @Override
        public Model build(CudaContext ctx, ModelShape shape, Spec spec) {
            calls.add("build " + shape.name() + " " + spec);
            if (shape == ModelShape.LLAMA_7B) {
                throw new DeviceMemoryExhaustedException("13.5 GB of weights in a 8 GB pool");
            }
            return new Model() {
                @Override
                public double decode(int[] rowAdapter, int warmupSteps, int steps) {
                    calls.add("decode " + Arrays.toString(rowAdapter) + " " + warmupSteps + "+" + steps);
                    long distinct = Arrays.stream(rowAdapter).distinct().count();
                    double msPerStep = rowAdapter[0] < 0 ? 1 : distinct == 1 ? 2 : 4;
                    return steps * msPerStep / 1000;
                }

                @Override
                public void close() {
                    calls.add("close " + shape.name());
                }
            };
        }
    }

    @Test
    void rowsUseNoAdapterOneAdapterOrAdaptersInTurn() {
        assertArrayEquals(new int[] {-1, -1, -1}, DecodeSection.rowAdapters(DecodeSection.Mode.BASE, 3, 4));
        assertArrayEquals(new int[] {0, 0, 0}, DecodeSection.rowAdapters(DecodeSection.Mode.ONE, 3, 4));
        assertArrayEquals(new int[] {0, 1, 2, 0, 1}, DecodeSection.rowAdapters(DecodeSection.Mode.MANY, 5, 3));
        assertArrayEquals(new int[] {0}, DecodeSection.rowAdapters(DecodeSection.Mode.MANY, 1, 64));
    }

    @Test
    void theTableGivesTokensPerSecondFromTheStepsTimed() {
        Fake fake = new Fake();
        StringWriter s = new StringWriter();
        new DecodeSection(Optional.of(fake), CONFIG).run(null, new PrintWriter(s));
        String out = s.toString();
        assertTrue(out.contains("fake forward pass"), out);
        assertEquals("build tiny Spec[maxBatch=8, adapters=4, rank=16, contextTokens=128]", fake.calls.get(0));
        assertEquals("decode [-1] 3+10", fake.calls.get(1));
        assertEquals("decode [0, 1, 2, 3, 0, 1, 2, 3] 3+10", fake.calls.get(6));
        assertEquals("close tiny", fake.calls.get(7));
        assertEquals("build 7b Spec[maxBatch=8, adapters=4, rank=16, contextTokens=128]", fake.calls.get(8));
        // batch 1: 1000, 500, and "many" is one adapter too (500); batch 8: 8000, 4000, 2000 tokens/s
        assertTrue(out.contains("| tiny  | 1     | 1000.0     | 500.0           | 1              | 500.0      | 0.50             | 1.00             | 2.00         |"), out);
        assertTrue(out.contains("| tiny  | 8     | 8000.0     | 4000.0          | 4              | 2000.0     | 0.50             | 0.50             | 4.00         |"), out);
        assertTrue(out.contains("7b: does not fit: 13.5 GB of weights in a 8 GB pool"), out);
        assertFalse(out.contains("| 7b"), out);
    }

    @Test
    void withoutTheForwardPassTheSectionSaysSo() {
        StringWriter s = new StringWriter();
        new DecodeSection(Optional.empty(), CONFIG).run(null, new PrintWriter(s));
        assertTrue(s.toString().contains("decode throughput: needs the CUDA forward pass"), s.toString());
        assertFalse(s.toString().contains("|"), "no table");
    }

    @Test
    void theEntryPointsDecodeThroughTheBatcherModulesCudaForwardPass() {
        // once found on the class path through a ServiceLoader; now the bench module calls it directly
        Optional<GpuDecodeBench> found = GpuBench.decodeBench();
        assertEquals("dev.loragateway.bench.gpu.CudaDecodeBench", found.orElseThrow().getClass().getName());
    }
}
