package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The {@link SamplingParams.Controls} in the {@link Sampler}, against a plain double-precision
 * reference written here from the definitions (OpenAI's penalties, vLLM's repetition penalty, top-k,
 * min-p, min_tokens and their order), on random logits and histories at odd vocabulary sizes.
 */
class SamplerControlsTest {
    private static final int[] VOCABS = {37, 1001};
    private static final int[] EOS = {5, 11};

    // ---- the reference -------------------------------------------------------------------------

    /** The shaped logits: bias, the min_tokens mask, repetition, frequency and presence penalties. */
    static double[] refShape(float[] raw, int[] hist, int len, int promptLen, SamplingParams.Controls c, int[] eos) {
        int v = raw.length;
        double[] x = new double[v];
        for (int i = 0; i < v; i++) {
            x[i] = raw[i];
        }
        int[] bt = c.biasTokens();
        float[] bv = c.biasValues();
        for (int j = 0; j < bt.length; j++) {
            x[bt[j]] = x[bt[j]] + bv[j];
        }
        if (len - promptLen < c.minTokens()) {
            for (int t : c.stopTokenIds()) {
                x[t] = Double.NEGATIVE_INFINITY;
            }
            for (int t : eos) {
                x[t] = Double.NEGATIVE_INFINITY;
            }
        }
        Map<Integer, Integer> outputCounts = new HashMap<>();
        for (int i = promptLen; i < len; i++) {
            outputCounts.merge(hist[i], 1, Integer::sum);
        }
        boolean[] anywhere = new boolean[v];
        for (int i = 0; i < len; i++) {
            anywhere[hist[i]] = true;
        }
        for (int t = 0; t < v; t++) {
            if (anywhere[t]) {
                x[t] = x[t] > 0 ? x[t] / c.repetitionPenalty() : x[t] * c.repetitionPenalty();
            }
        }
        for (int t = 0; t < v; t++) {
            int n = outputCounts.getOrDefault(t, 0);
            x[t] -= c.frequencyPenalty() * n + c.presencePenalty() * (n > 0 ? 1 : 0);
        }
        return x;
    }

    /** The distribution sampled from: softmax at the temperature, then min-p, top-k, top-p, each renormalised. */
    static double[] refDistribution(double[] x, SamplingParams p) {
        int v = x.length;
        double max = Arrays.stream(x).max().getAsDouble();
        double[] q = new double[v];
        double z = 0;
        for (int i = 0; i < v; i++) {
            q[i] = Math.exp((x[i] - max) / p.temperature());
            z += q[i];
        }
        for (int i = 0; i < v; i++) {
            q[i] /= z;
        }
        double top = Arrays.stream(q).max().getAsDouble();
        for (int i = 0; i < v; i++) {
            if (q[i] < p.controls().minP() * top) {
                q[i] = 0;
            }
        }
        normalise(q);
        Integer[] byProb = new Integer[v];
        for (int i = 0; i < v; i++) {
            byProb[i] = i;
        }
        Arrays.sort(byProb, (a, b) -> Double.compare(q[b], q[a]));
        int k = p.controls().topK();
        if (k > 0 && k < v) {
            double kth = q[byProb[k - 1]];
            for (int i = 0; i < v; i++) {
                if (q[i] < kth) {
                    q[i] = 0;
                }
            }
            normalise(q);
        }
        if (p.topP() < 1) {
            double cum = 0;
            boolean[] keep = new boolean[v];
            for (int j = 0; j < v && cum < p.topP(); j++) {
                keep[byProb[j]] = true;
                cum += q[byProb[j]];
            }
            for (int i = 0; i < v; i++) {
                if (!keep[i]) {
                    q[i] = 0;
                }
            }
            normalise(q);
        }
        return q;
    }

    private static void normalise(double[] q) {
        double s = Arrays.stream(q).sum();
        for (int i = 0; i < q.length; i++) {
            q[i] /= s;
        }
    }

    private static int refArgmax(double[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) {
            if (x[i] > x[best]) {
                best = i;
            }
        }
        return best;
    }

    // ---- random cases --------------------------------------------------------------------------

    private static float[] logits(Random r, int v) {
        float[] l = new float[v];
        for (int i = 0; i < v; i++) {
            float x;
            do {
                x = (float) (r.nextGaussian() * 2.5 + 0.2);
            } while (x == 0f);
            l[i] = x;
        }
        return l;
    }

    /** A history whose tokens repeat (drawn from a few dozen), so that counts exceed 1. */
    private static int[] history(Random r, int v, int len) {
        int[] pool = new int[Math.min(v, 23)];
        for (int i = 0; i < pool.length; i++) {
            pool[i] = r.nextInt(v);
        }
        int[] h = new int[len + 8]; // room beyond len, never read
        for (int i = 0; i < h.length; i++) {
            h[i] = pool[r.nextInt(pool.length)];
        }
        return h;
    }

    private static SamplingParams.Controls randomControls(Random r, int v, int minTokens) {
        int nb = 1 + r.nextInt(6);
        int[] bt = new int[nb];
        float[] bv = new float[nb];
        for (int j = 0; j < nb; j++) {
            int t;
            do {
                t = r.nextInt(v);
            } while (contains(bt, j, t));
            bt[j] = t;
            bv[j] = (float) ((r.nextDouble() * 2 - 1) * (r.nextBoolean() ? 5 : 100));
        }
        int[] stops = {r.nextInt(v), r.nextInt(v)};
        double rep = r.nextBoolean() ? 0.5 + r.nextDouble() * 1.5 : 1;
        return new SamplingParams.Controls(bt, bv, r.nextDouble() * 4 - 2, r.nextDouble() * 4 - 2, rep,
            r.nextBoolean() ? 0 : 1 + r.nextInt(Math.min(v, 50)), r.nextBoolean() ? 0 : r.nextDouble() * 0.3, minTokens,
            false, stops, 0);
    }

    private static boolean contains(int[] a, int n, int x) {
        for (int i = 0; i < n; i++) {
            if (a[i] == x) {
                return true;
            }
        }
        return false;
    }

    // ---- the tests -----------------------------------------------------------------------------

    @Test
    void greedyTakesTheArgmaxOfTheShapedLogits() {
        Random r = new Random(11);
        for (int v : VOCABS) {
            for (int trial = 0; trial < 300; trial++) {
                float[] raw = logits(r, v);
                int promptLen = 1 + r.nextInt(20);
                int len = promptLen + r.nextInt(30);
                int[] hist = history(r, v, len);
                SamplingParams.Controls c = randomControls(r, v, r.nextInt(4) == 0 ? len - promptLen + 1 : 0);
                SamplingParams p = new SamplingParams(0, 1, 0, 100, -1, c);
                float[] copy = raw.clone();
                int got = new Sampler(p, EOS).sample(raw, 0, v, hist, len, promptLen);
                assertTrue(Arrays.equals(copy, raw), "the logits row is not modified");
                assertEquals(refArgmax(refShape(raw, hist, len, promptLen, c, EOS)), got, "vocab " + v + ", trial " + trial + ", " + c);
            }
        }
    }

    @Test
    void eachTransformAloneMatchesTheReferenceDistribution() {
        Random r = new Random(12);
        for (int v : VOCABS) {
            float[] raw = logits(r, v);
            int promptLen = 9;
            int len = 30;
            int[] hist = history(r, v, len);
            List<SamplingParams.Controls> one = new ArrayList<>();
            one.add(new SamplingParams.Controls(new int[] {3, v - 1}, new float[] {7.5f, -3.25f}, 0, 0, 1, 0, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 1.5, 0, 1, 0, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, -1.25, 1, 0, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1.7, 0, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, 0, 0.6, 0, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1, 7, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1, 1, 0, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1, 0, 0.05, 0, false, new int[0], 0));
            one.add(new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1, 0, 0, 100, false, new int[] {hist[0], 7}, 0));
            for (SamplingParams.Controls c : one) {
                for (double temperature : new double[] {0.35, 1, 1.8}) {
                    SamplingParams p = new SamplingParams(temperature, 1, 3, 200, -1, c);
                    checkDistribution(p, raw, hist, len, promptLen, "vocab " + v + ", T " + temperature + ", " + c);
                }
            }
        }
    }

    @Test
    void theWholeChainMatchesTheReferenceDistribution() {
        Random r = new Random(13);
        for (int v : VOCABS) {
            for (int trial = 0; trial < 120; trial++) {
                float[] raw = logits(r, v);
                int promptLen = 1 + r.nextInt(20);
                int len = promptLen + r.nextInt(30);
                int[] hist = history(r, v, len);
                SamplingParams.Controls c = randomControls(r, v, r.nextInt(3) == 0 ? len - promptLen + 2 : 0);
                double topP = r.nextBoolean() ? 1 : 0.3 + r.nextDouble() * 0.7;
                SamplingParams p = new SamplingParams(0.2 + r.nextDouble() * 1.5, topP, trial, 100, -1, c);
                checkDistribution(p, raw, hist, len, promptLen, "vocab " + v + ", trial " + trial + ", " + p);
            }
        }
    }

    private static void checkDistribution(SamplingParams p, float[] raw, int[] hist, int len, int promptLen, String what) {
        double[] want = refDistribution(refShape(raw, hist, len, promptLen, p.controls(), EOS), p);
        double[] got = new Sampler(p, EOS).distribution(raw, 0, raw.length, hist, len, promptLen);
        for (int i = 0; i < raw.length; i++) {
            // the support: a token kept has a reference probability; one the reference keeps is kept, unless its
            // probability is below what a float holds (a -100 bias at a low temperature: e^-130)
            if (got[i] > 0) {
                assertTrue(want[i] > 0, what + ": token " + i + " is out of the reference's support");
            } else {
                assertTrue(want[i] < 1e-30, what + ": token " + i + " is in the reference's support, p = " + want[i]);
            }
            assertEquals(want[i], got[i], 1e-6, what + ": token " + i);
        }
    }

    @Test
    void sampledTokensFollowTheDistribution() {
        Random r = new Random(14);
        int v = 37;
        float[] raw = logits(r, v);
        int[] hist = history(r, v, 20);
        SamplingParams.Controls c = new SamplingParams.Controls(new int[] {4}, new float[] {2f}, 0.4, 0.3, 1.3, 12, 0.02, 0, false,
            new int[0], 0);
        SamplingParams p = new SamplingParams(0.9, 0.9, 99, 100, -1, c);
        double[] want = refDistribution(refShape(raw, hist, 20, 6, c, EOS), p);
        int draws = 40_000;
        double[] freq = new double[v];
        for (int seed = 0; seed < draws; seed++) {
            SamplingParams ps = new SamplingParams(0.9, 0.9, seed * 7919L, 100, -1, c);
            int t = new Sampler(ps, EOS).sample(raw, 0, v, hist, 20, 6);
            assertTrue(want[t] > 0, "token " + t + " has probability 0");
            freq[t] += 1.0 / draws;
        }
        for (int i = 0; i < v; i++) {
            assertEquals(want[i], freq[i], 0.012, "token " + i);
        }
    }

    @Test
    void minTokensMasksEosAndStopTokensUntilReached() {
        float[] raw = logits(new Random(15), 37);
        int stop = 20;
        SamplingParams.Controls c = new SamplingParams.Controls(new int[] {EOS[0], stop}, new float[] {60, 80}, 0, 0, 1, 0, 0, 3, false,
            new int[] {stop}, 0);
        int[] hist = new int[16];
        for (int generated = 0; generated < 5; generated++) {
            int want = generated < 3 ? refArgmax(refShape(raw, hist, 4 + generated, 4, c, EOS)) : stop;
            int got = new Sampler(new SamplingParams(0, 1, 0, 10, -1, c), EOS).sample(raw, 0, 37, hist, 4 + generated, 4);
            assertEquals(want, got, "after " + generated + " generated");
            if (generated < 3) {
                assertNotEquals(stop, got);
                assertNotEquals(EOS[0], got);
            }
        }
    }

    @Test
    void aResumedSequenceSamplesWhatItWouldHaveSampled() {
        Random r = new Random(16);
        int v = 1001;
        // logits that depend on the last token: a toy model, so that the history matters
        float[][] table = new float[v][];
        SamplingParams.Controls c = new SamplingParams.Controls(new int[] {1}, new float[] {1.5f}, 0.7, 0.9, 1.4, 40, 0.01, 6, false,
            new int[] {EOS[1]}, 0);
        SamplingParams p = new SamplingParams(0.8, 0.95, 1234, 40, -1, c);
        int promptLen = 7;
        int[] seq = new int[promptLen + 40];
        for (int i = 0; i < promptLen; i++) {
            seq[i] = r.nextInt(v);
        }
        Sampler whole = new Sampler(p, EOS);
        for (int len = promptLen; len < seq.length; len++) {
            float[] l = table[seq[len - 1]] != null ? table[seq[len - 1]] : (table[seq[len - 1]] = logits(r, v));
            seq[len] = whole.sample(l, 0, v, seq, len, promptLen);
        }
        for (int n : new int[] {1, 5, 17}) { // moved after n tokens: they end its prompt now
            SamplingParams q = p.resumedAfter(n);
            assertEquals(p.maxTokens() - n, q.maxTokens());
            Sampler resumed = new Sampler(q, EOS);
            for (int len = promptLen + n; len < seq.length; len++) {
                assertEquals(seq[len], resumed.sample(table[seq[len - 1]], 0, v, seq, len, promptLen + n), "resumed after " + n + ", at " + len);
            }
        }
        Sampler again = new Sampler(p, EOS); // recomputed after a preemption: a fresh sampler, the same tokens
        for (int len = promptLen; len < seq.length; len++) {
            assertEquals(seq[len], again.sample(table[seq[len - 1]], 0, v, seq, len, promptLen));
        }
    }

    @Test
    void endsOnEosUnlessIgnoredAndOnStopTokens() {
        ModelConfig cfg = RandomModels.config(16, 32, 1, 2, 2, 37);
        int eos = cfg.eosTokenIds()[0];
        SamplingParams plain = SamplingParams.greedy(4);
        SamplingParams ignore = new SamplingParams(0, 1, 0, 4, -1,
            new SamplingParams.Controls(new int[0], new float[0], 0, 0, 1, 0, 0, 0, true, new int[] {3}, 0));
        assertTrue(plain.ends(eos, cfg));
        assertTrue(!ignore.ends(eos, cfg));
        assertTrue(ignore.ends(3, cfg));
        assertTrue(!plain.ends(3, cfg) || cfg.isEos(3));
    }

    @Test
    void controlsRefuseOutOfRangeValues() {
        assertThrows(IllegalArgumentException.class, () -> controls(new int[] {1}, new float[] {101}, 0, 0, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[] {1, 1}, new float[] {1, 2}, 0, 0, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[0], new float[0], 2.5, 0, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[0], new float[0], 0, -2.5, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[0], new float[0], 0, 0, 0, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[0], new float[0], 0, 0, 1, -1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[0], new float[0], 0, 0, 1, 0, 1.5, 0));
        assertThrows(IllegalArgumentException.class, () -> controls(new int[0], new float[0], 0, 0, 1, 0, 0, -1));
        assertThrows(IllegalArgumentException.class,
            () -> new SamplingParams(1, 1, 0, 3, -1, controls(new int[0], new float[0], 0, 0, 1, 0, 0, 4)), "min_tokens > max_tokens");
        assertThrows(IllegalArgumentException.class, () -> controls(new int[] {37}, new float[] {1}, 0, 0, 1, 0, 0, 0).checkVocabulary(37));
    }

    private static SamplingParams.Controls controls(int[] bt, float[] bv, double presence, double frequency, double rep, int topK,
                                                    double minP, int minTokens) {
        return new SamplingParams.Controls(bt, bv, presence, frequency, rep, topK, minP, minTokens, false, new int[0], 0);
    }
}
