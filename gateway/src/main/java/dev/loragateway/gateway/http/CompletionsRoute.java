package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * {@code POST /v1/completions} on the {@link RequestPath}: the request as {@link Completions}
 * parses it, answered in one body or as Server-Sent Events (an echoed prompt first, deltas with
 * their logprobs, each choice's finish chunk as soon as it ends).
 */
final class CompletionsRoute implements RequestPath.Endpoint {
    private final Completions completions;

    CompletionsRoute(Completions completions) {
        this.completions = completions;
    }

    @Override
    public String idPrefix() {
        return "cmpl-";
    }

    @Override
    public String chunkObject() {
        return "text_completion";
    }

    @Override
    public Completions.Request parse(JsonNode body, String tenant) {
        return completions.parse(body, tenant);
    }

    @Override
    public ObjectNode response(Completions.Request req, List<ChoiceRun> runs, String id, long created) {
        return completions.response(req, runs, id, created);
    }

    @Override
    public RequestPath.Stream stream(Completions.Request req, String id, long now) {
        int choices = req.prompts().size() * req.n();
        int[] tokenOffset = new int[choices]; // per choice: text_offset of its next token (after an echoed prompt)
        for (int i = 0; i < choices && req.echo(); i++) {
            tokenOffset[i] = completions.promptText(req, i / req.n()).length();
        }
        return new RequestPath.Stream() {
            @Override
            public List<ObjectNode> opening() {
                List<ObjectNode> out = new ArrayList<>();
                for (int i = 0; i < choices && req.echo(); i++) { // the prompt comes first, as in the non-streamed text
                    String prompt = completions.promptText(req, i / req.n());
                    if (!prompt.isEmpty()) {
                        out.add(chunk(req, id, now, i, prompt, null));
                    }
                }
                return out;
            }

            @Override
            public Supplier<ObjectNode> delta(int index, String text, List<ChoiceRun.TokenInfo> tokens) {
                ObjectNode c = withLogprobs(chunk(req, id, now, index, text, null), index, tokens);
                return () -> c;
            }

            @Override
            public Supplier<ObjectNode> finished(int index, String reason, List<ChoiceRun.TokenInfo> rest) {
                ObjectNode c = withLogprobs(chunk(req, id, now, index, "", reason), index, rest);
                return () -> c;
            }

            /** The tokens' logprobs in the chunk, as the non-streamed response lists them (built at once: the offsets advance in order). */
            private ObjectNode withLogprobs(ObjectNode chunk, int index, List<ChoiceRun.TokenInfo> tokens) {
                if (req.logprobs() >= 0) {
                    ObjectNode lp = completions.logprobs(tokens, tokenOffset[index]);
                    for (ChoiceRun.TokenInfo t : tokens) {
                        tokenOffset[index] += t.text().length();
                    }
                    ((ObjectNode) chunk.get("choices").get(0)).set("logprobs", lp);
                }
                return chunk;
            }
        };
    }

    private ObjectNode chunk(Completions.Request req, String id, long now, int index, String text, String finish) {
        ObjectNode c = RequestPath.head(req, id, now, chunkObject());
        ObjectNode ch = c.putArray("choices").addObject().put("index", index).put("text", text);
        ch.putNull("logprobs");
        if (finish == null) {
            ch.putNull("finish_reason");
        } else {
            ch.put("finish_reason", finish);
        }
        return c;
    }
}
