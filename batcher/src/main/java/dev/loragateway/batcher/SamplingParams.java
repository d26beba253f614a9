package dev.loragateway.batcher;

/**
 * How one request picks its tokens.
 *
 * @param temperature 0 for greedy; otherwise logits are divided by it before sampling
 * @param topP        nucleus size in (0, 1]; 1 keeps the whole distribution
 * @param seed        the request's seed: the same seed, prompt and parameters give the same tokens
 * @param maxTokens   most tokens generated
 * @param logprobs    how many top alternatives to report per token (0: only the chosen one's), or -1 for none
 */
public record SamplingParams(double temperature, double topP, long seed, int maxTokens, int logprobs) {
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
    }

    public static SamplingParams greedy(int maxTokens) {
        return new SamplingParams(0, 1, 0, maxTokens, -1);
    }

    /** These parameters with another {@code max_tokens} (a request resumed after {@code n} tokens: {@code maxTokens() - n}). */
    public SamplingParams withMaxTokens(int maxTokens) {
        return new SamplingParams(temperature, topP, seed, maxTokens, logprobs);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }
}
