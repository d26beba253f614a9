package dev.loragateway.gateway.http;

import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.gateway.text.IncrementalDetokenizer;
import dev.loragateway.gateway.text.TextTokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Generates one choice and turns its tokens into text: incremental detokenization (never half a
 * UTF-8 character), stop strings matched across token boundaries (the stop text is not returned),
 * the end-of-sequence token kept out of the text, and per-token log-probabilities.
 * Runs on the engine thread; {@code onDelta} receives text as soon as it is final (for streaming).
 */
final class ChoiceRun {
    /** One generated token as reported in {@code logprobs}. */
    record TokenInfo(int id, String text, Sampler.Logprobs logprobs) {
    }

    final StringBuilder text = new StringBuilder();
    final List<TokenInfo> tokens = new ArrayList<>();
    int completionTokens;
    String finishReason;

    private final TextTokenizer tokenizer;
    private final List<String> stops;
    private final int maxStop;
    private int emitted; // chars of text already handed to onDelta

    ChoiceRun(TextTokenizer tokenizer, List<String> stops) {
        this.tokenizer = tokenizer;
        this.stops = stops;
        int m = 0;
        for (String s : stops) {
            m = Math.max(m, s.length());
        }
        this.maxStop = m;
    }

    void run(Generator gen, int[] prompt, SamplingParams params, Consumer<String> onDelta) {
        int ctx = Math.min(prompt.length, 5);
        int[] context = java.util.Arrays.copyOfRange(prompt, prompt.length - ctx, prompt.length);
        IncrementalDetokenizer detok = new IncrementalDetokenizer(tokenizer, context, true);
        boolean[] stopped = {false};
        Generator.Finish finish = gen.generate(prompt, params, (token, lp) -> {
            completionTokens++;
            if (gen.config().isEos(token)) {
                return false;
            }
            String delta = detok.next(token);
            int before = text.length();
            text.append(delta);
            if (lp != null) {
                tokens.add(new TokenInfo(token, tokenizer.decode(new int[] {token}, false), lp));
            }
            if (!stops.isEmpty() && findStop(before)) {
                stopped[0] = true;
                publish(onDelta, text.length());
                return false;
            }
            // hold back the last maxStop-1 chars: they may begin a stop string
            publish(onDelta, Math.max(emitted, text.length() - Math.max(0, maxStop - 1)));
            return true;
        });
        if (!stopped[0]) {
            text.append(detok.flush());
        }
        publish(onDelta, text.length());
        finishReason = stopped[0] ? "stop" : finish.wire();
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

    private void publish(Consumer<String> onDelta, int upTo) {
        if (onDelta != null && upTo > emitted) {
            onDelta.accept(text.substring(emitted, upTo));
            emitted = upTo;
        }
    }
}
