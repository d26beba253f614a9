package dev.loragateway.batcher;

/**
 * Generates one sequence: a prefill of the whole prompt in one step, then one decode step per
 * token, until the end-of-sequence token, {@code max_tokens}, or the sink says stop.
 * (Continuous batching of many sequences builds on the same {@link ForwardPass} step.)
 */
public final class Generator {
    /** Why a generation ended (OpenAI's {@code finish_reason}). */
    public enum Finish {
        STOP("stop"), LENGTH("length");

        private final String wire;

        Finish(String wire) {
            this.wire = wire;
        }

        public String wire() {
            return wire;
        }
    }

    /** Receives each generated token; returns false to stop (for example at a stop string). */
    @FunctionalInterface
    public interface TokenSink {
        boolean accept(int token, Sampler.Logprobs logprobs);
    }

    /**
     * A sink whose sequence could go on elsewhere (a choice another cluster node forwarded here).
     * When the KV pool runs dry and this sequence is the newest, the engine asks {@link #moveAway}
     * before preempting it: true, and the sequence leaves this engine (its blocks and adapter pin
     * freed, its future cancelled) for the sink's owner to resume it elsewhere; false, and it is
     * preempted and waits here as any other.
     */
    public interface MovableSink extends TokenSink {
        /** On the engine thread; must return quickly. */
        boolean moveAway();
    }

    private final ForwardPass pass;
    private final StepBatch batch = new StepBatch();
    private final float[] logits;

    public Generator(ForwardPass pass) {
        this.pass = pass;
        this.logits = new float[pass.model().config().vocabSize()];
    }

    public ModelConfig config() {
        return pass.model().config();
    }

    /**
     * Runs the prompt and generates up to {@code params.maxTokens()} tokens. An end-of-sequence
     * token (unless {@code ignore_eos}) or a stop token id ends generation with {@link Finish#STOP}
     * and is handed to the sink like any other (the caller decides not to show it).
     */
    public Finish generate(int[] prompt, SamplingParams params, TokenSink sink) {
        ModelConfig cfg = config();
        int vocab = cfg.vocabSize();
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt is empty");
        }
        for (int t : prompt) {
            if (t < 0 || t >= vocab) {
                throw new IllegalArgumentException("token id " + t + " is outside the vocabulary (size " + vocab + ")");
            }
        }
        if (params.maxTokens() == 0) {
            return Finish.LENGTH;
        }
        KvCache cache = new KvCache(cfg, prompt.length + Math.min(params.maxTokens(), 256));
        params.controls().checkVocabulary(vocab);
        Sampler sampler = new Sampler(params, cfg.eosTokenIds());
        int[] history = java.util.Arrays.copyOf(prompt, prompt.length + Math.min(params.maxTokens(), 256));
        batch.clear();
        for (int i = 0; i < prompt.length; i++) {
            batch.add(cache, prompt[i], i == prompt.length - 1);
        }
        pass.step(batch, logits);
        for (int n = 0; ; ) {
            int token = sampler.sample(logits, 0, vocab, history, prompt.length + n, prompt.length);
            if (prompt.length + n == history.length) {
                history = java.util.Arrays.copyOf(history, history.length * 2);
            }
            history[prompt.length + n] = token;
            Sampler.Logprobs lp = params.logprobs() >= 0
                ? Sampler.logprobs(logits, 0, vocab, token, params.logprobs()) : null;
            n++;
            boolean more = sink.accept(token, lp);
            if (params.ends(token, cfg) || !more) {
                return Finish.STOP;
            }
            if (n >= params.maxTokens()) {
                return Finish.LENGTH;
            }
            batch.clear();
            batch.add(cache, token, true);
            pass.step(batch, logits);
        }
    }
}
