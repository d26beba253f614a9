package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SamplerTest {
    private static float[] randomLogits(Random r, int n) {
        float[] l = new float[n];
        for (int i = 0; i < n; i++) {
            l[i] = (float) (r.nextGaussian() * 2 + 0.3);
        }
        return l;
    }

    @Test
    void greedyPicksArgmax() {
        Random r = new Random(3);
        for (int n : new int[] {1, 7, 130}) {
            float[] l = randomLogits(r, n);
            int best = 0;
            for (int i = 1; i < n; i++) {
                if (l[i] > l[best]) {
                    best = i;
                }
            }
            assertEquals(best, new Sampler(SamplingParams.greedy(1)).sample(l, 0, n));
        }
    }

    @Test
    void sameSeedSameTokensDifferentSeedDifferentTokens() {
        float[] l = randomLogits(new Random(5), 50);
        int[] a = draw(new SamplingParams(1.0, 0.9, 42, 1, -1), l, 200);
        int[] b = draw(new SamplingParams(1.0, 0.9, 42, 1, -1), l, 200);
        int[] c = draw(new SamplingParams(1.0, 0.9, 43, 1, -1), l, 200);
        assertArrayEquals(a, b);
        assertNotEquals(java.util.Arrays.toString(a), java.util.Arrays.toString(c));
    }

    private static int[] draw(SamplingParams p, float[] l, int n) {
        Sampler s = new Sampler(p);
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = s.sample(l, 0, l.length);
        }
        return out;
    }

    @Test
    void temperatureSamplingFollowsTheDistribution() {
        float[] l = randomLogits(new Random(9), 6);
        double temp = 0.7;
        double[] p = new double[6];
        double z = 0;
        for (int i = 0; i < 6; i++) {
            p[i] = Math.exp(l[i] / temp);
            z += p[i];
        }
        int n = 60_000;
        int[] counts = new int[6];
        for (int t : draw(new SamplingParams(temp, 1.0, 7, 1, -1), l, n)) {
            counts[t]++;
        }
        for (int i = 0; i < 6; i++) {
            double expected = p[i] / z;
            double sd = Math.sqrt(expected * (1 - expected) / n);
            assertTrue(Math.abs(counts[i] / (double) n - expected) < 5 * sd + 1e-4,
                "token " + i + ": frequency " + counts[i] / (double) n + " vs probability " + expected);
        }
    }

    @Test
    void topPKeepsOnlyTheNucleus() {
        Random r = new Random(11);
        float[] l = randomLogits(r, 200);
        double topP = 0.5;
        // reference nucleus in double
        Integer[] idx = new Integer[200];
        double[] p = new double[200];
        double z = 0;
        for (int i = 0; i < 200; i++) {
            idx[i] = i;
            p[i] = Math.exp(l[i]);
            z += p[i];
        }
        java.util.Arrays.sort(idx, (a, b) -> Double.compare(p[b], p[a]));
        java.util.Set<Integer> nucleus = new java.util.HashSet<>();
        double mass = 0;
        for (int i = 0; i < 200 && mass < topP * z; i++) {
            nucleus.add(idx[i]);
            mass += p[idx[i]];
        }
        java.util.Set<Integer> seen = new java.util.HashSet<>();
        for (int t : draw(new SamplingParams(1.0, topP, 1, 1, -1), l, 20_000)) {
            assertTrue(nucleus.contains(t), "token " + t + " is outside the top-p nucleus " + nucleus);
            seen.add(t);
        }
        assertEquals(nucleus, seen, "every nucleus token is drawn eventually");
    }

    @Test
    void logprobsMatchLogSoftmaxInDouble() {
        Random r = new Random(13);
        float[] l = randomLogits(r, 101);
        double max = Double.NEGATIVE_INFINITY;
        for (float v : l) {
            max = Math.max(max, v);
        }
        double z = 0;
        for (float v : l) {
            z += Math.exp(v - max);
        }
        double logZ = max + Math.log(z);
        Sampler.Logprobs lp = Sampler.logprobs(l, 0, 101, 17, 5);
        assertEquals(l[17] - logZ, lp.logprob(), 1e-5);
        assertEquals(5, lp.topTokens().length);
        for (int j = 0; j < 5; j++) {
            assertEquals(l[lp.topTokens()[j]] - logZ, lp.topLogprobs()[j], 1e-5);
            if (j > 0) {
                assertTrue(lp.topLogprobs()[j] <= lp.topLogprobs()[j - 1]);
            }
        }
        int better = 0;
        for (float v : l) {
            if (v > l[lp.topTokens()[4]]) {
                better++;
            }
        }
        assertEquals(4, better, "exactly four tokens beat the fifth best");
    }

    @Test
    void badParametersAreRefusedByName() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new SamplingParams(-1, 1, 0, 1, -1))
            .getMessage().contains("temperature"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 0, 0, 1, -1))
            .getMessage().contains("top_p"));
    }

    // ---- non-finite logits (issue 12 item 7: NaN logits made sampleTopP index order[-1]) ----------

    /** Odd vocabulary sizes, 1 included, so no path relies on a multiple of a vector width. */
    private static final int[] ODD_VOCABS = {1, 3, 7, 31, 130, 257};

    /** Every sampling path: greedy, temperature over the whole distribution, and nuclei of several sizes. */
    private static List<SamplingParams> everyPath(long seed) {
        return List.of(SamplingParams.greedy(1), new SamplingParams(1.0, 1.0, seed, 1, -1), new SamplingParams(0.7, 0.95, seed, 1, -1),
            new SamplingParams(1.3, 0.5, seed, 1, -1), new SamplingParams(0.2, 0.01, seed, 1, -1));
    }

    /** {@code row} inside a larger array at offset 5, finite logits around it that a bad index would read. */
    private static float[] embedded(float[] row) {
        float[] all = new float[row.length + 9];
        Arrays.fill(all, 50f);
        System.arraycopy(row, 0, all, 5, row.length);
        return all;
    }

    @Test
    void nanRowWithTopPBelowOneIsRefusedNotAnArrayIndexOutOfBounds() {
        for (int n : ODD_VOCABS) {
            for (float[] row : new float[][] {filled(n, Float.NaN), filled(n, Float.NEGATIVE_INFINITY), nanAndMinusInfinity(n)}) {
                float[] all = embedded(row);
                for (SamplingParams p : everyPath(n)) {
                    NonFiniteLogitsException e = assertThrows(NonFiniteLogitsException.class, () -> new Sampler(p).sample(all, 5, n),
                        () -> "vocab " + n + ", " + p + ", row " + Arrays.toString(row));
                    assertTrue(e.getMessage().contains("no finite logit"), e.getMessage());
                }
            }
        }
    }

    @Test
    void nanLogitsAreNeverChosenOnAnyPath() {
        Random r = new Random(17);
        for (int n : ODD_VOCABS) {
            float[] row = randomLogits(r, n);
            int keep = r.nextInt(n); // one finite logit at least
            for (int i = 0; i < n; i++) {
                if (i != keep && r.nextInt(3) == 0) {
                    row[i] = Float.NaN;
                }
            }
            if (n > 1) {
                row[(keep + 1) % n] = Float.NaN; // a NaN right beside the kept one
            }
            float[] all = embedded(row);
            int best = -1;
            for (int i = 0; i < n; i++) {
                if (!Float.isNaN(row[i]) && (best < 0 || row[i] > row[best])) {
                    best = i;
                }
            }
            assertEquals(best, new Sampler(SamplingParams.greedy(1)).sample(all, 5, n), "greedy, vocab " + n);
            for (SamplingParams p : everyPath(n)) {
                Sampler s = new Sampler(p);
                for (int k = 0; k < 500; k++) {
                    int t = s.sample(all, 5, n);
                    assertTrue(t >= 0 && t < n, "token " + t + " outside the vocabulary of " + n);
                    assertFalse(Float.isNaN(row[t]), "vocab " + n + ", " + p + ": chose NaN token " + t);
                }
            }
        }
    }

    @Test
    void positiveInfinityTakesAllTheProbabilityShared() {
        for (int n : new int[] {7, 31, 257}) {
            float[] row = randomLogits(new Random(n), n);
            row[2] = Float.POSITIVE_INFINITY;
            row[n - 1] = Float.POSITIVE_INFINITY;
            row[3] = Float.NaN;
            float[] all = embedded(row);
            assertEquals(2, new Sampler(SamplingParams.greedy(1)).sample(all, 5, n), "greedy takes the first +inf");
            Set<Integer> seen = new HashSet<>();
            Sampler s = new Sampler(new SamplingParams(1.0, 1.0, 3, 1, -1));
            for (int k = 0; k < 400; k++) {
                int t = s.sample(all, 5, n);
                assertTrue(t == 2 || t == n - 1, "vocab " + n + ": token " + t + " is not one of the +inf ones");
                seen.add(t);
            }
            assertEquals(Set.of(2, n - 1), seen, "both +inf tokens are drawn");
            Sampler nucleus = new Sampler(new SamplingParams(0.5, 0.3, 4, 1, -1)); // ceil(0.3 * 2) = 1 token
            int first = nucleus.sample(all, 5, n);
            assertTrue(first == 2 || first == n - 1);
            for (int k = 0; k < 100; k++) {
                assertEquals(first, nucleus.sample(all, 5, n), "a top-p 0.3 nucleus of two equal tokens holds one");
            }
            Sampler.Logprobs lp = Sampler.logprobs(all, 5, n, 2, 3);
            assertEquals(-Math.log(2), lp.logprob(), 1e-6);
            assertArrayEquals(new int[] {2, n - 1, lp.topTokens()[2]}, lp.topTokens());
            assertEquals(Sampler.LOGPROB_FLOOR, lp.topLogprobs()[2]);
        }
    }

    @Test
    void minusInfinityTokensAreNeverChosenAndALoneFiniteOneAlwaysIs() {
        for (int n : ODD_VOCABS) {
            float[] row = filled(n, Float.NEGATIVE_INFINITY);
            int only = n / 2;
            row[only] = -3.5f;
            float[] all = embedded(row);
            for (SamplingParams p : everyPath(n)) {
                Sampler s = new Sampler(p);
                for (int k = 0; k < 50; k++) {
                    assertEquals(only, s.sample(all, 5, n), "vocab " + n + ", " + p);
                }
            }
            assertEquals(0f, Sampler.logprobs(all, 5, n, only, 0).logprob(), 1e-6);
        }
    }

    @Test
    void extremeFiniteLogitsAndATinyTemperatureGiveNoNaN() {
        float[] row = {-Float.MAX_VALUE, Float.MAX_VALUE, 0f, Float.MAX_VALUE / 2, -1f};
        float[] all = embedded(row);
        for (SamplingParams p : List.of(new SamplingParams(1.0, 0.5, 1, 1, -1), new SamplingParams(1e-310, 0.9, 1, 1, -1),
                new SamplingParams(1e-310, 1.0, 1, 1, -1), new SamplingParams(2.0, 1.0, 1, 1, -1))) {
            Sampler s = new Sampler(p);
            for (int k = 0; k < 50; k++) {
                assertEquals(1, s.sample(all, 5, row.length), p.toString()); // the others are exp(-huge) = 0 next to it
            }
        }
    }

    @Test
    void logprobsOfNonFiniteRowsAreFiniteJsonNumbers() {
        Random r = new Random(23);
        for (int n : ODD_VOCABS) {
            float[] row = randomLogits(r, n);
            for (int i = 0; i < n; i += 2) {
                row[i] = i % 4 == 0 ? Float.NaN : Float.NEGATIVE_INFINITY;
            }
            float[] all = embedded(row);
            for (int token = 0; token < n; token++) {
                Sampler.Logprobs lp = Sampler.logprobs(all, 5, n, token, Math.min(5, n));
                assertTrue(Float.isFinite(lp.logprob()) && lp.logprob() <= 0 && lp.logprob() >= Sampler.LOGPROB_FLOOR,
                    "vocab " + n + " token " + token + ": " + lp.logprob());
                if (!(row[token] > Float.NEGATIVE_INFINITY)) {
                    assertEquals(Sampler.LOGPROB_FLOOR, lp.logprob(), "a NaN or -inf token is reported at the floor");
                }
                for (int j = 0; j < lp.topTokens().length; j++) {
                    assertTrue(Float.isFinite(lp.topLogprobs()[j]));
                    if (j > 0) {
                        assertTrue(lp.topLogprobs()[j] <= lp.topLogprobs()[j - 1], "top alternatives best first");
                    }
                }
                if (n > 1) {
                    assertFalse(Float.isNaN(row[lp.topTokens()[0]]), "the best alternative is never a NaN token");
                }
            }
        }
    }

    private static float[] filled(int n, float v) {
        float[] a = new float[n];
        Arrays.fill(a, v);
        return a;
    }

    private static float[] nanAndMinusInfinity(int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = i % 2 == 0 ? Float.NaN : Float.NEGATIVE_INFINITY;
        }
        return a;
    }

    /**
     * Issue 14 (migration): the token at a position depends only on the seed and that position, not
     * on what the sampler drew before, so a stream resumed elsewhere from its tokens so far goes on
     * as it would have. Also the uniforms are uniform (a coarse histogram over 20,000 positions).
     */
    @Test
    void theTokenAtAPositionDependsOnlyOnSeedAndPosition() {
        float[] l = randomLogits(new Random(11), 37);
        for (SamplingParams p : List.of(new SamplingParams(0.8, 1, 7, 1, -1), new SamplingParams(1.3, 0.7, -3, 1, -1))) {
            Sampler sequential = new Sampler(p);
            int[] all = new int[300];
            for (int pos = 0; pos < all.length; pos++) {
                all[pos] = sequential.sample(l, 0, l.length, pos);
            }
            for (int start : new int[] {1, 17, 150, 299}) {
                Sampler resumed = new Sampler(p); // fresh, as on another node
                for (int pos = start; pos < all.length; pos++) {
                    assertEquals(all[pos], resumed.sample(l, 0, l.length, pos), p + ", resumed at " + start + ", position " + pos);
                }
            }
            assertEquals(all[42], new Sampler(p).sample(l, 0, l.length, 42), "one draw alone");
        }
        int[] bins = new int[10];
        for (int pos = 0; pos < 20_000; pos++) {
            double u = Sampler.uniform(12345, pos);
            assertTrue(u >= 0 && u < 1, "uniform " + u);
            bins[(int) (u * 10)]++;
        }
        for (int b : bins) {
            assertTrue(Math.abs(b - 2000) < 200, "histogram of uniforms " + java.util.Arrays.toString(bins));
        }
    }
}
