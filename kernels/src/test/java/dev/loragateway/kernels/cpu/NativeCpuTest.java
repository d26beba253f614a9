package dev.loragateway.kernels.cpu;

import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.assertWithin;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The native bf16 GEMM ({@link NativeCpu}, through {@link CpuBackend#matmul}) against a
 * double-precision reference, at odd shapes: row counts across the 4-row register tile and its
 * remainders, inner sizes with tails of the 32-element step and across the 1024-element k-chunk,
 * output sizes across the 6-column tile and the weight panel; one and two threads. Its activations
 * are bf16, so the tight reference rounds them to nearest even first (an independent rounding, in
 * Java); a looser one checks against the float32 activations. Also: a row's result does not depend
 * on its batch, bit for bit; it agrees with the Vector API path.
 */
class NativeCpuTest {
    static final int[] ROWS = {1, 2, 3, 4, 5, 7, 8, 13, 37};
    static final int[] INNER = {1, 31, 33, 75, 1001, 2085};
    static final int[] OUT = {1, 7, 37, 100, 203};

    /** On a CPU that has avx512_bf16 (and a build made with gcc) the native path must be there, not silently absent. */
    @Test
    void availableWhereTheCpuHasAvx512Bf16() throws IOException {
        boolean cpuHas = cpuFlags().contains(" avx512_bf16") && cpuFlags().contains(" avx512bw") && cpuFlags().contains(" avx512vl");
        boolean built = NativeCpu.class.getResource(NativeCpu.RESOURCE) != null;
        assertEquals(cpuHas && built, NativeCpu.available(), NativeCpu.describe());
        assertTrue(NativeCpu.describe().length() > 10, NativeCpu.describe());
    }

    @Test
    void matchesDoubleReferenceOneThread() {
        checkAll(1);
    }

    @Test
    void matchesDoubleReferenceTwoThreads() {
        checkAll(2);
    }

    private static void checkAll(int threads) {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Random rnd = new Random(77L + threads);
        try (CpuBackend cpu = new CpuBackend(threads, CpuKernelForm.selected(), true)) {
            assertTrue(cpu.usesNative());
            for (int in : INNER) {
                for (int outDim : OUT) {
                    Tensor wt = Tensor.of("w", DType.BF16, gaussian(rnd, outDim * in, 0.5, 0.05), outDim, in);
                    float[] wr = wt.toFloats();
                    for (int rows : ROWS) {
                        float[] x = gaussian(rnd, rows * in + 3, 1, 0);
                        float[] before = x.clone();
                        float[] out = new float[rows * outDim + 5];
                        Arrays.fill(out, Float.NaN);
                        cpu.matmul(x, rows, wt, out);
                        String shape = "rows=" + rows + " in=" + in + " out=" + outDim + " threads=" + threads;
                        assertMatches(x, rows, in, wr, out, outDim, shape);
                        assertUntouchedOutside(out, 0, rows * outDim, Float.NaN, shape + " out");
                        assertArrayEquals(before, x, shape + ": the input must not be modified");
                    }
                }
            }
        }
    }


    /**
     * The native attention against a double-precision reference over a paged history (a scrambled
     * block table, block size 5): grouped-query heads, head sizes that are and are not multiples of
     * 16, a prefill run of many rows and a single decode row, and a sliding window (from > 0).
     * Tolerance per element: 1e-5 · Σ_t p_t·|v_t| + 1e-6. Also: each row alone gives the same bits.
     */
    @Test
    void attentionMatchesDoubleReference() {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Random rnd = new Random(21);
        int[][] headShapes = {{4, 2, 16}, {6, 3, 24}, {2, 1, 64}, {3, 3, 7}, {8, 2, 40}};
        for (int[] hs : headShapes) {
            int heads = hs[0];
            int kvHeads = hs[1];
            int hd = hs[2];
            for (int window : new int[] {0, 6}) {
                for (int[] run : new int[][] {{0, 13}, {17, 1}, {3, 37}, {40, 5}}) {
                    checkAttention(rnd, heads, kvHeads, hd, run[0], run[1], window);
                }
            }
        }
    }

    private static void checkAttention(Random rnd, int heads, int kvHeads, int hd, int firstPos, int rows, int window) {
        int bs = 5;
        int len = firstPos + rows;
        int blocks = (len + bs - 1) / bs + 3;
        int kvDim = kvHeads * hd;
        int qDim = heads * hd;
        // a scrambled table over a pool with spare blocks
        int[] table = new int[blocks];
        for (int i = 0; i < blocks; i++) {
            table[i] = (i * 7 + 3) % blocks;
        }
        float[] keys = gaussian(rnd, blocks * bs * kvDim, 1, 0);
        float[] values = gaussian(rnd, blocks * bs * kvDim, 1, 0.2);
        int r0 = 2; // the run starts at row 2 of the step
        float[] q = gaussian(rnd, (r0 + rows) * qDim, 1, 0);
        int[] lens = new int[r0 + rows];
        int[] froms = new int[r0 + rows];
        for (int i = 0; i < rows; i++) {
            lens[r0 + i] = firstPos + i + 1;
            froms[r0 + i] = window > 0 ? Math.max(0, lens[r0 + i] - window) : 0;
        }
        float[] out = new float[(r0 + rows + 1) * qDim];
        Arrays.fill(out, Float.NaN);
        Attention.attendRowsNative(q, r0, rows, lens, froms, heads, kvHeads, hd, keys, values, table, bs, 0, kvHeads, out);
        String shape = "heads " + heads + "/" + kvHeads + " hd " + hd + " positions " + firstPos + "+" + rows + " window " + window;
        assertUntouchedOutside(out, r0 * qDim, (r0 + rows) * qDim, Float.NaN, shape + " out");
        int group = heads / kvHeads;
        double scale = 1.0 / Math.sqrt(hd);
        for (int i = 0; i < rows; i++) {
            int r = r0 + i;
            for (int h = 0; h < heads; h++) {
                int g = h / group;
                int n = lens[r] - froms[r];
                double[] p = new double[n];
                double max = Double.NEGATIVE_INFINITY;
                for (int t = froms[r]; t < lens[r]; t++) {
                    int row = table[t / bs] * bs + t % bs;
                    double sdot = 0;
                    for (int d = 0; d < hd; d++) {
                        sdot += (double) q[r * qDim + h * hd + d] * keys[row * kvDim + g * hd + d];
                    }
                    p[t - froms[r]] = sdot * scale;
                    max = Math.max(max, p[t - froms[r]]);
                }
                double sum = 0;
                for (int t = 0; t < n; t++) {
                    p[t] = Math.exp(p[t] - max);
                    sum += p[t];
                }
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    double mag = 0;
                    for (int t = froms[r]; t < lens[r]; t++) {
                        int row = table[t / bs] * bs + t % bs;
                        double vv = values[row * kvDim + g * hd + d];
                        o += p[t - froms[r]] / sum * vv;
                        mag += p[t - froms[r]] / sum * Math.abs(vv);
                    }
                    final int ii = i;
                    final int hh = h;
                    final int dd = d;
                    assertWithin(o, out[r * qDim + h * hd + d], 1e-5 * mag + 1e-6, () -> shape + " row " + ii + " head " + hh + " [" + dd + "]");
                }
            }
            // the row alone: the same bits
            float[] alone = new float[(r0 + rows + 1) * qDim];
            Attention.attendRowsNative(q, r, 1, lens, froms, heads, kvHeads, hd, keys, values, table, bs, 0, kvHeads, alone);
            assertArrayEquals(Arrays.copyOfRange(out, r * qDim, (r + 1) * qDim), Arrays.copyOfRange(alone, r * qDim, (r + 1) * qDim),
                shape + " row " + i + ": alone vs in its run");
        }
    }

    /** The native SiLU·up against double precision, over values that reach the exponential's clamps. */
    @Test
    void siluMulMatchesDoubleReference() {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Random rnd = new Random(8);
        int n = 1000 + 37;
        float[] gate = gaussian(rnd, n, 6, 0.1);
        gate[3] = -100f;
        gate[4] = 100f;
        gate[5] = -87.5f;
        gate[6] = 0.0f;
        float[] up = gaussian(rnd, n, 1, 0.3);
        double[] exact = new double[n];
        for (int i = 0; i < n; i++) {
            exact[i] = gate[i] / (1 + Math.exp(-(double) gate[i])) * up[i];
        }
        try (CpuBackend cpu = new CpuBackend(2, CpuKernelForm.selected(), true)) {
            float[] g = gate.clone();
            cpu.siluMul(g, up, n);
            for (int i = 0; i < n; i++) {
                final int ii = i;
                assertWithin(exact[i], g[i], 1e-6 * Math.abs(exact[i]) + 1e-30, () -> "silu(" + gate[ii] + ")·" + up[ii]);
            }
        }
    }


    /** Each row of a batch equals, bit for bit, the same row alone and the same row elsewhere in another batch. */
    @Test
    void aRowsResultDoesNotDependOnItsBatch() {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Random rnd = new Random(5);
        int in = 1543;
        int outDim = 211;
        int rows = 11;
        Tensor wt = Tensor.of("w", DType.BF16, gaussian(rnd, outDim * in, 0.5, 0), outDim, in);
        float[] x = gaussian(rnd, rows * in, 1, 0);
        try (CpuBackend two = new CpuBackend(2, CpuKernelForm.selected(), true);
             CpuBackend one = new CpuBackend(1, CpuKernelForm.selected(), true)) {
            float[] batch = new float[rows * outDim];
            two.matmul(x, rows, wt, batch);
            // the rows in reverse order, on one thread
            float[] xr = new float[rows * in];
            for (int r = 0; r < rows; r++) {
                System.arraycopy(x, r * in, xr, (rows - 1 - r) * in, in);
            }
            float[] reversed = new float[rows * outDim];
            one.matmul(xr, rows, wt, reversed);
            for (int r = 0; r < rows; r++) {
                float[] alone = new float[outDim];
                two.matmul(Arrays.copyOfRange(x, r * in, (r + 1) * in), 1, wt, alone);
                float[] inBatch = Arrays.copyOfRange(batch, r * outDim, (r + 1) * outDim);
                float[] inReversed = Arrays.copyOfRange(reversed, (rows - 1 - r) * outDim, (rows - r) * outDim);
                assertArrayEquals(alone, inBatch, "row " + r + ": batch of " + rows + " vs alone");
                assertArrayEquals(alone, inReversed, "row " + r + ": reversed batch on one thread vs alone");
            }
        }
    }

    /** The native and the Vector API paths compute the same product, to bf16 rounding of the activations. */
    @Test
    void agreesWithTheVectorApiPath() {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Random rnd = new Random(9);
        int in = 1000;
        int outDim = 129;
        int rows = 9;
        Tensor wt = Tensor.of("w", DType.BF16, gaussian(rnd, outDim * in, 0.5, 0.01), outDim, in);
        float[] x = gaussian(rnd, rows * in, 1, 0.1);
        float[] nat = new float[rows * outDim];
        float[] vec = new float[rows * outDim];
        try (CpuBackend n = new CpuBackend(2, CpuKernelForm.selected(), true);
             CpuBackend v = new CpuBackend(2, CpuKernelForm.selected(), false)) {
            n.matmul(x, rows, wt, nat);
            v.matmul(x, rows, wt, vec);
        }
        float[] wr = wt.toFloats();
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < outDim; j++) {
                double mag = 0;
                for (int k = 0; k < in; k++) {
                    mag += Math.abs((double) x[r * in + k] * wr[j * in + k]);
                }
                final int rr = r;
                final int jj = j;
                assertWithin(vec[r * outDim + j], nat[r * outDim + j], 0x1p-8 * mag, () -> "out[" + rr + "][" + jj + "]");
            }
        }
    }

    /** Other dtypes, and a bf16 tensor on the heap, take the Vector API path of a native backend. */
    @Test
    void otherWeightsTakeTheVectorApiPath() {
        assumeTrue(NativeCpu.available(), NativeCpu.describe());
        Random rnd = new Random(3);
        int in = 77;
        int outDim = 19;
        int rows = 5;
        try (CpuBackend cpu = new CpuBackend(2, CpuKernelForm.selected(), true)) {
            for (DType d : new DType[] {DType.F32, DType.F16}) {
                Tensor wt = Tensor.of("w", d, gaussian(rnd, outDim * in, 0.5, 0), outDim, in);
                float[] x = gaussian(rnd, rows * in, 1, 0);
                float[] out = new float[rows * outDim];
                cpu.matmul(x, rows, wt, out);
                MatMulReference.assertMatches(x, rows, in, wt.toFloats(), null, out, outDim, d + " on a native backend");
            }
        }
    }

    /** The tight reference: double sums over the activations rounded to bf16 (nearest even) and the weights as stored. */
    static void assertMatches(float[] x, int rows, int in, float[] w, float[] out, int outDim, String shape) {
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < outDim; j++) {
                double sum = 0;
                double exact = 0;
                double magnitude = 0;
                for (int k = 0; k < in; k++) {
                    float xk = x[r * in + k];
                    sum += (double) roundToBf16(xk) * w[j * in + k];
                    exact += (double) xk * w[j * in + k];
                    magnitude += Math.abs((double) xk * w[j * in + k]);
                }
                final int rr = r;
                final int jj = j;
                assertWithin(sum, out[r * outDim + j], 1e-5 * magnitude + 1e-6, () -> shape + " out[" + rr + "][" + jj + "]");
                assertWithin(exact, out[r * outDim + j], 0x1p-8 * magnitude + 1e-6, () -> shape + " out[" + rr + "][" + jj + "] vs float32 x");
            }
        }
    }

    /** float → bf16 → float, round to nearest even (finite inputs). */
    static float roundToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        int lsb = (bits >>> 16) & 1;
        int rounded = (bits + 0x7FFF + lsb) & 0xFFFF0000;
        return Float.intBitsToFloat(rounded);
    }

    private static String cpuFlags() throws IOException {
        Path p = Path.of("/proc/cpuinfo");
        if (!Files.isReadable(p)) {
            return "";
        }
        for (String line : Files.readAllLines(p)) {
            if (line.startsWith("flags")) {
                return line + " ";
            }
        }
        return "";
    }
}
