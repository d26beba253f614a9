package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.assertWithin;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cpu.Rope.Llama3Scaling;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link Rope} against a reference written from transformers: {@code inv_freq = 1 / θ^(2i/d)},
 * llama3 scaling as in {@code _compute_llama3_parameters} (the {@code torch.where} form: low band
 * divided by the factor, high band unchanged, medium band smoothed), then cos/sin in double and
 * {@code q·cos + rotate_half(q)·sin} with {@code rotate_half(q) = [−q[d/2:], q[:d/2]]}.
 *
 * <p>Tolerance: cos and sin are rounded to float, then two products and a sum in float:
 * {@code |Δ| ≤ 1e-6·(|x[i]| + |x[i ± d/2]|)}.
 */
class RopeTest {
    static final int[] HEAD_DIMS = {2, 6, 16, 64};
    static final int[] POSITIONS = {0, 1, 37, 5000};
    static final float SENTINEL = 777.25f;

    /** Scaled configurations; together they put frequencies in all three bands at small head sizes. */
    static final Object[][] SCALED = {
        {500_000.0, new Llama3Scaling(8, 1, 4, 8192)}, // Llama 3.1
        {10_000.0, new Llama3Scaling(4, 1, 4, 64)},
        {100.0, new Llama3Scaling(32, 1, 2, 32)},
    };

    /** Band of each frequency: 0 high (unchanged), 1 medium (smoothed), 2 low (divided). */
    static double[] referenceFrequencies(int d, double theta, Llama3Scaling s, int[] bandCounts) {
        double[] f = new double[d / 2];
        for (int i = 0; i < d / 2; i++) {
            double invFreq = 1 / Math.pow(theta, (double) (2 * i) / d);
            if (s == null) {
                f[i] = invFreq;
                continue;
            }
            double lowFreqWavelen = s.originalMaxPositions() / s.lowFreqFactor();
            double highFreqWavelen = s.originalMaxPositions() / s.highFreqFactor();
            double wavelen = 2 * Math.PI / invFreq;
            double llama = wavelen > lowFreqWavelen ? invFreq / s.factor() : invFreq;
            double smooth = (s.originalMaxPositions() / wavelen - s.lowFreqFactor()) / (s.highFreqFactor() - s.lowFreqFactor());
            double smoothed = (1 - smooth) * llama / s.factor() + smooth * llama;
            boolean medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
            f[i] = medium ? smoothed : llama;
            bandCounts[medium ? 1 : wavelen > lowFreqWavelen ? 2 : 0]++;
        }
        return f;
    }

    @Test
    void unscaledMatchesReference() {
        Random rnd = new Random(1);
        for (double theta : new double[] {10_000, 500_000}) {
            for (int d : HEAD_DIMS) {
                check(rnd, d, theta, null, new int[3]);
            }
        }
    }

    @Test
    void llama3ScalingMatchesReferenceInAllBands() {
        Random rnd = new Random(2);
        int[] bands = new int[3];
        for (Object[] c : SCALED) {
            for (int d : HEAD_DIMS) {
                check(rnd, d, (Double) c[0], (Llama3Scaling) c[1], bands);
            }
        }
        assertTrue(bands[0] > 0 && bands[1] > 0 && bands[2] > 0, "all three bands exercised: " + Arrays.toString(bands));
    }

    @Test
    void scalingLeavesHighFrequenciesAndDividesLowOnes() {
        Llama3Scaling s = new Llama3Scaling(8, 1, 4, 8192);
        Rope plain = new Rope(64, 500_000, null);
        Rope scaled = new Rope(64, 500_000, s);
        for (int i = 0; i < 32; i++) {
            double wavelen = 2 * Math.PI / plain.frequency(i);
            double ratio = scaled.frequency(i) / plain.frequency(i);
            if (wavelen < 8192 / 4.0) {
                assertEquals(1.0, ratio, 1e-15, "high band pair " + i);
            } else if (wavelen > 8192 / 1.0) {
                assertEquals(1 / 8.0, ratio, 1e-15, "low band pair " + i);
            } else {
                assertTrue(ratio > 1 / 8.0 - 1e-15 && ratio < 1 + 1e-15, "medium band pair " + i + " ratio " + ratio);
            }
        }
    }

    private static void check(Random rnd, int d, double theta, Llama3Scaling scaling, int[] bands) {
        Rope rope = new Rope(d, theta, scaling);
        assertEquals(d, rope.headDim());
        double[] freq = referenceFrequencies(d, theta, scaling, bands);
        int half = d / 2;
        for (int i = 0; i < half; i++) {
            assertEquals(freq[i], rope.frequency(i), 1e-12 * freq[i], "d=" + d + " θ=" + theta + " " + scaling + " frequency " + i);
        }
        for (int heads : new int[] {1, 3}) {
            for (int pos : POSITIONS) {
                int off = 5;
                float[] xv = gaussian(rnd, heads * d, 1, 0.1);
                float[] x = new float[off + xv.length + 4];
                Arrays.fill(x, SENTINEL);
                System.arraycopy(xv, 0, x, off, xv.length);
                rope.apply(x, off, heads, pos, new float[half], new float[half]);
                String where = "d=" + d + " θ=" + theta + " " + scaling + " heads=" + heads + " pos=" + pos;
                for (int h = 0; h < heads; h++) {
                    int b = h * d;
                    for (int i = 0; i < d; i++) {
                        int pair = i % half;
                        double a = pos * freq[pair];
                        double rotated = i < half ? -xv[b + i + half] : xv[b + i - half]; // rotate_half
                        double ref = xv[b + i] * Math.cos(a) + rotated * Math.sin(a);
                        double tol = 1e-6 * (Math.abs(xv[b + i]) + Math.abs(rotated));
                        final int hh = h;
                        final int ii = i;
                        assertWithin(ref, x[off + b + i], tol, () -> where + " head " + hh + " [" + ii + "]");
                    }
                }
                assertUntouchedOutside(x, off, off + heads * d, SENTINEL, where + " x");
            }
        }
    }

    @Test
    void oddHeadDimIsRejected() {
        var e = assertThrows(IllegalArgumentException.class, () -> new Rope(7, 10_000, null));
        assertTrue(e.getMessage().contains("7"), e.getMessage());
    }
}
