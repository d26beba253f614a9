package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
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
}
