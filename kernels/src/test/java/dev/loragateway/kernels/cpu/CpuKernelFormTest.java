package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.opentest4j.AssertionFailedError;

/**
 * The {@link CpuKernelForm}s: every form that works on the running JVM (the suite runs on Java 17
 * and on a JDK 22+, so both the {@code ByteBuffer} and the {@code MemorySegment} forms, and the
 * portable {@code copy} form on both) gives {@link CpuBackend#matmul} results equal to a
 * double-precision sum over the stored weights, on random never-zero inputs at odd shapes, for F32,
 * F16 and BF16 weights, through the GEMV path (1 row) and the batched path (2+ rows), with 1 and 2
 * threads; the choice skips a form that fails to link or computes wrong numbers; the choice on this
 * JVM is the fast one. Tolerance per element as {@link MatMulBatchTest}:
 * {@code 1e-5·Σ_k |x[k]·w[k]| + 1e-6}.
 */
class CpuKernelFormTest {
    static final int[] ROWS = {1, 2, 3, 5, 7, 9, 17};
    static final int[] INNER = {1, 17, 33, 67, 100, 1000, 2100};
    static final int[] OUT = {1, 7, 37};

    static Stream<Arguments> formsAndDtypes() {
        return CpuKernelForm.available().stream().flatMap(f -> Arrays.stream(DType.values()).map(d -> Arguments.of(f, d)));
    }

    @ParameterizedTest(name = "{0} form, {1} weights")
    @MethodSource("formsAndDtypes")
    void eachAvailableFormMatchesDoubleReference(CpuKernelForm form, DType dtype) {
        checkForm(form, dtype, new Random(31L * dtype.ordinal() + form.name().hashCode()));
    }

    /** Every shape, 1 and 2 threads; fails (AssertionFailedError) on the first wrong element. */
    static void checkForm(CpuKernelForm form, DType dtype, Random rnd) {
        for (int threads = 1; threads <= 2; threads++) {
            try (CpuBackend cpu = new CpuBackend(threads, form)) {
                for (int in : INNER) {
                    for (int outDim : OUT) {
                        Tensor w = Tensor.of("w", dtype, gaussian(rnd, outDim * in, 0.5, 0.05), outDim, in);
                        float[] wf = w.toFloats();
                        for (int rows : ROWS) {
                            check(cpu, form + " form, " + dtype + ", " + threads + " threads", rnd, rows, in, outDim, w, wf);
                        }
                    }
                }
            }
        }
    }

    private static void check(CpuBackend cpu, String what, Random rnd, int rows, int in, int outDim, Tensor w, float[] wf) {
        float[] x = gaussian(rnd, rows * in, 1, 0);
        float[] out = new float[rows * outDim + 3];
        Arrays.fill(out, Float.NaN);
        cpu.matmul(x, rows, w, out);
        String shape = what + ", rows=" + rows + " in=" + in + " out=" + outDim;
        MatMulReference.assertMatches(x, rows, in, wf, null, out, outDim, shape);
        assertUntouchedOutside(out, 0, rows * outDim, Float.NaN, shape + " out");
    }

    @Test
    void theChecksFailForAWrongForm() {
        // the comparison above must be able to fail: a form whose vector loads misplace one lane
        CpuKernelForm wrong = new CpuKernelForm("lane-shifted", "test", new LaneShiftedLoads(CpuKernelForm.selected().loads()));
        for (DType dtype : DType.values()) {
            assertThrows(AssertionFailedError.class, () -> checkForm(wrong, dtype, new Random(5)), dtype + " weights");
        }
    }

    @Test
    void theFastFormForThisJavaIsChosen() {
        int java = Runtime.version().feature();
        boolean segmentBuilt = CpuKernelForm.class.getResource("SegmentLoads.class") != null;
        List<String> available = CpuKernelForm.available().stream().map(CpuKernelForm::name).collect(Collectors.toList());
        String chosen = CpuKernelForm.selected().name();
        String expected = java <= 19 ? "ByteBuffer" : java >= 22 && segmentBuilt ? "MemorySegment" : "copy";
        assertEquals(expected, chosen, "Java " + java + " (available: " + available + ", SegmentLoads built: " + segmentBuilt + ")");
        assertTrue(available.contains("copy"), "the portable form works everywhere: " + available);
        assertEquals(java <= 19, available.contains("ByteBuffer"), "fromByteBuffer exists on Java 17-19 only: " + available);
        assertEquals(java >= 22 && segmentBuilt, available.contains("MemorySegment"), "MemorySegment form: " + available);
        String description = CpuKernelForm.describe();
        assertTrue(description.contains("Java " + java), description);
        assertTrue(description.startsWith(java <= 19 ? "vector ByteBuffer loads" : expected.equals("copy")
            ? "vector loads through a per-call heap copy" : "vector MemorySegment loads"), description);
    }

    @Test
    void aFormThatFailsToLinkOrComputesWrongIsNeverChosen() {
        WeightLoads real = CpuKernelForm.selected().loads();
        List<CpuKernelForm.Candidate> candidates = List.of(
            new CpuKernelForm.Candidate("missing", () -> {
                throw new ClassNotFoundException("dev.loragateway.kernels.NoSuchLoads");
            }),
            new CpuKernelForm.Candidate("unlinked", () -> new CpuKernelForm("unlinked", "x", new UnlinkedLoads())),
            new CpuKernelForm.Candidate("wrong", () -> new CpuKernelForm("wrong", "x", new LaneShiftedLoads(real))),
            new CpuKernelForm.Candidate("real", () -> new CpuKernelForm("real", "the real loads", real)));
        CpuKernelForm.Selection s = CpuKernelForm.select(candidates);
        assertEquals("real", s.form.name());
        assertTrue(s.description.startsWith("the real loads (Java " + Runtime.version().feature()), s.description);
        assertEquals(3, s.rejected.size(), s.rejected.toString());
        assertTrue(s.rejected.get(0).startsWith("missing: not in this build"), s.rejected.get(0));
        assertTrue(s.rejected.get(1).startsWith("unlinked: NoSuchMethodError"), s.rejected.get(1));
        assertTrue(s.rejected.get(2).startsWith("wrong: WrongResult: wrong form,"), s.rejected.get(2));

        CpuKernelForm.Selection none = CpuKernelForm.select(candidates.subList(0, 3));
        assertNull(none.form);
        assertTrue(none.description.startsWith("no working CPU kernel form on Java "), none.description);
        assertTrue(none.description.contains("unlinked: NoSuchMethodError"), none.description);
    }

    @Test
    void noFormCopiesTheWeights() {
        // the handle of every form reads the buffer in place: a write to the buffer is seen by the next load
        for (CpuKernelForm form : CpuKernelForm.available()) {
            ByteBuffer b = Tensor.of("w", DType.F32, gaussian(new Random(1), 64, 1, 0), 64).buffer();
            WeightLoads ld = form.loads();
            Object h = ld.open(b);
            b.putFloat(8, 42f);
            assertEquals(42f, ld.f32(h, 8), form + " f32");
            assertEquals(42f, ld.floats(h, 8).lane(0), form + " floats");
            assertFalse(Float.isNaN(ld.floats(h, 0).reduceLanes(VectorOperators.ADD)), form.name());
        }
    }

    /** A form whose vector loads rotate the lanes by one: right sums on uniform data, wrong ones here. */
    static final class LaneShiftedLoads extends WeightLoads {
        private final WeightLoads real;

        LaneShiftedLoads(WeightLoads real) {
            this.real = real;
        }

        @Override
        Object open(ByteBuffer w) {
            return real.open(w);
        }

        @Override
        FloatVector floats(Object w, int byteOffset) {
            return real.floats(w, byteOffset).rearrange(MatMul.FS.iotaShuffle(1, 1, true));
        }

        @Override
        IntVector pairs(Object w, int byteOffset) {
            return real.pairs(w, byteOffset).rearrange(MatMul.IS.iotaShuffle(1, 1, true));
        }

        @Override
        float f32(Object w, int byteOffset) {
            return real.f32(w, byteOffset);
        }

        @Override
        short bits16(Object w, int byteOffset) {
            return real.bits16(w, byteOffset);
        }
    }

    /** What a jar built for Java 17 does on Java 25: links, then throws at the first vector load. */
    static final class UnlinkedLoads extends WeightLoads {
        @Override
        Object open(ByteBuffer w) {
            return w;
        }

        @Override
        FloatVector floats(Object w, int byteOffset) {
            throw new NoSuchMethodError("'jdk.incubator.vector.FloatVector jdk.incubator.vector.FloatVector.fromByteBuffer(...)'");
        }

        @Override
        IntVector pairs(Object w, int byteOffset) {
            throw new NoSuchMethodError("'jdk.incubator.vector.IntVector jdk.incubator.vector.IntVector.fromByteBuffer(...)'");
        }

        @Override
        float f32(Object w, int byteOffset) {
            return ((ByteBuffer) w).getFloat(byteOffset);
        }

        @Override
        short bits16(Object w, int byteOffset) {
            return ((ByteBuffer) w).getShort(byteOffset);
        }
    }
}
