package dev.loragateway.loadtests;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.scheduler.workload.TraceRequest;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The request a trace entry becomes: its endpoint and body, as one Gatling feeder record.
 *
 * <p>{@code /v1/completions} gets a prompt of token ids, so its length is exactly the trace's (the
 * gateway uses a token-id prompt as given); {@code /v1/chat/completions} gets a text of about that
 * many words, since chat takes text only (the token count then depends on the model's tokenizer and
 * its chat template). {@code max_tokens} is the trace's output length; decoding is greedy
 * ({@code temperature} 0), so the same trace asks the same work of the server every run. Streamed
 * requests ask for {@code stream_options.include_usage}, the exact output token count.
 */
final class Payloads {
    /** Ids below this are commonly special tokens (unk, bos, eos, pad): prompts avoid them. */
    static final int FIRST_ID = 4;
    private static final String[] WORDS = {"the", "adapter", "model", "serves", "many", "tenants", "on", "one", "base",
        "batch", "of", "requests", "shares", "a", "kernel", "and", "cache", "token"};

    private Payloads() {
    }

    /**
     * The feeder record of request {@code index}: {@code tenant}, {@code class} (popularity),
     * {@code model}, {@code api}, {@code stream}, {@code path}, {@code body}, {@code arrivalMs},
     * {@code promptTokens}, {@code maxTokens}, {@code index}.
     */
    static Map<String, Object> record(LoadSpec spec, long index, TraceRequest r) {
        String api = spec.apis().get((int) (index % spec.apis().size()));
        boolean stream = spec.streams().get((int) ((index / spec.apis().size()) % spec.streams().size()));
        String model = r.adapter() != null ? r.adapter() : spec.baseModel();
        SplittableRandom rnd = new SplittableRandom(spec.workload().seed() * 1_000_003L + index);
        ObjectNode body = JsonNodeFactory.instance.objectNode();
        body.put("model", model);
        if (api.equals("completions")) {
            ArrayNode ids = body.putArray("prompt");
            for (int i = 0; i < r.promptTokens(); i++) ids.add(FIRST_ID + rnd.nextInt(spec.vocab() - FIRST_ID));
        } else {
            StringBuilder text = new StringBuilder();
            for (int i = 0; i < r.promptTokens(); i++) {
                if (i > 0) text.append(' ');
                text.append(WORDS[rnd.nextInt(WORDS.length)]);
            }
            body.putArray("messages").addObject().put("role", "user").put("content", text.toString());
        }
        body.put("max_tokens", r.outputTokens());
        body.put("temperature", 0);
        if (stream) {
            body.put("stream", true);
            body.putObject("stream_options").put("include_usage", true);
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("index", index);
        m.put("tenant", r.tenant());
        m.put("class", r.popularity());
        m.put("model", model);
        m.put("api", api);
        m.put("stream", stream);
        m.put("path", api.equals("completions") ? "/v1/completions" : "/v1/chat/completions");
        m.put("body", body.toString());
        m.put("arrivalMs", Math.round(r.arrivalSeconds() * 1000));
        m.put("promptTokens", r.promptTokens());
        m.put("maxTokens", r.outputTokens());
        return m;
    }
}
