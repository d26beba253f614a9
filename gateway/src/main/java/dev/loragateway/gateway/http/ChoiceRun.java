package dev.loragateway.gateway.http;

import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.gateway.text.IncrementalDetokenizer;
import dev.loragateway.gateway.text.TextTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One choice of a completion, turning its tokens into text as the engine makes them: incremental
 * detokenization (never half a UTF-8 character), stop strings matched across token boundaries (the
 * stop text is not returned), the token that ends it (end-of-sequence unless {@code ignore_eos}, or
 * one of {@code stop_token_ids}: as vLLM, counted in the usage but not in the text or the
 * log-probabilities) kept out of the text, and per-token
 * log-probabilities. {@link #accept} is the engine's token sink (it runs on the engine thread);
 * {@code onDelta} receives text as soon as it is final (for streaming).
 */
final class ChoiceRun implements Generator.TokenSink {
    /** One generated token as reported in {@code logprobs}. */
    record TokenInfo(int id, String text, Sampler.Logprobs logprobs) {
    }

    /** Receives each piece of final text with the tokens (when logprobs are asked for) not handed out before. */
    interface Sink {
        void delta(String text, List<TokenInfo> tokens);
    }

    final StringBuilder text = new StringBuilder();
    final List<TokenInfo> tokens = new ArrayList<>();
    int completionTokens;
    String finishReason;

    private final TextTokenizer tokenizer;
    private final ModelConfig cfg;
    private final SamplingParams params;
    private final List<String> stops;
    private final int maxStop;
    private final IncrementalDetokenizer detok;
    private final Sink onDelta;
    private boolean stopped;
    private int emitted; // chars of text already handed to onDelta
    private int reported; // entries of tokens already handed to onDelta

    /** @param params the choice's sampling parameters: which tokens end it ({@link SamplingParams#ends}) */
    ChoiceRun(TextTokenizer tokenizer, ModelConfig cfg, SamplingParams params, List<String> stops, int[] prompt, Sink onDelta) {
        this.tokenizer = tokenizer;
        this.cfg = cfg;
        this.params = params;
        this.stops = stops;
        this.onDelta = onDelta;
        int m = 0;
        for (String s : stops) {
            m = Math.max(m, s.length());
        }
        this.maxStop = m;
        int ctx = Math.min(prompt.length, 5);
        this.detok = new IncrementalDetokenizer(tokenizer, Arrays.copyOfRange(prompt, prompt.length - ctx, prompt.length), true);
    }

    @Override
    public boolean accept(int token, Sampler.Logprobs lp) {
        completionTokens++;
        if (params.ends(token, cfg)) { // counted, not shown: an end-of-sequence token (unless ignore_eos) or a stop token id
            return false;
        }
        String delta = detok.next(token);
        int before = text.length();
        text.append(delta);
        if (lp != null) {
            tokens.add(new TokenInfo(token, tokenizer.decode(new int[] {token}, false), lp));
        }
        if (!stops.isEmpty() && findStop(before)) {
            stopped = true;
            publish(text.length());
            return false;
        }
        // hold back the last maxStop-1 chars: they may begin a stop string
        publish(Math.max(emitted, text.length() - Math.max(0, maxStop - 1)));
        return true;
    }

    /** Called once the engine is done with this choice. */
    void finish(Generator.Finish finish) {
        if (!stopped) {
            text.append(detok.flush());
        }
        publish(text.length());
        finishReason = stopped ? "stop" : finish.wire();
    }

    /** Truncates the text at the earliest stop string that the last delta completed. */
    private boolean findStop(int before) {
        int best = -1;
        for (String s : stops) {
            int from = Math.max(0, before - s.length() + 1);
            int at = text.indexOf(s, from);
            if (at >= 0 && (best < 0 || at < best)) {
                best = at;
            }
        }
        if (best >= 0) {
            text.setLength(best);
            return true;
        }
        return false;
    }

    private void publish(int upTo) {
        // never end a delta between the two chars of a surrogate pair: each delta is encoded to UTF-8
        // on its own, where half a pair becomes '?'
        if (upTo > emitted && upTo < text.length() && Character.isHighSurrogate(text.charAt(upTo - 1))) {
            upTo--;
        }
        if (onDelta != null && upTo > emitted) {
            onDelta.delta(text.substring(emitted, upTo), unreported());
            emitted = upTo;
        }
    }

    /**
     * The tokens not yet handed out with a delta, now marked handed out: a streamed chunk's
     * log-probabilities. A token whose text is held back (part of a character or of a possible stop
     * string) goes with the delta that releases it; the last ones, with the choice's final chunk.
     */
    List<TokenInfo> unreported() {
        List<TokenInfo> out = List.copyOf(tokens.subList(reported, tokens.size()));
        reported = tokens.size();
        return out;
    }
}
