package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.batcher.SamplingParams;
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
    /** Most entries of {@code logit_bias} (OpenAI accepts about 300). */
    static final int MAX_LOGIT_BIAS = 300;
    /** Most entries of {@code stop_token_ids}. */
    static final int MAX_STOP_TOKEN_IDS = 256;
    /**
     * Slack of the prompt's byte bound ({@link #maxPromptBytes}) over the longest token: normalizers
     * that merge characters (NFC) or drop them make a text shorter than its tokens' bytes.
     */
    static final int PROMPT_BYTES_SLACK = 2;

    /** A validated request. */
    record Request(String model, AdapterKey adapter, List<int[]> prompts, List<String> promptTexts, int maxTokens, double temperature,
                   double topP, List<String> stop, Long seed, int logprobs, boolean echo, int n, boolean stream,
                   boolean includeUsage, SamplingParams.Controls controls) {
    }

    /** The completion's length limit and the field that set it ({@code max_tokens} or {@code max_completion_tokens}). */
    record MaxTokens(long value, String field) {
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
        MaxTokens max = maxTokens(body);
        long maxTokens = max.value() < 0 ? 16 : max.value();
        for (int[] ids : prompts) {
            checkLength(ids, maxTokens, "prompt", max.field());
        }
        int logprobs = Json.absent(body, "logprobs") ? -1 : Json.integer(body, "logprobs", -1, 0, 5);
        boolean echo = Json.bool(body, "echo", false);
        return request(body, model, adapter, prompts, texts, (int) maxTokens, logprobs, echo); // fits: checked against --max-model-len
    }

    /**
     * {@code max_tokens} and its alias {@code max_completion_tokens} (OpenAI's newer name), on both
     * routes: the one present, or -1 when neither is; both present: {@code max_completion_tokens}
     * wins, as in vLLM (and as this server's chat route always did). Both are checked. Read as longs
     * so that a value past 32 bits gets the context-length message too, with both numbers.
     */
    static MaxTokens maxTokens(JsonNode body) {
        long mct = Json.absent(body, "max_completion_tokens") ? -1 : Json.integral(body, "max_completion_tokens", -1, 0, Long.MAX_VALUE);
        long mt = Json.absent(body, "max_tokens") ? -1 : Json.integral(body, "max_tokens", -1, 0, Long.MAX_VALUE);
        return mct >= 0 ? new MaxTokens(mct, "max_completion_tokens") : new MaxTokens(mt, "max_tokens");
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
     * {@code seed}, {@code n}, {@code stream}, {@code stream_options}, {@code user}, {@code response_format},
     * and the {@link #controls}), around what the route has already read.
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
        responseFormat(body.get("response_format"));
        return new Request(model, adapter, prompts, texts, (int) maxTokens, temperature, topP, stop, seed, logprobs, echo, n, stream, includeUsage,
            controls(body, maxTokens));
    }

    /**
     * The knobs beyond temperature and top-p, as OpenAI ({@code logit_bias}, {@code presence_penalty},
     * {@code frequency_penalty}) and vLLM ({@code top_k}, {@code min_p}, {@code repetition_penalty},
     * {@code min_tokens}, {@code ignore_eos}, {@code stop_token_ids}) define them; each a 400 naming it
     * when out of range or of the wrong type.
     */
    SamplingParams.Controls controls(JsonNode body, int maxTokens) {
        int[] biasTokens = new int[0];
        float[] biasValues = new float[0];
        JsonNode lb = body.get("logit_bias");
        if (lb != null && !lb.isNull()) {
            if (!lb.isObject()) {
                throw ApiError.badRequest("'logit_bias' must be an object of token ids (as strings) to biases, got " + Json.kind(lb), "logit_bias");
            }
            if (lb.size() > MAX_LOGIT_BIAS) {
                throw ApiError.badRequest("'logit_bias' has " + lb.size() + " entries; at most " + MAX_LOGIT_BIAS + " are allowed", "logit_bias");
            }
            biasTokens = new int[lb.size()];
            biasValues = new float[lb.size()];
            int i = 0;
            for (var it = lb.fields(); it.hasNext(); i++) {
                var e = it.next();
                biasTokens[i] = tokenId(e.getKey(), "logit_bias");
                JsonNode v = e.getValue();
                if (!v.isNumber()) {
                    throw ApiError.badRequest("'logit_bias' values must be numbers, got " + Json.kind(v) + " for token " + e.getKey(), "logit_bias");
                }
                double d = v.asDouble();
                if (!(d >= -100 && d <= 100)) {
                    throw ApiError.badRequest("'logit_bias' values must be between -100 and 100, got " + v + " for token " + e.getKey(), "logit_bias");
                }
                biasValues[i] = (float) d;
                for (int j = 0; j < i; j++) {
                    if (biasTokens[j] == biasTokens[i]) {
                        throw ApiError.badRequest("'logit_bias' names token " + biasTokens[i] + " twice", "logit_bias");
                    }
                }
            }
        }
        double presence = Json.number(body, "presence_penalty", 0, -2, 2);
        double frequency = Json.number(body, "frequency_penalty", 0, -2, 2);
        double repetition = Json.number(body, "repetition_penalty", 1, Double.NEGATIVE_INFINITY, Double.POSITIVE_INFINITY);
        if (!(repetition > 0) || Double.isInfinite(repetition)) {
            throw ApiError.badRequest("'repetition_penalty' must be a finite number greater than 0 (1: off), got " + body.get("repetition_penalty"),
                "repetition_penalty");
        }
        long topK = Json.integral(body, "top_k", 0, Long.MIN_VALUE, Long.MAX_VALUE);
        if (topK < -1) {
            throw ApiError.badRequest("'top_k' must be -1 or 0 (off) or at least 1, got " + topK, "top_k");
        }
        double minP = Json.number(body, "min_p", 0, 0, 1);
        int minTokens = Json.integer(body, "min_tokens", 0, 0, Integer.MAX_VALUE);
        if (minTokens > maxTokens) {
            throw ApiError.badRequest("'min_tokens' (" + minTokens + ") must not exceed the maximum number of tokens to generate ("
                + maxTokens + ")", "min_tokens");
        }
        boolean ignoreEos = Json.bool(body, "ignore_eos", false);
        int[] stopIds = new int[0];
        JsonNode st = body.get("stop_token_ids");
        if (st != null && !st.isNull()) {
            if (!st.isArray()) {
                throw ApiError.badRequest("'stop_token_ids' must be an array of token ids, got " + Json.kind(st), "stop_token_ids");
            }
            if (st.size() > MAX_STOP_TOKEN_IDS) {
                throw ApiError.badRequest("'stop_token_ids' has " + st.size() + " entries; at most " + MAX_STOP_TOKEN_IDS + " are allowed",
                    "stop_token_ids");
            }
            stopIds = new int[st.size()];
            for (int i = 0; i < stopIds.length; i++) {
                JsonNode e = st.get(i);
                if (!e.isIntegralNumber()) {
                    throw ApiError.badRequest("'stop_token_ids' must contain only integer token ids, got " + Json.kind(e) + " at index " + i,
                        "stop_token_ids");
                }
                if (!e.canConvertToInt() || e.asInt() < 0 || e.asInt() >= vocabSize) {
                    throw ApiError.badRequest("'stop_token_ids' token id " + e + " is outside the vocabulary (0 to " + (vocabSize - 1) + ")",
                        "stop_token_ids");
                }
                stopIds[i] = e.asInt();
            }
        }
        return new SamplingParams.Controls(biasTokens, biasValues, presence, frequency, repetition, (int) Math.min(Math.max(topK, 0), Integer.MAX_VALUE),
            minP, minTokens, ignoreEos, stopIds, 0);
    }

    /** A token id written as a string (a {@code logit_bias} key): a decimal integer in the vocabulary. */
    private int tokenId(String key, String param) {
        long id;
        try {
            id = Long.parseLong(key);
        } catch (NumberFormatException e) {
            throw ApiError.badRequest("'" + param + "' keys must be token ids (integers as strings), got \"" + abbreviate(key) + "\"", param);
        }
        if (id < 0 || id >= vocabSize) {
            throw ApiError.badRequest("'" + param + "' token id " + id + " is outside the vocabulary (0 to " + (vocabSize - 1) + ")", param);
        }
        return (int) id;
    }

    private static String abbreviate(String s) {
        return s.length() > 40 ? s.substring(0, 40) + "..." : s;
    }

    /** {@code response_format}: {@code {"type": "text"}} is the default; structured output is not supported yet (a 400). */
    private static void responseFormat(JsonNode rf) {
        if (rf == null || rf.isNull()) {
            return;
        }
        if (!rf.isObject()) {
            throw ApiError.badRequest("'response_format' must be an object such as {\"type\": \"text\"}, got " + Json.kind(rf), "response_format");
        }
        JsonNode type = rf.get("type");
        if (type == null || !type.isTextual()) {
            throw ApiError.badRequest("'response_format' needs a string 'type' (\"text\")", "response_format");
        }
        switch (type.asText()) {
            case "text" -> {
            }
            case "json_object", "json_schema" -> throw ApiError.badRequest("'response_format' of type \"" + type.asText()
                + "\" (structured output) is not supported yet; only {\"type\": \"text\"} is", "response_format");
            default -> throw ApiError.badRequest("'response_format' type must be \"text\", \"json_object\" or \"json_schema\", got \""
                + abbreviate(type.asText()) + "\"", "response_format");
        }
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
