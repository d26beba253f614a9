package dev.loragateway.gateway.cluster;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.gateway.http.ApiError;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The internal protocol between a front node and an executing node, in one place: the request
 * body, the stream's lines, the error shape and the secret's header. Both ends use these methods,
 * so a field is named once.
 *
 * <pre>
 * POST /internal/v1/generate      X-Cluster-Secret: hex(SHA-256("lora-gateway internal v1\0" ‖ secret))
 *                                 traceparent / tracestate: W3C trace context
 * {"id":"9f…","requestId":"req-1","tenant":"acme","adapter":{"system":false,"tenant":"acme","name":"bot"},
 *  "prompts":[{"tokens":[1,5,9],"choices":[{"temperature":0.7,"topP":1.0,"seed":42,"maxTokens":16,"logprobs":2}]}]}
 *  (a choice with any sampling controls has "controls":{"biasTokens":[..],"biasValues":[..],"presencePenalty":0.0,
 *   "frequencyPenalty":0.0,"repetitionPenalty":1.0,"topK":0,"minP":0.0,"minTokens":0,"ignoreEos":false,"stopTokenIds":[..],"resumed":0})
 * → 200 application/x-ndjson, one event a line, choices numbered across prompts in order:
 * {"c":0,"t":17,"lp":{"l":-0.25,"tt":[17,3],"tl":[-0.25,-1.5]}}     a token ("lp" only when logprobs ≥ 0)
 * {"c":0,"finish":"stop"}                                            the choice ended
 * {"c":1,"move":"drain"}                                             the node gives the choice back unfinished
 *                                                                    (draining, or "kv": its KV pool ran dry)
 * {"c":1,"error":{"status":503,"type":"unavailable","message":"…","param":null,"code":null}}
 * → or, before any stream: 401 / 400 / 429 / 503 / 500 with {"error":{…the same fields…}}
 * POST /internal/v1/cancel {"id":"9f…","c":1} → 204: stop that choice (the front's sink said stop, or it was cancelled)
 * </pre>
 *
 * Floats travel as Jackson writes them (the shortest text that reads back to the same float) and
 * are read as exact decimals, so a logprob arrives bit for bit.
 */
final class InternalWire {
    static final String GENERATE = "/internal/v1/generate";
    static final String CANCEL = "/internal/v1/cancel";
    static final String SECRET_HEADER = "X-Cluster-Secret";
    static final String NDJSON = "application/x-ndjson";

    /** Decimals read exactly (a float read through a double could round twice). */
    static final ObjectMapper MAPPER = new ObjectMapper().enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS);

    private static final Pattern QUEUE_FULL = Pattern.compile(
        "the server is at capacity: (\\d+) sequences are already queued and this request needs (\\d+) more, over the limit of (\\d+) .*");
    private static final Pattern TOO_LARGE = Pattern.compile(
        "this request needs (\\d+) sequences \\((\\d+) prompts? × n = (\\d+)\\), more than the (\\d+) that .*");
    private static final String QUEUE_FULL_CODE = "queue_full";
    private static final String TOO_LARGE_CODE = "request_too_large";

    private InternalWire() {
    }

    /**
     * The header value that proves a caller holds {@code secret} (empty bytes without one): a
     * domain-separated SHA-256, so it is neither the secret nor the hash prefix Hazelcast's join
     * carries. It is a bearer token: the listener belongs on a private network.
     */
    static String token(byte[] secret) {
        try {
            MessageDigest d = MessageDigest.getInstance("SHA-256");
            d.update("lora-gateway internal v1\0".getBytes(StandardCharsets.UTF_8));
            d.update(secret);
            return HexFormat.of().formatHex(d.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }

    /** True when {@code presented} equals {@code expected}, in time that does not depend on where they differ. */
    static boolean tokenMatches(String expected, String presented) {
        return presented != null && MessageDigest.isEqual(expected.getBytes(StandardCharsets.US_ASCII),
            presented.getBytes(StandardCharsets.US_ASCII));
    }

    // ---- the request ------------------------------------------------------------------------

    /** The body of a generate call for {@code work} under stream id {@code id} (the trace goes in headers). */
    static ObjectNode request(String id, InferenceExecutor.Work work) {
        ObjectNode b = MAPPER.createObjectNode().put("id", id).put("requestId", work.requestId()).put("tenant", work.tenant());
        AdapterKey a = work.adapter();
        if (a == null) {
            b.putNull("adapter");
        } else {
            b.putObject("adapter").put("system", a.system()).put("tenant", a.tenant()).put("name", a.name());
        }
        ArrayNode prompts = b.putArray("prompts");
        for (InferenceExecutor.Prompt p : work.prompts()) {
            ObjectNode pn = prompts.addObject();
            ArrayNode tokens = pn.putArray("tokens");
            for (int t : p.tokens()) {
                tokens.add(t);
            }
            ArrayNode choices = pn.putArray("choices");
            for (InferenceExecutor.Choice c : p.choices()) {
                SamplingParams s = c.params();
                ObjectNode cn = choices.addObject().put("temperature", s.temperature()).put("topP", s.topP()).put("seed", s.seed())
                    .put("maxTokens", s.maxTokens()).put("logprobs", s.logprobs());
                if (!s.controls().equals(SamplingParams.Controls.NONE)) {
                    cn.set("controls", controls(s.controls()));
                }
            }
        }
        return b;
    }

    /** The adapter key of a request body, or null for the base model. */
    static AdapterKey adapter(JsonNode body) {
        JsonNode a = body.path("adapter");
        if (a.isNull() || a.isMissingNode()) {
            return null;
        }
        return new AdapterKey(a.path("system").asBoolean(), text(a, "tenant"), text(a, "name"));
    }

    /** The sampling parameters of one choice of a request body (their own checks apply). */
    static SamplingParams params(JsonNode c) {
        JsonNode k = c.path("controls");
        return new SamplingParams(number(c, "temperature").doubleValue(), number(c, "topP").doubleValue(),
            number(c, "seed").longValue(), number(c, "maxTokens").intValue(), number(c, "logprobs").intValue(),
            k.isMissingNode() || k.isNull() ? SamplingParams.Controls.NONE : controls(k));
    }

    /** A choice's {@link SamplingParams.Controls}, every field written; floats and doubles read back bit for bit. */
    static ObjectNode controls(SamplingParams.Controls k) {
        ObjectNode n = MAPPER.createObjectNode();
        ArrayNode bt = n.putArray("biasTokens");
        for (int t : k.biasTokens()) {
            bt.add(t);
        }
        ArrayNode bv = n.putArray("biasValues");
        for (float v : k.biasValues()) {
            bv.add(v);
        }
        n.put("presencePenalty", k.presencePenalty()).put("frequencyPenalty", k.frequencyPenalty())
            .put("repetitionPenalty", k.repetitionPenalty()).put("topK", k.topK()).put("minP", k.minP())
            .put("minTokens", k.minTokens()).put("ignoreEos", k.ignoreEos());
        ArrayNode st = n.putArray("stopTokenIds");
        for (int t : k.stopTokenIds()) {
            st.add(t);
        }
        n.put("resumed", k.resumed());
        return n;
    }

    static SamplingParams.Controls controls(JsonNode n) {
        JsonNode bt = n.path("biasTokens");
        JsonNode bv = n.path("biasValues");
        JsonNode ignoreEos = n.path("ignoreEos");
        if (!bt.isArray() || !bv.isArray() || !ignoreEos.isBoolean()) {
            throw new IllegalArgumentException("malformed sampling controls: " + n);
        }
        return new SamplingParams.Controls(ints(bt, "biasTokens"), floats(bv), number(n, "presencePenalty").doubleValue(),
            number(n, "frequencyPenalty").doubleValue(), number(n, "repetitionPenalty").doubleValue(), number(n, "topK").intValue(),
            number(n, "minP").doubleValue(), number(n, "minTokens").intValue(), ignoreEos.asBoolean(),
            ints(n.path("stopTokenIds"), "stopTokenIds"), number(n, "resumed").intValue());
    }

    private static int[] ints(JsonNode a, String field) {
        if (!a.isArray()) {
            throw new IllegalArgumentException("field '" + field + "' must be an array, got " + a);
        }
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) {
            if (!a.get(i).canConvertToInt() || !a.get(i).isIntegralNumber()) {
                throw new IllegalArgumentException("entry " + i + " of '" + field + "' is not an int: " + a.get(i));
            }
            out[i] = a.get(i).intValue();
        }
        return out;
    }

    private static float[] floats(JsonNode a) {
        float[] out = new float[a.size()];
        for (int i = 0; i < out.length; i++) {
            if (!a.get(i).isNumber()) {
                throw new IllegalArgumentException("entry " + i + " of 'biasValues' is not a number: " + a.get(i));
            }
            out[i] = a.get(i).floatValue();
        }
        return out;
    }

    /** The token ids of one prompt of a request body. */
    static int[] tokens(JsonNode prompt) {
        JsonNode t = prompt.path("tokens");
        if (!t.isArray()) {
            throw new IllegalArgumentException("a prompt has no token array");
        }
        int[] out = new int[t.size()];
        for (int i = 0; i < out.length; i++) {
            if (!t.get(i).canConvertToInt()) {
                throw new IllegalArgumentException("token " + i + " of a prompt is not an int: " + t.get(i));
            }
            out[i] = t.get(i).intValue();
        }
        return out;
    }

    static String text(JsonNode n, String field) {
        JsonNode v = n.path(field);
        if (!v.isTextual()) {
            throw new IllegalArgumentException("field '" + field + "' must be a string, got " + v);
        }
        return v.asText();
    }

    private static JsonNode number(JsonNode n, String field) {
        JsonNode v = n.path(field);
        if (!v.isNumber()) {
            throw new IllegalArgumentException("field '" + field + "' must be a number, got " + v);
        }
        return v;
    }

    // ---- the stream -------------------------------------------------------------------------

    /** One token of choice {@code c}, with its logprobs when asked. */
    static String tokenLine(int c, int token, Sampler.Logprobs lp) {
        ObjectNode e = MAPPER.createObjectNode().put("c", c).put("t", token);
        if (lp != null) {
            ObjectNode l = e.putObject("lp");
            if (isNegativeZero(lp.logprob())) {
                l.put("l", "-0.0");
            } else {
                l.put("l", lp.logprob());
            }
            ArrayNode tt = l.putArray("tt");
            ArrayNode tl = l.putArray("tl");
            for (int i = 0; i < lp.topTokens().length; i++) {
                tt.add(lp.topTokens()[i]);
                float f = lp.topLogprobs()[i];
                if (isNegativeZero(f)) {
                    tl.add("-0.0");
                } else {
                    tl.add(f);
                }
            }
        }
        return e + "\n";
    }

    /** The logprobs of a token line, or null. */
    static Sampler.Logprobs logprobs(int token, JsonNode lp) {
        if (lp == null || lp.isNull() || lp.isMissingNode()) {
            return null;
        }
        JsonNode tt = lp.path("tt");
        JsonNode tl = lp.path("tl");
        int[] top = new int[tt.size()];
        float[] topLp = new float[tl.size()];
        for (int i = 0; i < top.length; i++) {
            top[i] = tt.get(i).intValue();
            topLp[i] = floatOf(tl.get(i));
        }
        return new Sampler.Logprobs(token, floatOf(lp.path("l")), top, topLp);
    }

    /** -0.0, which an exact decimal cannot tell from 0 (so it travels as text, as NaN and the infinities do). */
    private static boolean isNegativeZero(float f) {
        return Float.floatToRawIntBits(f) == 0x80000000;
    }

    /** A float as written: a number, or "NaN" / "-Infinity" / "-0.0" (text). */
    private static float floatOf(JsonNode n) {
        return n.isTextual() ? Float.parseFloat(n.asText()) : n.decimalValue().floatValue();
    }

    static String finishLine(int c, String finish) {
        return MAPPER.createObjectNode().put("c", c).put("finish", finish) + "\n";
    }

    /**
     * The executing node gives choice {@code c} back unfinished ({@code reason}: {@link Moved#DRAIN}
     * or {@link Moved#KV}); the front node resumes it elsewhere from the tokens it has received.
     */
    static String moveLine(int c, String reason) {
        return MAPPER.createObjectNode().put("c", c).put("move", reason) + "\n";
    }

    static String errorLine(int c, Throwable failure, String requestId) {
        ObjectNode e = MAPPER.createObjectNode().put("c", c);
        e.set("error", error(failure, requestId).get("error"));
        return e + "\n";
    }

    /** The HTTP status {@link #error} answers for {@code failure} before any stream. */
    static int status(Throwable failure) {
        return failure instanceof Engine.QueueFullException ? 429 : ApiError.of(failure, null).status();
    }

    /**
     * {@code {"error":{status, type, message, param, code}}} for a failure on the executing node:
     * as the HTTP routes would answer it ({@link ApiError#of}), plus codes for the two admission
     * refusals the front node turns back into their exception types.
     */
    static ObjectNode error(Throwable failure, String requestId) {
        ApiError a;
        if (failure instanceof Engine.QueueFullException) {
            a = new ApiError(429, "rate_limit_error", failure.getMessage(), null, QUEUE_FULL_CODE);
        } else if (failure instanceof Engine.RequestTooLargeException) {
            a = new ApiError(400, "invalid_request_error", failure.getMessage(), null, TOO_LARGE_CODE);
        } else {
            a = ApiError.of(failure, requestId);
        }
        ObjectNode root = MAPPER.createObjectNode();
        ObjectNode e = root.putObject("error").put("status", a.status()).put("type", a.type()).put("message", a.getMessage());
        e.put("param", a.param()).put("code", a.code());
        return root;
    }

    /**
     * The exception a local engine would have thrown for an error the executing node answered
     * ({@code err}: the object under "error"), so the front node's routes answer exactly as for a
     * local request: the engine's own admission exceptions, {@link IllegalArgumentException} (400),
     * {@link AdapterLoadException} and {@link Engine.UnavailableException} (503), else the
     * {@link ApiError} itself.
     */
    static RuntimeException exception(int httpStatus, JsonNode err) {
        int status = err.path("status").canConvertToInt() ? err.path("status").intValue() : httpStatus;
        String message = err.path("message").isTextual() ? err.path("message").asText() : "the executing node answered " + status;
        String code = err.path("code").isTextual() ? err.path("code").asText() : null;
        if (QUEUE_FULL_CODE.equals(code)) {
            Matcher m = QUEUE_FULL.matcher(message);
            if (m.matches()) {
                return new Engine.QueueFullException(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
                    Integer.parseInt(m.group(3)));
            }
        }
        if (TOO_LARGE_CODE.equals(code)) {
            Matcher m = TOO_LARGE.matcher(message);
            if (m.matches()) {
                return new Engine.RequestTooLargeException(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
                    Integer.parseInt(m.group(3)), Integer.parseInt(m.group(4)));
            }
        }
        if (status == 400) {
            return new IllegalArgumentException(message);
        }
        if (status == 503) {
            return "adapter_unavailable".equals(code) ? new AdapterLoadException(message, null) : new Engine.UnavailableException(message);
        }
        if (status == 401) {
            return new Engine.UnavailableException("the executing node refused this node's cluster secret: " + message);
        }
        String type = err.path("type").isTextual() ? err.path("type").asText() : "internal_error";
        String param = err.path("param").isTextual() ? err.path("param").asText() : null;
        return new ApiError(status, type, message, param, code);
    }
}
