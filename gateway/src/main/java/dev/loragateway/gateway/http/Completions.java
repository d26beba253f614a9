package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.gateway.text.TextTokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * What a completion request is, for {@code POST /v1/completions} and, through its shared parts, for
 * {@code /v1/chat/completions}: validation (every failure a 400 naming the field) of the fields
 * both routes read alike ({@link #request}), of the model name (a 404 when the caller has no such
 * model), of the prompt's size against {@code --max-model-len}; the completions prompt forms
 * (string, strings, token ids, lists of token ids); and the completions response body. The
 * {@link RequestPath} runs the request; {@link CompletionsRoute} streams it.
 */
final class Completions {
    static final int MAX_N = 16;
    static final int MAX_STOPS = 16;
    /**
     * Slack of the prompt's byte bound ({@link #maxPromptBytes}) over the longest token: normalizers
     * that merge characters (NFC) or drop them make a text shorter than its tokens' bytes.
     */
    static final int PROMPT_BYTES_SLACK = 2;

    /** A validated request. */
    record Request(String model, AdapterKey adapter, List<int[]> prompts, List<String> promptTexts, int maxTokens, double temperature,
                   double topP, List<String> stop, Long seed, int logprobs, boolean echo, int n, boolean stream,
                   boolean includeUsage) {
    }

    private final TextTokenizer tokenizer;
    private final String modelId;
    private final java.util.function.BiFunction<String, String, Optional<AdapterKey>> adapters;
    private final int maxModelLen;
    private final int vocabSize;

    /**
     * @param adapters the adapter key of (tenant, model name) for a name that is not the base
     *     model's, if that tenant may use such an adapter
     */
    Completions(TextTokenizer tokenizer, String modelId, java.util.function.BiFunction<String, String, Optional<AdapterKey>> adapters,
                int maxModelLen, int vocabSize) {
        this.tokenizer = tokenizer;
        this.modelId = modelId;
        this.adapters = adapters;
        this.maxModelLen = maxModelLen;
        this.vocabSize = vocabSize;
    }

    Request parse(JsonNode body, String tenant) {
        requireObject(body);
        String model = Json.string(body, "model", true);
        AdapterKey adapter = adapter(model, tenant);
        JsonNode p = body.get("prompt");
        if (p == null || p.isNull()) {
            throw ApiError.badRequest("'prompt' is required", "prompt");
        }
        List<int[]> prompts = new ArrayList<>();
        List<String> texts = new ArrayList<>();
        if (p.isTextual()) {
            addText(p.asText(), prompts, texts);
        } else if (p.isArray() && p.size() > 0 && p.get(0).isTextual()) {
            for (JsonNode e : p) { // every string checked before any is tokenized
                if (!e.isTextual()) {
                    throw ApiError.badRequest("'prompt' mixes strings with " + Json.kind(e), "prompt");
                }
                checkBytes(utf8Length(e.asText()), "prompt", "prompt");
            }
            for (JsonNode e : p) {
                addText(e.asText(), prompts, texts);
            }
        } else if (p.isArray() && p.size() > 0 && p.get(0).isArray()) {
            for (JsonNode e : p) {
                if (!e.isArray()) {
                    throw ApiError.badRequest("'prompt' mixes token-id lists with " + Json.kind(e), "prompt");
                }
                prompts.add(tokenIds(e));
                texts.add(null);
            }
        } else if (p.isArray() && p.size() > 0) {
            prompts.add(tokenIds(p));
            texts.add(null);
        } else if (p.isArray()) {
            throw ApiError.badRequest("'prompt' is an empty array", "prompt");
        } else {
            throw ApiError.badRequest("'prompt' must be a string, an array of strings, an array of token ids or an array of "
                + "arrays of token ids, got " + Json.kind(p), "prompt");
        }
        // read as a long so that a value past 32 bits gets the context-length message too, with both numbers
        long maxTokens = Json.integral(body, "max_tokens", 16, 0, Long.MAX_VALUE);
        for (int[] ids : prompts) {
            checkLength(ids, maxTokens, "prompt", "max_tokens");
        }
        int logprobs = Json.absent(body, "logprobs") ? -1 : Json.integer(body, "logprobs", -1, 0, 5);
        boolean echo = Json.bool(body, "echo", false);
        return request(body, model, adapter, prompts, texts, (int) maxTokens, logprobs, echo); // fits: checked against --max-model-len
    }

    static void requireObject(JsonNode body) {
        if (body == null || !body.isObject()) {
            throw ApiError.badRequest("the request body must be a JSON object", null);
        }
    }

    /** The adapter key {@code model} names for {@code tenant}: null for the base model; 404 when the caller has no such model. */
    AdapterKey adapter(String model, String tenant) {
        return model.equals(modelId) ? null : adapters.apply(tenant, model).orElseThrow(() -> ApiError.modelNotFound(model));
    }

    int maxModelLen() {
        return maxModelLen;
    }

    /**
     * The most bytes of UTF-8 a text prompt may have: {@code --max-model-len × longest token ×}
     * {@link #PROMPT_BYTES_SLACK}. Every token stands for at most {@link TextTokenizer#maxTokenBytes}
     * bytes, so a longer text cannot encode to {@code --max-model-len} tokens or fewer: it is
     * refused before the tokenizer spends time (and memory) on it.
     */
    long maxPromptBytes() {
        return (long) maxModelLen * tokenizer.maxTokenBytes() * PROMPT_BYTES_SLACK;
    }

    /** A 400 naming both numbers when {@code bytes} of prompt text cannot fit {@code --max-model-len} tokens. */
    void checkBytes(long bytes, String what, String param) {
        long max = maxPromptBytes();
        if (bytes > max) {
            throw ApiError.badRequest("the " + what + " is " + bytes + " bytes of UTF-8 text, more than the " + max + " bytes that can fit "
                + "this model's maximum context length of " + maxModelLen + " tokens (--max-model-len " + maxModelLen + "; a token of its "
                + "tokenizer stands for at most " + tokenizer.maxTokenBytes() + " bytes; the limit is " + maxModelLen + " × "
                + tokenizer.maxTokenBytes() + " × " + PROMPT_BYTES_SLACK + "). Please shorten the " + what + ".", param);
        }
    }

    /** The length of {@code s} in UTF-8, without encoding it. */
    static long utf8Length(CharSequence s) {
        long n = 0;
        int len = s.length();
        for (int i = 0; i < len; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                n++;
            } else if (c < 0x800) {
                n += 2;
            } else if (Character.isHighSurrogate(c) && i + 1 < len && Character.isLowSurrogate(s.charAt(i + 1))) {
                n += 4;
                i++;
            } else {
                n += 3; // a lone surrogate is encoded as '?' by Java but counted as 3 here: an over-count only
            }
        }
        return n;
    }

    /**
     * A 400 naming both numbers when a prompt does not fit {@code --max-model-len}, alone or with
     * {@code maxTokens} more; {@code promptParam} and {@code maxTokensParam} name the request's fields.
     */
    void checkLength(int[] ids, long maxTokens, String promptParam, String maxTokensParam) {
        if (ids.length == 0) {
            throw ApiError.badRequest("the " + promptParam + " is empty (it encodes to no tokens)", promptParam);
        }
        if (ids.length > maxModelLen || maxTokens > maxModelLen - ids.length) {
            // the sum of two non-negative longs always fits in 64 unsigned bits
            throw ApiError.badRequest("This model's maximum context length is " + maxModelLen + " tokens. However, you "
                + "requested " + Long.toUnsignedString(ids.length + maxTokens) + " tokens (" + ids.length + " in the " + promptParam + ", " + maxTokens
                + " in the completion). Please reduce the " + promptParam + " or " + maxTokensParam + ".",
                ids.length > maxModelLen ? promptParam : maxTokensParam);
        }
    }

    /**
     * The fields every inference route reads alike ({@code temperature}, {@code top_p}, {@code stop},
     * {@code seed}, {@code n}, {@code stream}, {@code stream_options}, {@code user}), around what the
     * route has already read.
     */
    Request request(JsonNode body, String model, AdapterKey adapter, List<int[]> prompts, List<String> texts, int maxTokens,
                    int logprobs, boolean echo) {
        double temperature = Json.number(body, "temperature", 1.0, 0, 2);
        double topP = Json.number(body, "top_p", 1.0, 0, 1);
        if (topP <= 0) {
            throw ApiError.badRequest("'top_p' must be greater than 0 and at most 1, got " + topP, "top_p");
        }
        List<String> stop = stops(body.get("stop"));
        Long seed = Json.absent(body, "seed") ? null : Json.longValue(body, "seed", 0);
        int n = Json.integer(body, "n", 1, 1, MAX_N);
        boolean stream = Json.bool(body, "stream", false);
        boolean includeUsage = false;
        JsonNode so = body.get("stream_options");
        if (so != null && !so.isNull()) {
            if (!so.isObject()) {
                throw ApiError.badRequest("'stream_options' must be an object", "stream_options");
            }
            includeUsage = Json.bool(so, "include_usage", false);
        }
        if (!Json.absent(body, "user")) {
            Json.string(body, "user", false);
        }
        return new Request(model, adapter, prompts, texts, (int) maxTokens, temperature, topP, stop, seed, logprobs, echo, n, stream, includeUsage);
    }

    private void addText(String text, List<int[]> prompts, List<String> texts) {
        checkBytes(utf8Length(text), "prompt", "prompt"); // before the tokenizer: its time and memory grow with the text
        prompts.add(tokenizer.encode(text, true));
        texts.add(text);
    }

    private int[] tokenIds(JsonNode arr) {
        int[] ids = new int[arr.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode e = arr.get(i);
            if (!e.isIntegralNumber()) {
                throw ApiError.badRequest("'prompt' token ids must be integers, got " + Json.kind(e) + " at index " + i, "prompt");
            }
            long v = e.asLong();
            if (v < 0 || v >= vocabSize) {
                throw ApiError.badRequest("'prompt' token id " + v + " is outside the vocabulary (0 to " + (vocabSize - 1) + ")", "prompt");
            }
            ids[i] = (int) v;
        }
        return ids;
    }

    private static List<String> stops(JsonNode s) {
        List<String> out = new ArrayList<>();
        if (s == null || s.isNull()) {
            return out;
        }
        if (s.isTextual()) {
            if (!s.asText().isEmpty()) {
                out.add(s.asText());
            }
            return out;
        }
        if (!s.isArray()) {
            throw ApiError.badRequest("'stop' must be a string or an array of strings, got " + Json.kind(s), "stop");
        }
        if (s.size() > MAX_STOPS) {
            throw ApiError.badRequest("'stop' has " + s.size() + " strings; at most " + MAX_STOPS + " are allowed", "stop");
        }
        for (JsonNode e : s) {
            if (!e.isTextual()) {
                throw ApiError.badRequest("'stop' must contain only strings, got " + Json.kind(e), "stop");
            }
            if (!e.asText().isEmpty()) {
                out.add(e.asText());
            }
        }
        return out;
    }

    /** The non-streamed body: each choice's text (after its prompt when {@code echo}), its logprobs, its finish reason; usage. */
    ObjectNode response(Request r, List<ChoiceRun> runs, String id, long created) {
        ObjectNode root = RequestPath.head(r, id, created, "text_completion");
        ArrayNode choices = root.putArray("choices");
        for (int i = 0; i < runs.size(); i++) {
            ChoiceRun run = runs.get(i);
            int pi = i / r.n();
            String prefix = r.echo() ? promptText(r, pi) : "";
            ObjectNode c = choices.addObject();
            c.put("index", i).put("text", prefix + run.text);
            if (r.logprobs() >= 0) {
                c.set("logprobs", logprobs(run.tokens, prefix.length()));
            } else {
                c.putNull("logprobs");
            }
            c.put("finish_reason", run.finishReason);
        }
        root.set("usage", RequestPath.usage(r, runs));
        return root;
    }

    String promptText(Request r, int pi) {
        String t = r.promptTexts().get(pi);
        return t != null ? t : tokenizer.decode(r.prompts().get(pi), false);
    }

    /** The legacy completions {@code logprobs} object of {@code list}, text offsets counted from {@code offset}. */
    ObjectNode logprobs(List<ChoiceRun.TokenInfo> list, int offset) {
        ObjectNode lp = Json.MAPPER.createObjectNode();
        ArrayNode tokens = lp.putArray("tokens");
        ArrayNode tlp = lp.putArray("token_logprobs");
        ArrayNode top = lp.putArray("top_logprobs");
        ArrayNode offsets = lp.putArray("text_offset");
        int at = offset;
        for (ChoiceRun.TokenInfo t : list) {
            tokens.add(t.text());
            Sampler.Logprobs l = t.logprobs();
            tlp.add(l.logprob());
            ObjectNode alts = top.addObject();
            for (int k = 0; k < l.topTokens().length; k++) {
                alts.put(tokenizer.decode(new int[] {l.topTokens()[k]}, false), l.topLogprobs()[k]);
            }
            offsets.add(at);
            at += t.text().length();
        }
        return lp;
    }
}
