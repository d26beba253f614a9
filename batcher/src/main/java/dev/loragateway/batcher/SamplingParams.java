package dev.loragateway.batcher;

import java.util.Arrays;

/**
 * How one request picks its tokens.
 *
 * @param temperature 0 for greedy; otherwise logits are divided by it before sampling
 * @param topP        nucleus size in (0, 1]; 1 keeps the whole distribution
 * @param seed        the request's seed: the same seed, prompt and parameters give the same tokens
 * @param maxTokens   most tokens generated
 * @param logprobs    how many top alternatives to report per token (0: only the chosen one's), or -1 for none
 * @param controls    the other knobs of OpenAI's and vLLM's APIs (logit bias, penalties, top-k, min-p,
 *                    min_tokens, ignore_eos, stop token ids); {@link Controls#NONE} for none
 */
public record SamplingParams(double temperature, double topP, long seed, int maxTokens, int logprobs, Controls controls) {
    public SamplingParams {
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        }
        if (maxTokens < 0) {
            throw new IllegalArgumentException("max_tokens must be >= 0, got " + maxTokens);
        }
        if (controls == null) {
            throw new IllegalArgumentException("controls must not be null (Controls.NONE for none)");
        }
        if (controls.minTokens() > maxTokens + controls.resumed()) {
            throw new IllegalArgumentException("min_tokens (" + controls.minTokens() + ") must not exceed max_tokens (" + maxTokens + ")");
        }
    }

    /** Parameters without any of the {@link Controls}. */
    public SamplingParams(double temperature, double topP, long seed, int maxTokens, int logprobs) {
        this(temperature, topP, seed, maxTokens, logprobs, Controls.NONE);
    }

    public static SamplingParams greedy(int maxTokens) {
        return new SamplingParams(0, 1, 0, maxTokens, -1);
    }

    /** These parameters with another {@code max_tokens}. */
    public SamplingParams withMaxTokens(int maxTokens) {
        return new SamplingParams(temperature, topP, seed, maxTokens, logprobs, controls);
    }

    /**
     * These parameters for a choice resumed after it generated {@code n} tokens, which now end its
     * prompt: {@code maxTokens() - n} more, and those {@code n} still count as generated (penalties,
     * min_tokens), so that it samples what it would have sampled where it was.
     */
    public SamplingParams resumedAfter(int n) {
        return new SamplingParams(temperature, topP, seed, maxTokens - n, logprobs, controls.withResumed(controls.resumed() + n));
    }

    public boolean isGreedy() {
        return temperature == 0;
    }

    /**
     * Whether sampling {@code token} ends the sequence (finish reason {@code stop}): an
     * end-of-sequence token of the model unless {@code ignore_eos}, or one of {@code stop_token_ids}.
     */
    public boolean ends(int token, ModelConfig cfg) {
        return (!controls.ignoreEos() && cfg.isEos(token)) || controls.isStopToken(token);
    }

    /**
     * The knobs beyond temperature and top-p, as vLLM defines them (OpenAI's {@code logit_bias},
     * {@code presence_penalty}, {@code frequency_penalty}, and vLLM's extensions). Each is off at
     * its {@link #NONE} value. Token ids are checked against the vocabulary by {@link #checkVocabulary}
     * (the engine does, at submit).
     *
     * @param biasTokens        token ids of {@code logit_bias}, distinct
     * @param biasValues        the bias added to each one's logit, in [-100, 100]
     * @param presencePenalty   in [-2, 2]: subtracted from the logit of each token generated so far
     * @param frequencyPenalty  in [-2, 2]: times a token's count among those generated so far, subtracted from its logit
     * @param repetitionPenalty &gt; 0 (1: off): a logit of a token in the prompt or generated so far is
     *                          divided by it when positive, multiplied by it otherwise
     * @param topK              the most likely tokens kept (0: all)
     * @param minP              in [0, 1]: tokens less likely than {@code minP} times the most likely one are dropped
     * @param minTokens         end-of-sequence and stop tokens are masked until this many tokens are generated
     * @param ignoreEos         the model's end-of-sequence tokens do not end the sequence
     * @param stopTokenIds      sampling one of these ends the sequence (finish reason {@code stop})
     * @param resumed           tokens at the end of the prompt this choice generated before it was
     *                          resumed (elsewhere, or after a move): they count as generated
     */
    public record Controls(int[] biasTokens, float[] biasValues, double presencePenalty, double frequencyPenalty,
                           double repetitionPenalty, int topK, double minP, int minTokens, boolean ignoreEos,
                           int[] stopTokenIds, int resumed) {
        /** Every knob off. */
        public static final Controls NONE = new Controls(new int[0], new float[0], 0, 0, 1, 0, 0, 0, false, new int[0], 0);

        public Controls {
            if (biasTokens == null || biasValues == null || biasTokens.length != biasValues.length) {
                throw new IllegalArgumentException("logit_bias needs one value per token");
            }
            biasTokens = biasTokens.clone();
            biasValues = biasValues.clone();
            for (int i = 0; i < biasTokens.length; i++) {
                if (!(biasValues[i] >= -100 && biasValues[i] <= 100)) {
                    throw new IllegalArgumentException("a logit_bias value must be in [-100, 100], got " + biasValues[i]);
                }
                for (int j = 0; j < i; j++) {
                    if (biasTokens[j] == biasTokens[i]) {
                        throw new IllegalArgumentException("logit_bias names token " + biasTokens[i] + " twice");
                    }
                }
            }
            if (!(presencePenalty >= -2 && presencePenalty <= 2)) {
                throw new IllegalArgumentException("presence_penalty must be in [-2, 2], got " + presencePenalty);
            }
            if (!(frequencyPenalty >= -2 && frequencyPenalty <= 2)) {
                throw new IllegalArgumentException("frequency_penalty must be in [-2, 2], got " + frequencyPenalty);
            }
            if (!(repetitionPenalty > 0) || Double.isInfinite(repetitionPenalty)) {
                throw new IllegalArgumentException("repetition_penalty must be a finite number > 0, got " + repetitionPenalty);
            }
            if (topK < 0) {
                throw new IllegalArgumentException("top_k must be >= 0 (0: off), got " + topK);
            }
            if (!(minP >= 0 && minP <= 1)) {
                throw new IllegalArgumentException("min_p must be in [0, 1], got " + minP);
            }
            if (minTokens < 0) {
                throw new IllegalArgumentException("min_tokens must be >= 0, got " + minTokens);
            }
            if (stopTokenIds == null) {
                throw new IllegalArgumentException("stop_token_ids must not be null");
            }
            stopTokenIds = stopTokenIds.clone();
            if (resumed < 0) {
                throw new IllegalArgumentException("resumed must be >= 0, got " + resumed);
            }
        }

        /** A {@code resumed} count of tokens generated before. */
        public Controls withResumed(int resumed) {
            return new Controls(biasTokens, biasValues, presencePenalty, frequencyPenalty, repetitionPenalty, topK, minP, minTokens,
                ignoreEos, stopTokenIds, resumed);
        }

        public boolean isStopToken(int token) {
            for (int t : stopTokenIds) {
                if (t == token) {
                    return true;
                }
            }
            return false;
        }

        /** Whether any of them changes logits before the pick (greedy included): bias, penalties, min_tokens. */
        boolean shapesLogits() {
            return biasTokens.length > 0 || presencePenalty != 0 || frequencyPenalty != 0 || repetitionPenalty != 1 || minTokens > 0;
        }

        /** @throws IllegalArgumentException when a token id of {@code logit_bias} or {@code stop_token_ids} is outside {@code [0, vocab)} */
        public void checkVocabulary(int vocab) {
            for (int t : biasTokens) {
                if (t < 0 || t >= vocab) {
                    throw new IllegalArgumentException("logit_bias token id " + t + " is outside the vocabulary (size " + vocab + ")");
                }
            }
            for (int t : stopTokenIds) {
                if (t < 0 || t >= vocab) {
                    throw new IllegalArgumentException("stop_token_ids token id " + t + " is outside the vocabulary (size " + vocab + ")");
                }
            }
        }

        @Override
        public int[] biasTokens() {
            return biasTokens.clone();
        }

        @Override
        public float[] biasValues() {
            return biasValues.clone();
        }

        @Override
        public int[] stopTokenIds() {
            return stopTokenIds.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Controls c && Arrays.equals(biasTokens, c.biasTokens) && Arrays.equals(biasValues, c.biasValues)
                && Double.compare(presencePenalty, c.presencePenalty) == 0 && Double.compare(frequencyPenalty, c.frequencyPenalty) == 0
                && Double.compare(repetitionPenalty, c.repetitionPenalty) == 0 && topK == c.topK && Double.compare(minP, c.minP) == 0
                && minTokens == c.minTokens && ignoreEos == c.ignoreEos && Arrays.equals(stopTokenIds, c.stopTokenIds) && resumed == c.resumed;
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(new double[] {Arrays.hashCode(biasTokens), Arrays.hashCode(biasValues), presencePenalty, frequencyPenalty,
                repetitionPenalty, topK, minP, minTokens, ignoreEos ? 1 : 0, Arrays.hashCode(stopTokenIds), resumed});
        }

        @Override
        public String toString() {
            return "Controls[logit_bias=" + biasTokens.length + " tokens, presence_penalty=" + presencePenalty + ", frequency_penalty="
                + frequencyPenalty + ", repetition_penalty=" + repetitionPenalty + ", top_k=" + topK + ", min_p=" + minP + ", min_tokens="
                + minTokens + ", ignore_eos=" + ignoreEos + ", stop_token_ids=" + Arrays.toString(stopTokenIds) + ", resumed=" + resumed + "]";
        }
    }
}
