package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import static dev.loragateway.kernels.Fixtures.INNER;
import static dev.loragateway.kernels.Fixtures.ROWS;
import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link CpuBackend#matmul} and {@link CpuBackend#linear} against a double-precision loop over
 * the weights as stored ({@link Tensor#get}: for 16-bit weights, the already-rounded values), so
 * the only error left is float32 accumulation. Tolerance per output element:
 * {@code |Δ| ≤ 1e-5·Σ_k |x[k]·w[k]| (+ |bias|) + 1e-6}.
 *
 * <p>Shapes: rows 1, 3, 17, 130 (the 4-row block and its remainder); inner sizes odd and multiples
 * of the vector width and of the 16-bit block; output columns 1, 5, 16, 31, 130 (the parallel
 * grain is 16 columns); 1, 2 and 3 threads.
 */
class CpuBackendTest {
    static final int[] OUT = {1, 5, 16, 31, 130};

    static Stream<Arguments> dtypesAndThreads() {
        return Arrays.stream(DType.values()).flatMap(d -> Stream.of(1, 2, 3).map(t -> Arguments.of(d, t)));
    }

    @ParameterizedTest(name = "{0} weights, {1} threads")
    @MethodSource("dtypesAndThreads")
    void matmulMatchesDoubleReference(DType dtype, int threads) {
        Random rnd = new Random(100L * dtype.ordinal() + threads);
        try (CpuBackend cpu = new CpuBackend(threads, CpuKernelForm.selected())) {
            assertEquals(threads, cpu.threads());
            for (int rows : ROWS) {
                for (int in : INNER) {
                    for (int outDim : OUT) {
                        float[] w = gaussian(rnd, outDim * in, 0.5, 0.05);
                        check(cpu, rnd, dtype, rows, in, outDim, w, null);
                    }
                }
            }
        }
    }

    @ParameterizedTest(name = "{0} weights, {1} threads")
    @MethodSource("dtypesAndThreads")
    void linearAddsBias(DType dtype, int threads) {
        Random rnd = new Random(7000L + 100L * dtype.ordinal() + threads);
        try (CpuBackend cpu = new CpuBackend(threads, CpuKernelForm.selected())) {
            for (int rows : new int[] {1, 3, 17}) {
                for (int in : new int[] {7, 64, 257}) {
                    for (int outDim : new int[] {1, 31, 130}) {
                        float[] w = gaussian(rnd, outDim * in, 0.5, 0.05);
                        check(cpu, rnd, dtype, rows, in, outDim, w, gaussian(rnd, outDim, 1, 0.5));
                        check(cpu, rnd, dtype, rows, in, outDim, w, null);
                    }
                }
            }
        }
    }

    /** Weights spread over 2^-26..2^4: f16 subnormals (and underflow to 0), bf16's coarse steps. */
    @ParameterizedTest
    @EnumSource(DType.class)
    void weightsOfWidelyVaryingMagnitude(DType dtype) {
        Random rnd = new Random(31 + dtype.ordinal());
        try (CpuBackend cpu = new CpuBackend(2, CpuKernelForm.selected())) {
            for (int rows : new int[] {1, 5}) {
                for (int in : new int[] {33, 100, 1000}) {
                    float[] w = gaussian(rnd, 17 * in, 1, 0);
                    for (int i = 0; i < w.length; i++) {
                        w[i] = Math.scalb(w[i], -26 + rnd.nextInt(31));
                    }
                    check(cpu, rnd, dtype, rows, in, 17, w, null);
                }
            }
        }
    }

    private static void check(CpuBackend cpu, Random rnd, DType dtype, int rows, int in, int outDim, float[] w, float[] bias) {
        Tensor wt = Tensor.of("w", dtype, w, outDim, in);
        float[] wr = wt.toFloats(); // what the kernel multiplies by
        float[] x = gaussian(rnd, rows * in + 5, 1, 0); // longer than needed, as a sliced step buffer is
        float[] xBefore = x.clone();
        float[] out = new float[rows * outDim + 3];
        Arrays.fill(out, Float.NaN);
        if (bias == null) {
            cpu.matmul(x, rows, wt, out);
        } else {
            cpu.linear(x, rows, wt, bias, out);
        }
        String shape = dtype + " rows=" + rows + " in=" + in + " out=" + outDim + " threads=" + cpu.threads()
            + (bias == null ? "" : " +bias");
        MatMulReference.assertMatches(x, rows, in, wr, bias, out, outDim, shape);
        assertUntouchedOutside(out, 0, rows * outDim, Float.NaN, shape + " out");
        assertArrayEquals(xBefore, x, shape + ": the input must not be modified");
    }

    @Test
    void rejectsBadShapesNamingTheWeight() {
        try (CpuBackend cpu = new CpuBackend(1, CpuKernelForm.selected())) {
            Tensor vec = Tensor.of("norm.weight", DType.F32, new float[] {1, 2, 3}, 3);
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.matmul(new float[3], 1, vec, new float[3]));
            assertTrue(e.getMessage().contains("norm.weight"), e.getMessage());
            Tensor w = Tensor.of("q_proj", DType.BF16, gaussian(new Random(1), 12, 1, 0), 3, 4);
            e = assertThrows(IllegalArgumentException.class, () -> cpu.matmul(new float[7], 2, w, new float[6]));
            assertTrue(e.getMessage().contains("q_proj") && e.getMessage().contains("7"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> cpu.matmul(new float[8], 2, w, new float[5]));
            assertTrue(e.getMessage().contains("q_proj") && e.getMessage().contains("5"), e.getMessage());
        }
    }

    @Test
    void parallelCoversTheRangeOnce() {
        try (CpuBackend cpu = new CpuBackend(3, CpuKernelForm.selected())) {
            for (int total : new int[] {1, 2, 3, 4, 50, 1001}) {
                AtomicIntegerArray hits = new AtomicIntegerArray(total);
                cpu.parallel(total, (from, to) -> {
                    for (int i = from; i < to; i++) {
                        hits.incrementAndGet(i);
                    }
                });
                for (int i = 0; i < total; i++) {
                    assertEquals(1, hits.get(i), "index " + i + " of " + total);
                }
            }
        }
    }
}
