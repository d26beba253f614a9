package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link CpuBackend#matmul} at batched-decode shapes against a double-precision reference over the
 * weights as stored: every row count up to 9 and odd ones up to 65 (the register blocks of rows and
 * their remainders), inner sizes below, at and across the 16-bit block and the k-chunk with odd
 * tails, output sizes that leave remainders in the column blocks and cross weight tiles, all three
 * dtypes, one and two threads. Tolerance per element: {@code 1e-5·Σ_k |x[k]·w[k]| + 1e-6}.
 */
class MatMulBatchTest {
    static final int[] ROWS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 31, 32, 33, 63, 64, 65};
    static final int[] INNER = {1, 17, 32, 33, 100, 1000, 2100};
    static final int[] OUT = {1, 7, 36, 131};

    static Stream<Arguments> dtypesAndThreads() {
        return Arrays.stream(DType.values()).flatMap(d -> Stream.of(1, 2).map(t -> Arguments.of(d, t)));
    }

    @ParameterizedTest(name = "{0} weights, {1} threads")
    @MethodSource("dtypesAndThreads")
    void batchedMatmulMatchesDoubleReference(DType dtype, int threads) {
        checkAll(dtype, threads);
    }

    /** Runs every shape; also callable from a main for experiments. */
    static void checkAll(DType dtype, int threads) {
        Random rnd = new Random(4242L + 10L * dtype.ordinal() + threads);
        try (CpuBackend cpu = new CpuBackend(threads, CpuKernelForm.selected())) { // the Vector API kernels (NativeCpuTest: the native ones)
            for (int in : INNER) {
                for (int outDim : OUT) {
                    Tensor wt = Tensor.of("w", dtype, gaussian(rnd, outDim * in, 0.5, 0.05), outDim, in);
                    float[] wr = wt.toFloats();
                    for (int rows : ROWS) {
                        if ((long) rows * in * outDim > 4_000_000L && rows % 2 == 0) {
                            continue; // keep the reference cheap: the odd row counts cover the remainders
                        }
                        check(cpu, rnd, dtype, rows, in, outDim, wt, wr);
                    }
                }
            }
        }
    }

    private static void check(CpuBackend cpu, Random rnd, DType dtype, int rows, int in, int outDim, Tensor wt, float[] wr) {
        float[] x = gaussian(rnd, rows * in + 3, 1, 0);
        float[] xBefore = x.clone();
        float[] out = new float[rows * outDim + 5];
        Arrays.fill(out, Float.NaN);
        cpu.matmul(x, rows, wt, out);
        String shape = dtype + " rows=" + rows + " in=" + in + " out=" + outDim + " threads=" + cpu.threads();
        MatMulReference.assertMatches(x, rows, in, wr, null, out, outDim, shape);
        assertUntouchedOutside(out, 0, rows * outDim, Float.NaN, shape + " out");
        assertArrayEquals(xBefore, x, shape + ": the input must not be modified");
    }
}
