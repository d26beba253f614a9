package dev.loragateway.batcher;

/**
 * Picks tokens from logits: greedy (temperature 0), temperature, top-k, min-p and top-p (nucleus)
 * sampling, seeded per request, after the logits are shaped by the request's
 * {@link SamplingParams.Controls} ({@code logit_bias}, {@code min_tokens}, repetition, frequency and
 * presence penalties: see {@link #sample(float[], int, int, int[], int, int)} for the order, vLLM's);
 * and reports log-probabilities of the chosen token and the top k.
 * Log-probabilities are those of the model's own distribution (log-softmax of the raw logits),
 * as vLLM and OpenAI report them, whatever the temperature, bias or penalties.
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
 * the tokens it would have sampled where it was. The penalties and {@code min_tokens} depend on the
 * sequence's tokens only, which a recomputed or resumed sequence has too. Each choice of a request has its own seed
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
    private final SamplingParams.Controls controls;
    /** The model's end-of-sequence tokens, masked with the stop tokens until {@code min_tokens}. */
    private final int[] eos;
    private final int[] biasTokens;
    private final float[] biasValues;
    private final int[] stopTokens;
    /** Positions drawn by {@link #sample(float[], int, int)}, which numbers its calls itself. */
    private int draws;
    private float[] probs = new float[0];
    private int[] order = new int[0];
    /** The shaped logits (bias, min_tokens, penalties), when the controls shape them. */
    private double[] shaped = new double[0];
    /** Per token: its count among the generated tokens, and a mark of the tokens of the history. */
    private int[] counts = new int[0];
    private boolean[] seen = new boolean[0];
    private float[] select = new float[0];

    /** A sampler without end-of-sequence tokens to mask for {@code min_tokens}. */
    public Sampler(SamplingParams params) {
        this(params, new int[0]);
    }

    /** @param eos the model's end-of-sequence tokens, which {@code min_tokens} masks like the stop tokens */
    public Sampler(SamplingParams params, int[] eos) {
        this.params = params;
        this.controls = params.controls();
        this.eos = eos.clone();
        this.biasTokens = controls.biasTokens();
        this.biasValues = controls.biasValues();
        this.stopTokens = controls.stopTokenIds();
    }

    /** {@link #sample(float[], int, int, int)} at positions 0, 1, 2, ... of this sampler's calls. */
    public int sample(float[] logits, int off, int vocab) {
        return sample(logits, off, vocab, draws++);
    }

    /**
     * Chooses the token at {@code position} of a sequence whose history is unknown: as
     * {@link #sample(float[], int, int, int[], int, int)} with no token generated yet and none to
     * penalise. For parameters without penalties and {@code min_tokens}.
     *
     * @throws NonFiniteLogitsException when no logit is above -∞ (all NaN or -∞)
     */
    public int sample(float[] logits, int off, int vocab, int position) {
        return pick(logits, off, vocab, position, null, position, position);
    }

    /**
     * Chooses the token at position {@code len} of the sequence {@code tokens[0..len)} from
     * {@code logits[off..off+vocab)} (not modified); the same seed, history and logits always give
     * the same token. Its first {@code promptLength} tokens are the prompt as submitted, of which
     * the last {@code controls.resumed()} were generated by this choice before it was resumed; the
     * rest were generated.
     *
     * <p>The logits are shaped in vLLM's order: {@code logit_bias} added; end-of-sequence and stop
     * tokens masked (-∞) while fewer than {@code min_tokens} are generated; the repetition penalty
     * (prompt and generated tokens), then the frequency and presence penalties (generated tokens);
     * greedy takes the argmax of that. Sampling then divides by the temperature, drops the tokens
     * below {@code min_p} times the most likely one's probability, keeps the {@code top_k} most
     * likely (ties at the k-th all kept, as vLLM), then the {@code top_p} nucleus.
     *
     * @throws NonFiniteLogitsException when no shaped logit is above -∞ (all NaN or -∞)
     */
    public int sample(float[] logits, int off, int vocab, int[] tokens, int len, int promptLength) {
        return pick(logits, off, vocab, len, tokens, len, promptLength);
    }

    private int pick(float[] logits, int off, int vocab, int position, int[] tokens, int len, int promptLength) {
        boolean shape = controls.shapesLogits();
        if (shape) {
            shape(logits, off, vocab, tokens, len, promptLength);
        }
        if (params.isGreedy()) {
            return shape ? argmax(shaped, vocab) : argmax(logits, off, vocab);
        }
        double sum = weights(logits, off, vocab, shape);
        if (params.topP() >= 1) {
            double u = uniform(params.seed(), position) * sum;
            double acc = 0;
            for (int i = 0; i < vocab; i++) {
                acc += probs[i];
                if (acc > u) {
                    return i;
                }
            }
            // rounding left u unreached: the most likely token
            return shape ? argmax(shaped, vocab) : argmax(logits, off, vocab);
        }
        return sampleTopP(vocab, sum, uniform(params.seed(), position));
    }

    /**
     * The distribution {@link #sample(float[], int, int, int[], int, int)} draws from (not greedy):
     * each token's probability after every transform, top-p included, summing to 1. For tests.
     */
    double[] distribution(float[] logits, int off, int vocab, int[] tokens, int len, int promptLength) {
        boolean shape = controls.shapesLogits();
        if (shape) {
            shape(logits, off, vocab, tokens, len, promptLength);
        }
        double sum = weights(logits, off, vocab, shape);
        double[] out = new double[vocab];
        if (params.topP() < 1) { // the nucleus as sampleTopP makes it: most likely first, until the mass reaches top_p
            Integer[] idx = new Integer[vocab];
            for (int i = 0; i < vocab; i++) {
                idx[i] = i;
            }
            java.util.Arrays.sort(idx, (a, b) -> Float.compare(probs[b], probs[a]));
            double mass = 0;
            for (int j = 0; j < vocab && mass < params.topP() * sum; j++) {
                out[idx[j]] = probs[idx[j]];
                mass += probs[idx[j]];
            }
            sum = mass;
        } else {
            for (int i = 0; i < vocab; i++) {
                out[i] = probs[i];
            }
        }
        for (int i = 0; i < vocab; i++) {
            out[i] /= sum;
        }
        return out;
    }

    /**
     * Fills {@code shaped[0..vocab)}: the raw logits (NaN as -∞) plus {@code logit_bias}, the
     * {@code min_tokens} mask, then the penalties over the history.
     */
    private void shape(float[] logits, int off, int vocab, int[] tokens, int len, int promptLength) {
        if (shaped.length < vocab) {
            shaped = new double[vocab];
            counts = new int[vocab];
            seen = new boolean[vocab];
        }
        for (int i = 0; i < vocab; i++) {
            float x = logits[off + i];
            shaped[i] = Float.isNaN(x) ? Double.NEGATIVE_INFINITY : x;
        }
        for (int j = 0; j < biasTokens.length; j++) {
            shaped[biasTokens[j]] += biasValues[j];
        }
        int generatedFrom = Math.max(0, promptLength - controls.resumed()); // the history's first generated token
        int generated = len - generatedFrom;
        if (generated < controls.minTokens()) {
            for (int t : stopTokens) {
                shaped[t] = Double.NEGATIVE_INFINITY;
            }
            for (int t : eos) {
                if (t >= 0 && t < vocab) {
                    shaped[t] = Double.NEGATIVE_INFINITY;
                }
            }
        }
        if (tokens == null) {
            return;
        }
        double rep = controls.repetitionPenalty();
        double freq = controls.frequencyPenalty();
        double presence = controls.presencePenalty();
        if (rep == 1 && freq == 0 && presence == 0) {
            return;
        }
        for (int i = generatedFrom; i < len; i++) {
            counts[tokens[i]]++;
        }
        // each distinct token of the history once; the repetition penalty covers the prompt too
        for (int i = (rep != 1 ? 0 : generatedFrom); i < len; i++) {
            int t = tokens[i];
            if (seen[t]) {
                continue;
            }
            seen[t] = true;
            double x = shaped[t];
            if (rep != 1) {
                x = x > 0 ? x / rep : x * rep;
            }
            int c = counts[t];
            if (c > 0) {
                x -= freq * c + presence;
            }
            shaped[t] = x;
        }
        for (int i = 0; i < len; i++) { // clean for the next step
            counts[tokens[i]] = 0;
            seen[tokens[i]] = false;
        }
    }

    /**
     * Fills {@code probs[0..vocab)} with the unnormalised probabilities at the temperature (the
     * largest is 1), after {@code min_p} and {@code top_k}; returns their sum (at least 1).
     *
     * @throws NonFiniteLogitsException when no logit is above -∞
     */
    private double weights(float[] logits, int off, int vocab, boolean shape) {
        if (probs.length < vocab) {
            probs = new float[vocab];
            order = new int[vocab];
        }
        double max = shape ? rowMax(shaped, vocab) : rowMax(logits, off, vocab);
        if (max == Double.NEGATIVE_INFINITY) {
            throw new NonFiniteLogitsException(vocab);
        }
        boolean infinite = max == Double.POSITIVE_INFINITY;
        double temperature = params.temperature();
        double minP = controls.minP();
        double sum = 0;
        int nonzero = 0;
        for (int i = 0; i < vocab; i++) {
            double x = shape ? shaped[i] : logits[off + i];
            float p;
            if (infinite) {
                p = x == Double.POSITIVE_INFINITY ? 1f : 0f;
            } else if (x > Double.NEGATIVE_INFINITY) { // false for NaN
                // in double: a finite difference cannot overflow, and dividing (not multiplying by 1/T)
                // keeps 0 / T at 0 for the tiniest T
                p = (float) Math.exp((x - max) / temperature);
            } else {
                p = 0f;
            }
            if (p < minP) { // min_p times the largest probability, 1 here (vLLM drops those strictly below)
                p = 0f;
            }
            probs[i] = p;
            sum += p;
            nonzero += p > 0 ? 1 : 0;
        }
        int k = controls.topK();
        if (k > 0 && k < nonzero) {
            float kth = kthLargest(vocab, k);
            sum = 0;
            for (int i = 0; i < vocab; i++) {
                if (probs[i] < kth) {
                    probs[i] = 0f;
                }
                sum += probs[i];
            }
        }
        // sum >= 1: the largest logit contributes exp(0) (or 1 for +∞), and min_p and top_k keep it
        return sum;
    }

    /** The k-th largest of {@code probs[0..vocab)} (1 ≤ k ≤ vocab): a quickselect on a copy. */
    private float kthLargest(int vocab, int k) {
        if (select.length < vocab) {
            select = new float[vocab];
        }
        System.arraycopy(probs, 0, select, 0, vocab);
        int lo = 0;
        int hi = vocab - 1;
        int want = k - 1; // index in descending order
        while (lo < hi) {
            float pivot = select[(lo + hi) >>> 1];
            int i = lo;
            int j = hi;
            while (i <= j) {
                while (select[i] > pivot) {
                    i++;
                }
                while (select[j] < pivot) {
                    j--;
                }
                if (i <= j) {
                    float t = select[i];
                    select[i] = select[j];
                    select[j] = t;
                    i++;
                    j--;
                }
            }
            if (want <= j) {
                hi = j;
            } else if (want >= i) {
                lo = i;
            } else {
                return select[want];
            }
        }
        return select[want];
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

    private static double rowMax(double[] x, int vocab) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            if (x[i] > max) {
                max = x[i];
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

    /** {@link #argmax(float[], int, int)} of shaped logits. */
    private static int argmax(double[] x, int n) {
        int best = -1;
        double bestValue = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            if (x[i] > bestValue) {
                bestValue = x[i];
                best = i;
            }
        }
        if (best < 0) {
            throw new NonFiniteLogitsException(n);
        }
        return best;
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
