package dev.loragateway.batcher;

import java.util.SplittableRandom;

/**
 * Picks tokens from logits: greedy (temperature 0), temperature, and top-p (nucleus) sampling,
 * seeded per request, and reports log-probabilities of the chosen token and the top k.
 * Log-probabilities are those of the model's own distribution (log-softmax of the raw logits),
 * as vLLM and OpenAI report them, whatever the temperature.
 *
 * <p>One sampler per sequence; it reuses its scratch arrays across steps.
 */
public final class Sampler {
    /** The chosen token's log-probability and, when asked, the top alternatives (best first). */
    public record Logprobs(int token, float logprob, int[] topTokens, float[] topLogprobs) {
    }

    private final SamplingParams params;
    private final SplittableRandom random;
    private float[] probs = new float[0];
    private int[] order = new int[0];

    public Sampler(SamplingParams params) {
        this.params = params;
        this.random = new SplittableRandom(params.seed());
    }

    /** Chooses the next token from {@code logits[off..off+vocab)} (not modified). */
    public int sample(float[] logits, int off, int vocab) {
        if (params.isGreedy()) {
            return argmax(logits, off, vocab);
        }
        if (probs.length < vocab) {
            probs = new float[vocab];
            order = new int[vocab];
        }
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            max = Math.max(max, logits[off + i]);
        }
        double inv = 1.0 / params.temperature();
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            float p = (float) Math.exp((logits[off + i] - max) * inv);
            probs[i] = p;
            sum += p;
        }
        if (params.topP() >= 1) {
            double u = random.nextDouble() * sum;
            double acc = 0;
            for (int i = 0; i < vocab; i++) {
                acc += probs[i];
                if (acc > u) {
                    return i;
                }
            }
            return argmax(logits, off, vocab);
        }
        return sampleTopP(vocab, sum);
    }

    /** Nucleus: the smallest set of most likely tokens whose mass reaches top_p, renormalised. */
    private int sampleTopP(int vocab, double sum) {
        int n = 0;
        double threshold = params.topP() * sum;
        // candidates in descending probability; a partial selection stops once the mass is reached
        for (int i = 0; i < vocab; i++) {
            order[i] = i;
        }
        double mass = 0;
        while (mass < threshold && n < vocab) {
            int best = n;
            for (int i = n + 1; i < vocab; i++) {
                if (probs[order[i]] > probs[order[best]]) {
                    best = i;
                }
            }
            int t = order[n];
            order[n] = order[best];
            order[best] = t;
            mass += probs[order[n]];
            n++;
            if (n > 64 && mass < threshold) { // long tail: finish with a full sort of the rest
                sortDescending(n, vocab);
                while (mass < threshold && n < vocab) {
                    mass += probs[order[n]];
                    n++;
                }
            }
        }
        double u = random.nextDouble() * mass;
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += probs[order[i]];
            if (acc > u) {
                return order[i];
            }
        }
        return order[n - 1];
    }

    private void sortDescending(int from, int to) {
        Integer[] boxed = new Integer[to - from];
        for (int i = from; i < to; i++) {
            boxed[i - from] = order[i];
        }
        java.util.Arrays.sort(boxed, (a, b) -> Float.compare(probs[b], probs[a]));
        for (int i = from; i < to; i++) {
            order[i] = boxed[i - from];
        }
    }

    /** Log-probability of {@code token} and the {@code k} most likely tokens, from raw logits. */
    public static Logprobs logprobs(float[] logits, int off, int vocab, int token, int k) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            max = Math.max(max, logits[off + i]);
        }
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            sum += Math.exp(logits[off + i] - max);
        }
        float logZ = (float) (max + Math.log(sum));
        int kk = Math.max(0, Math.min(k, vocab));
        int[] top = new int[kk];
        float[] topLp = new float[kk];
        for (int j = 0; j < kk; j++) {
            int best = -1;
            for (int i = 0; i < vocab; i++) {
                if (contains(top, j, i)) {
                    continue;
                }
                if (best < 0 || logits[off + i] > logits[off + best]) {
                    best = i;
                }
            }
            top[j] = best;
            topLp[j] = logits[off + best] - logZ;
        }
        return new Logprobs(token, logits[off + token] - logZ, top, topLp);
    }

    private static boolean contains(int[] a, int n, int v) {
        for (int i = 0; i < n; i++) {
            if (a[i] == v) {
                return true;
            }
        }
        return false;
    }

    static int argmax(float[] x, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (x[off + i] > x[off + best]) {
                best = i;
            }
        }
        return best;
    }
}
