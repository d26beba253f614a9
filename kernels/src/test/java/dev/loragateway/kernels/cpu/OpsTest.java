package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.assertWithin;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link Ops} against double-precision loops, at odd lengths and vector-width multiples, at
 * non-zero offsets; elements outside the addressed range must stay untouched. Each tolerance is
 * the float32 rounding the op may do, stated at its check.
 */
class OpsTest {
    /** Lengths around the vector width (8 or 16 lanes) and long odd ones. */
    static final int[] N = {1, 2, 7, 8, 15, 16, 17, 33, 64, 100, 257, 1000};
    static final float SENTINEL = -12345.5f;

    private static float[] padded(float[] values, int off, int tail) {
        float[] a = new float[off + values.length + tail];
        Arrays.fill(a, SENTINEL);
        System.arraycopy(values, 0, a, off, values.length);
        return a;
    }

    @Test
    void rmsNorm() {
        Random rnd = new Random(1);
        for (int n : N) {
            for (float eps : new float[] {1e-5f, 1e-6f}) {
                float[] xv = gaussian(rnd, n, 2, 0.3);
                float[] weight = gaussian(rnd, n, 0.2, 1);
                float[] x = padded(xv, 3, 2);
                float[] out = padded(new float[n], 5, 4);
                Ops.rmsNorm(x, 3, weight, eps, out, 5, n);
                double ss = 0;
                for (float v : xv) {
                    ss += (double) v * v;
                }
                double inv = 1 / Math.sqrt(ss / n + eps);
                for (int i = 0; i < n; i++) {
                    double ref = xv[i] * inv * weight[i];
                    final int at = i;
                    // three float roundings (inv, x·inv, ·weight): 1e-6 relative
                    assertWithin(ref, out[5 + i], 1e-6 * Math.abs(ref) + 1e-30, () -> "rmsNorm n=" + n + " [" + at + "]");
                }
                assertUntouchedOutside(out, 5, 5 + n, SENTINEL, "rmsNorm out");
            }
        }
    }

    @Test
    void addDotAxpy() {
        Random rnd = new Random(2);
        for (int n : N) {
            float[] xv = gaussian(rnd, n, 1, 0.1);
            float[] yv = gaussian(rnd, n, 1, -0.1);
            float a = (float) (0.5 + rnd.nextGaussian());

            float[] y = padded(yv, 4, 3);
            Ops.add(y, 4, padded(xv, 1, 0), 1, n);
            for (int i = 0; i < n; i++) {
                final int at = i;
                // one rounding of the sum
                assertWithin((double) yv[i] + xv[i], y[4 + i], 1e-7 * (Math.abs(yv[i]) + Math.abs(xv[i])), () -> "add n=" + n + " [" + at + "]");
            }
            assertUntouchedOutside(y, 4, 4 + n, SENTINEL, "add y");

            double dot = 0;
            double mag = 0;
            for (int i = 0; i < n; i++) {
                dot += (double) xv[i] * yv[i];
                mag += Math.abs((double) xv[i] * yv[i]);
            }
            // float32 accumulation: 1e-5·Σ|a·b| + 1e-6
            assertWithin(dot, Ops.dot(padded(xv, 2, 1), 2, padded(yv, 7, 0), 7, n), 1e-5 * mag + 1e-6, () -> "dot n=" + n);

            y = padded(yv, 6, 5);
            Ops.axpy(a, padded(xv, 3, 0), 3, y, 6, n);
            for (int i = 0; i < n; i++) {
                final int at = i;
                double ref = yv[i] + (double) a * xv[i];
                // fma (one rounding) in the vector part, two roundings in the scalar tail
                assertWithin(ref, y[6 + i], 2e-7 * (Math.abs(yv[i]) + Math.abs(a * xv[i])), () -> "axpy n=" + n + " [" + at + "]");
            }
            assertUntouchedOutside(y, 6, 6 + n, SENTINEL, "axpy y");
        }
    }

    @Test
    void siluMul() {
        Random rnd = new Random(3);
        for (int n : N) {
            float[] gate = gaussian(rnd, n + 3, 4, 0);
            if (n >= 8) { // saturated tails: e^-g overflows float for g < -88.7
                gate[0] = -100f;
                gate[1] = -88f;
                gate[2] = 30f;
                gate[3] = 100f;
                gate[4] = -20f;
            }
            float[] up = gaussian(rnd, n + 3, 1, 0.2);
            float[] g0 = gate.clone();
            Ops.siluMul(gate, up, n);
            for (int i = 0; i < n; i++) {
                double g = g0[i];
                double ref = g / (1 + Math.exp(-g)) * up[i];
                final int at = i;
                // exp, 1+e, division and product each round once: 1e-6 relative (plus underflow of e^-g → ∞)
                assertWithin(ref, gate[i], 1e-6 * Math.abs(ref) + 1e-30, () -> "siluMul n=" + n + " g=" + g + " [" + at + "]");
            }
            for (int i = n; i < n + 3; i++) {
                assertEquals(g0[i], gate[i], 0f, "siluMul wrote past n");
            }
        }
    }

    @Test
    void softmax() {
        Random rnd = new Random(4);
        for (int n : N) {
            for (double offset : new double[] {0, 1000, -1000}) { // large offsets need the max subtracted
                float[] xv = gaussian(rnd, n, 3, offset);
                float[] x = padded(xv, 2, 3);
                Ops.softmax(x, 2, n);
                double max = Double.NEGATIVE_INFINITY;
                double min = Double.POSITIVE_INFINITY;
                for (float v : xv) {
                    max = Math.max(max, v);
                    min = Math.min(min, v);
                }
                double sum = 0;
                for (float v : xv) {
                    sum += Math.exp(v - max);
                }
                double spread = max - min;
                double total = 0;
                for (int i = 0; i < n; i++) {
                    double ref = Math.exp(xv[i] - max) / sum;
                    total += x[2 + i];
                    final int at = i;
                    // x−max rounds (error ≤ 6e-8·spread in the exponent), exp and the scaling round once each
                    double tol = 1e-7 * (4 + 2 * spread) * ref + 1e-30;
                    assertWithin(ref, x[2 + i], tol, () -> "softmax n=" + n + " offset=" + offset + " [" + at + "]");
                }
                // the per-element bounds summed over p (Σp = 1)
                assertEquals(1.0, total, 1e-7 * (5 + 2 * spread), "softmax n=" + n + " must sum to 1");
                assertUntouchedOutside(x, 2, 2 + n, SENTINEL, "softmax x");
            }
        }
    }

    @Test
    void argmaxPicksTheFirstOfTies() {
        Random rnd = new Random(5);
        for (int n : N) {
            for (int trial = 0; trial < 20; trial++) {
                float[] xv = gaussian(rnd, n, 1, -0.5);
                if (n > 1 && trial % 2 == 1) { // duplicate the maximum at a later random position
                    int first = 0;
                    for (int i = 1; i < n; i++) {
                        first = xv[i] > xv[first] ? i : first;
                    }
                    if (first < n - 1) {
                        xv[first + 1 + rnd.nextInt(n - first - 1)] = xv[first];
                    }
                }
                if (n > 2 && trial == 4) { // all equal: the first wins
                    Arrays.fill(xv, 0.75f);
                }
                int ref = 0;
                for (int i = 1; i < n; i++) {
                    if (xv[i] > xv[ref]) {
                        ref = i;
                    }
                }
                assertEquals(ref, Ops.argmax(padded(xv, 9, 2), 9, n), "argmax n=" + n + " " + Arrays.toString(xv));
            }
        }
        float[] negative = {-3f, -1f, -2f, -1f};
        assertEquals(1, Ops.argmax(negative, 0, 4), "all negative, tie at 1 and 3");
        assertEquals(0, Ops.argmax(negative, 1, 3), "offset: index relative to o, first of the tie");
        assertEquals(1, Ops.argmax(negative, 2, 2), "offset: index relative to o");
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void embedding(DType dtype) {
        Random rnd = new Random(6 + dtype.ordinal());
        int vocab = 11;
        for (int dim : new int[] {1, 7, 16, 33}) {
            float[] values = gaussian(rnd, vocab * dim, 1, 0);
            Tensor table = Tensor.of("embed_tokens", dtype, values, vocab, dim);
            for (int token : new int[] {0, 1, 5, vocab - 1}) {
                float[] out = padded(new float[dim], 4, 3);
                Ops.embedding(table, token, out, 4);
                for (int c = 0; c < dim; c++) {
                    float v = values[token * dim + c];
                    float stored = dtype == DType.F32 ? v
                        : dtype == DType.BF16 ? DType.bf16ToFloat(DType.floatToBf16(v)) : DType.f16ToFloat(DType.floatToF16(v));
                    assertEquals(stored, out[4 + c], 0f, dtype + " token " + token + " [" + c + "]");
                }
                assertUntouchedOutside(out, 4, 4 + dim, SENTINEL, "embedding out");
            }
            for (int bad : new int[] {-3, vocab, 12, Integer.MAX_VALUE}) {
                var e = assertThrows(IllegalArgumentException.class, () -> Ops.embedding(table, bad, new float[dim], 0));
                assertTrue(e.getMessage().contains(String.valueOf(bad)), "message should name token " + bad + ": " + e.getMessage());
            }
        }
    }
}
