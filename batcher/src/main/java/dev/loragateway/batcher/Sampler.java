package dev.loragateway.batcher;

/**
 * Picks tokens from logits: greedy (temperature 0), temperature, and top-p (nucleus) sampling,
 * seeded per request, and reports log-probabilities of the chosen token and the top k.
 * Log-probabilities are those of the model's own distribution (log-softmax of the raw logits),
 * as vLLM and OpenAI report them, whatever the temperature.
 *
 * <p>Non-finite logits mean the same on every path (greedy, temperature, top-p, log-probabilities):
 * <ul>
 *   <li>NaN is -∞: that token has probability 0 and is never chosen;
 *   <li>+∞ tokens share all the probability equally (softmax's limit as their logits grow): greedy
 *       takes the first of them, sampling one of them uniformly (top-p: one of a nucleus of
 *       {@code ceil(top_p · count)} of them, as for any tie);
 *   <li>a row with no token above -∞ (all NaN or -∞) has no distribution: {@link #sample} throws
 *       {@link NonFiniteLogitsException}, which fails that sequence alone. It never returns a token
 *       outside {@code [0, vocab)}.
 * </ul>
 * Reported log-probabilities are at least {@link #LOGPROB_FLOOR}, as vLLM reports them, so that
 * every one is a finite JSON number.
 *
 * <p>Randomness is a function of (seed, position) only: the uniform number that picks the token at
 * position {@code p} of a sequence (its index among prompt and generated tokens) is a hash of the
 * seed and {@code p}, not the next draw of a stream. So a sequence recomputed after preemption, or
 * resumed on another node from its prompt plus the tokens it had already produced, samples exactly
 * the tokens it would have sampled where it was. Each choice of a request has its own seed
 * (the request's seed + the choice's index).
 *
 * <p>One sampler per sequence; it reuses its scratch arrays across steps.
 */
public final class Sampler {
    /** The lowest log-probability reported (vLLM's clamp), standing for -∞ too. */
    public static final float LOGPROB_FLOOR = -9999f;

    /** The chosen token's log-probability and, when asked, the top alternatives (best first). */
    public record Logprobs(int token, float logprob, int[] topTokens, float[] topLogprobs) {
    }

    private final SamplingParams params;
    /** Positions drawn by {@link #sample(float[], int, int)}, which numbers its calls itself. */
    private int draws;
    private float[] probs = new float[0];
    private int[] order = new int[0];

    public Sampler(SamplingParams params) {
        this.params = params;
    }

    /** {@link #sample(float[], int, int, int)} at positions 0, 1, 2, ... of this sampler's calls. */
    public int sample(float[] logits, int off, int vocab) {
        return sample(logits, off, vocab, draws++);
    }

    /**
     * Chooses the token at {@code position} of the sequence from {@code logits[off..off+vocab)}
     * (not modified); the same seed, position and logits always give the same token.
     *
     * @throws NonFiniteLogitsException when no logit is above -∞ (all NaN or -∞)
     */
    public int sample(float[] logits, int off, int vocab, int position) {
        if (params.isGreedy()) {
            return argmax(logits, off, vocab);
        }
        if (probs.length < vocab) {
            probs = new float[vocab];
            order = new int[vocab];
        }
        float max = rowMax(logits, off, vocab);
        if (max == Float.NEGATIVE_INFINITY) {
            throw new NonFiniteLogitsException(vocab);
        }
        boolean infinite = max == Float.POSITIVE_INFINITY;
        double temperature = params.temperature();
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            float x = logits[off + i];
            float p;
            if (infinite) {
                p = x == Float.POSITIVE_INFINITY ? 1f : 0f;
            } else if (x > Float.NEGATIVE_INFINITY) { // false for NaN
                // in double: a finite difference cannot overflow, and dividing (not multiplying by 1/T)
                // keeps 0 / T at 0 for the tiniest T
                p = (float) Math.exp(((double) x - max) / temperature);
            } else {
                p = 0f;
            }
            probs[i] = p;
            sum += p;
        }
        // sum >= 1: the largest logit contributes exp(0) (or 1 for +∞)
        if (params.topP() >= 1) {
            double u = uniform(params.seed(), position) * sum;
            double acc = 0;
            for (int i = 0; i < vocab; i++) {
                acc += probs[i];
                if (acc > u) {
                    return i;
                }
            }
            return argmax(logits, off, vocab); // rounding left u unreached: the most likely token
        }
        return sampleTopP(vocab, sum, uniform(params.seed(), position));
    }

    /**
     * A uniform number in [0, 1) that depends only on {@code seed} and {@code position}: the
     * SplitMix64 finaliser (Steele, Lea and Flood's mixing constants) of the seed advanced by
     * {@code position + 1} golden-ratio steps, its top 53 bits as a double.
     */
    static double uniform(long seed, int position) {
        long z = seed + (position + 1L) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z ^= z >>> 31;
        return (z >>> 11) * 0x1.0p-53;
    }

    /** The largest logit that is not NaN (NaN compares false), or -∞ when there is none. */
    private static float rowMax(float[] logits, int off, int vocab) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            if (logits[off + i] > max) {
                max = logits[off + i];
            }
        }
        return max;
    }

    /** Nucleus: the smallest set of most likely tokens whose mass reaches top_p, renormalised. */
    private int sampleTopP(int vocab, double sum, double uniform) {
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
        double u = uniform * mass;
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

    /**
     * Log-probability of {@code token} and the {@code k} most likely tokens (ties: lower index
     * first), from raw logits, with the class's meaning of NaN and ±∞; each at least
     * {@link #LOGPROB_FLOOR}.
     */
    public static Logprobs logprobs(float[] logits, int off, int vocab, int token, int k) {
        float max = rowMax(logits, off, vocab);
        double logZ;
        if (max == Float.POSITIVE_INFINITY) {
            int count = 0;
            for (int i = 0; i < vocab; i++) {
                if (logits[off + i] == Float.POSITIVE_INFINITY) {
                    count++;
                }
            }
            logZ = Math.log(count); // each +∞ token has probability 1/count
        } else if (max == Float.NEGATIVE_INFINITY) {
            logZ = 0; // no distribution: every token is reported at the floor
        } else {
            double sum = 0;
            for (int i = 0; i < vocab; i++) {
                float x = logits[off + i];
                if (x > Float.NEGATIVE_INFINITY) { // NaN and -∞ add nothing
                    sum += Math.exp((double) x - max);
                }
            }
            logZ = max + Math.log(sum);
        }
        int kk = Math.max(0, Math.min(k, vocab));
        int[] top = new int[kk];
        float[] topLp = new float[kk];
        for (int j = 0; j < kk; j++) {
            int best = -1;
            for (int i = 0; i < vocab; i++) {
                if (contains(top, j, i)) {
                    continue;
                }
                if (best < 0 || key(logits[off + i]) > key(logits[off + best])) {
                    best = i;
                }
            }
            top[j] = best;
            topLp[j] = logprob(logits[off + best], max, logZ);
        }
        return new Logprobs(token, logprob(logits[off + token], max, logZ), top, topLp);
    }

    /** A logit's log-probability given the row's largest logit and log-normaliser, floored. */
    private static float logprob(float x, float max, double logZ) {
        double lp;
        if (max == Float.POSITIVE_INFINITY) {
            lp = x == Float.POSITIVE_INFINITY ? -logZ : Double.NEGATIVE_INFINITY;
        } else if (x > Float.NEGATIVE_INFINITY && max > Float.NEGATIVE_INFINITY) {
            lp = x - logZ;
        } else {
            lp = Double.NEGATIVE_INFINITY; // NaN, -∞, or a row without a distribution
        }
        return (float) Math.max(lp, LOGPROB_FLOOR);
    }

    /** The order of logits: NaN ranks with -∞. */
    private static float key(float x) {
        return Float.isNaN(x) ? Float.NEGATIVE_INFINITY : x;
    }

    private static boolean contains(int[] a, int n, int v) {
        for (int i = 0; i < n; i++) {
            if (a[i] == v) {
                return true;
            }
        }
        return false;
    }

    /**
     * The first index of the largest logit, NaN never chosen.
     *
     * @throws NonFiniteLogitsException when no logit is above -∞
     */
    static int argmax(float[] x, int off, int n) {
        int best = -1;
        float bestValue = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            if (x[off + i] > bestValue) { // false for NaN, and for -∞ against -∞
                bestValue = x[off + i];
                best = i;
            }
        }
        if (best < 0) {
            throw new NonFiniteLogitsException(n);
        }
        return best;
    }
}
