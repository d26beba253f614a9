package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import static dev.loragateway.kernels.Fixtures.assertUntouchedOutside;
import static dev.loragateway.kernels.Fixtures.assertWithin;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link Attention#attend} against {@code softmax(q·k/√d)·v} in double, query head h reading
 * key/value head {@code h / (heads / kvHeads)}, over positions {@code [from, len)}.
 *
 * <p>Tolerance: a score is a float dot product (error ≤ δ = 1e-5·Σ|q·k|/√d + 1e-6, as for
 * matmul); an error δ in the scores moves each weight p_t by at most 2δ relatively, and the
 * weighted sum adds float rounding: {@code |Δout| ≤ (2·δmax + 1e-5)·Σ_t p_t·|v_t| + 1e-6}.
 */
class AttentionTest {
    static final int[][] HEADS = {{4, 4}, {6, 2}, {8, 1}};
    static final int[] HEAD_DIMS = {8, 12, 64};
    static final float SENTINEL = -4242.5f;

    @Test
    void matchesReferenceFromTheStart() {
        Random rnd = new Random(1);
        for (int[] hk : HEADS) {
            for (int d : HEAD_DIMS) {
                for (int len : new int[] {1, 2, 33}) {
                    check(rnd, hk[0], hk[1], d, 0, len, 0, 0, 0);
                }
            }
        }
    }

    @Test
    void slidingWindowStartsAtFrom() {
        Random rnd = new Random(2);
        for (int[] hk : HEADS) {
            for (int d : HEAD_DIMS) {
                check(rnd, hk[0], hk[1], d, 1, 2, 0, 0, 0);
                check(rnd, hk[0], hk[1], d, 28, 33, 0, 0, 0); // window of 5
                check(rnd, hk[0], hk[1], d, 32, 33, 0, 0, 0); // window of 1: out = v[32]
            }
        }
    }

    @Test
    void offsetsIntoQueryOutputAndScores() {
        Random rnd = new Random(3);
        for (int[] hk : HEADS) {
            for (int d : HEAD_DIMS) {
                check(rnd, hk[0], hk[1], d, 0, 33, 7, 11, 13);
                check(rnd, hk[0], hk[1], d, 3, 17, 1, 5, 40);
            }
        }
    }

    private static void check(Random rnd, int heads, int kvHeads, int d, int from, int len, int qo, int oo, int so) {
        int kvDim = kvHeads * d;
        int capacity = len + 3; // a cache holds more positions than are attended to
        float[] q = new float[qo + heads * d + 2];
        Arrays.fill(q, SENTINEL);
        System.arraycopy(gaussian(rnd, heads * d, 1, 0.1), 0, q, qo, heads * d);
        float[] keys = gaussian(rnd, capacity * kvDim, 1, -0.1);
        float[] values = gaussian(rnd, capacity * kvDim, 1, 0.2);
        float[] qBefore = q.clone();
        float[] out = new float[oo + heads * d + 3];
        Arrays.fill(out, SENTINEL);
        float[] scores = new float[so + (len - from) + 4];
        Arrays.fill(scores, SENTINEL);

        Attention.attend(q, qo, heads, kvHeads, d, keys, values, from, len, out, oo, scores, so);

        String where = "heads=" + heads + " kvHeads=" + kvHeads + " d=" + d + " from=" + from + " len=" + len
            + " qo=" + qo + " oo=" + oo + " so=" + so;
        int group = heads / kvHeads;
        for (int h = 0; h < heads; h++) {
            int g = h / group;
            int n = len - from;
            double[] s = new double[n];
            double deltaMax = 0;
            double max = Double.NEGATIVE_INFINITY;
            for (int t = from; t < len; t++) {
                double dot = 0;
                double mag = 0;
                for (int i = 0; i < d; i++) {
                    double p = (double) q[qo + h * d + i] * keys[t * kvDim + g * d + i];
                    dot += p;
                    mag += Math.abs(p);
                }
                s[t - from] = dot / Math.sqrt(d);
                deltaMax = Math.max(deltaMax, 1e-5 * mag / Math.sqrt(d) + 1e-6);
                max = Math.max(max, s[t - from]);
            }
            double sum = 0;
            for (int t = 0; t < n; t++) {
                s[t] = Math.exp(s[t] - max);
                sum += s[t];
            }
            for (int i = 0; i < d; i++) {
                double ref = 0;
                double mag = 0;
                for (int t = from; t < len; t++) {
                    double p = s[t - from] / sum;
                    double v = values[t * kvDim + g * d + i];
                    ref += p * v;
                    mag += p * Math.abs(v);
                }
                final int hh = h;
                final int ii = i;
                assertWithin(ref, out[oo + h * d + i], (2 * deltaMax + 1e-5) * mag + 1e-6, () -> where + " out head " + hh + " [" + ii + "]");
            }
        }
        assertUntouchedOutside(out, oo, oo + heads * d, SENTINEL, where + " out");
        assertUntouchedOutside(scores, so, so + len - from, SENTINEL, where + " scores");
        assertArrayEquals(qBefore, q, where + ": q must not be modified");
    }

    /**
     * Paged attention reads position t from block {@code table[t / bs]}: a history scattered over
     * shuffled blocks of a larger pool (other blocks filled with noise) gives exactly the output of
     * the same history laid out contiguously, which {@link #check} holds to the double reference.
     */
    @Test
    void pagedHistoryEqualsContiguous() {
        Random rnd = new Random(4);
        for (int[] hk : HEADS) {
            for (int d : new int[] {8, 12}) {
                for (int bs : new int[] {1, 3, 16}) {
                    for (int len : new int[] {1, bs, bs + 1, 37}) {
                        int kvDim = hk[1] * d;
                        int blocks = (len + bs - 1) / bs;
                        int poolBlocks = blocks * 2 + 3;
                        float[] keys = gaussian(rnd, poolBlocks * bs * kvDim, 1, 0.05);
                        float[] values = gaussian(rnd, poolBlocks * bs * kvDim, 1, -0.1);
                        java.util.List<Integer> ids = new java.util.ArrayList<>();
                        for (int b = 0; b < poolBlocks; b++) {
                            ids.add(b);
                        }
                        java.util.Collections.shuffle(ids, rnd);
                        int[] table = new int[blocks];
                        for (int b = 0; b < blocks; b++) {
                            table[b] = ids.get(b);
                        }
                        float[] ck = new float[len * kvDim];
                        float[] cv = new float[len * kvDim];
                        for (int t = 0; t < len; t++) {
                            int at = (table[t / bs] * bs + t % bs) * kvDim;
                            System.arraycopy(keys, at, ck, t * kvDim, kvDim);
                            System.arraycopy(values, at, cv, t * kvDim, kvDim);
                        }
                        float[] q = gaussian(rnd, hk[0] * d, 1, 0.1);
                        int from = len > 4 ? 2 : 0;
                        float[] want = new float[hk[0] * d];
                        float[] got = new float[hk[0] * d];
                        Attention.attend(q, 0, hk[0], hk[1], d, ck, cv, from, len, want, 0, new float[len], 0);
                        Attention.attend(q, 0, hk[0], hk[1], d, keys, values, table, bs, from, len, got, 0, new float[len], 0);
                        assertArrayEquals(want, got, "heads " + hk[0] + "/" + hk[1] + " d=" + d + " bs=" + bs + " len=" + len);
                    }
                }
            }
        }
    }

    @Test
    void headsNotAMultipleOfKvHeadsAreRejected() {
        float[] x = new float[64];
        var e = assertThrows(IllegalArgumentException.class,
            () -> Attention.attend(x, 0, 6, 4, 4, x, x, 0, 1, new float[24], 0, new float[4], 0));
        assertTrue(e.getMessage().contains("6") && e.getMessage().contains("4"), e.getMessage());
    }
}
