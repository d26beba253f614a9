package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.gateway.text.ChatTemplate;
import dev.loragateway.gateway.text.ChatTemplateException;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.gateway.text.TokenBytes;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code POST /v1/chat/completions}: the messages rendered with the model's {@code chat_template}
 * ({@code add_generation_prompt=true}), tokenized without adding special tokens (the template writes
 * {@code bos_token} itself, as {@code transformers} does), then generated exactly as {@link
 * Completions} generates a token-id prompt: same validation of the shared fields, same choices
 * (stop strings, EOS kept out of the text), in OpenAI's chat shapes.
 *
 * <p>Differences from {@code /v1/completions}, as in OpenAI's API: without {@code max_tokens} or
 * {@code max_completion_tokens} (one limit, two names on both routes), the completion may use the
 * rest of {@code --max-model-len}; {@code logprobs} is a boolean with {@code top_logprobs} (0 to 5) beside it;
 * {@code usage.prompt_tokens} counts the prompt once whatever {@code n}.
 *
 * <p>Streaming: per choice a first chunk with {@code delta: {role: "assistant", content: ""}}, then
 * {@code delta: {content}} chunks (with the log-probabilities of the tokens whose text they release),
 * then one {@code delta: {}} chunk with the finish reason; then the usage chunk ({@code choices: []})
 * when {@code stream_options.include_usage}, and {@code [DONE]}.
 */
final class ChatCompletions implements RequestPath.Endpoint {
    private static final Logger LOG = LoggerFactory.getLogger(ChatCompletions.class);
    static final int MAX_TOP_LOGPROBS = 20; // as OpenAI's chat API

    private final TextTokenizer tokenizer;
    private final Completions completions;
    private final ChatTemplate template; // null when the model has none, or it does not parse
    private final String noTemplate;     // then: why

    /** @param completions the validation of the fields chat shares with {@code /v1/completions} */
    ChatCompletions(TextTokenizer tokenizer, Completions completions) {
        this.tokenizer = tokenizer;
        this.completions = completions;
        ChatTemplate t = null;
        String why = "the model has no chat_template (tokenizer_config.json or chat_template.jinja); use /v1/completions";
        try {
            t = ChatTemplate.of(tokenizer).orElse(null);
        } catch (ChatTemplateException e) {
            LOG.warn("the model's chat template cannot be used: {}", e.getMessage());
            why = "the model's chat_template cannot be used: " + e.getMessage();
        }
        this.template = t;
        this.noTemplate = why;
    }

    /** A validated request, as a completion of the rendered prompt (one prompt; {@code logprobs}: top_logprobs or -1). */
    @Override
    public Completions.Request parse(JsonNode body, String tenant) {
        Completions.requireObject(body);
        String model = Json.string(body, "model", true);
        AdapterKey adapter = completions.adapter(model, tenant);
        List<Map<String, Object>> messages = ChatMessages.parse(body.get("messages"));
        boolean logprobs = Json.bool(body, "logprobs", false);
        if (!Json.absent(body, "top_logprobs") && !logprobs) {
            throw ApiError.badRequest("'top_logprobs' requires 'logprobs' to be true", "top_logprobs");
        }
        int top = Json.integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS);
        Completions.MaxTokens limit = Completions.maxTokens(body);
        long text = 0;
        for (Map<String, Object> m : messages) { // before rendering and tokenizing: their time grows with the text
            for (Object v : m.values()) {
                if (v instanceof CharSequence cs) {
                    text += Completions.utf8Length(cs);
                }
            }
        }
        completions.checkBytes(text, "text of the messages", "messages");
        String prompt = render(messages);
        completions.checkBytes(Completions.utf8Length(prompt), "rendered prompt", "messages");
        int[] ids = tokenizer.encode(prompt, false);
        long max = limit.value() >= 0 ? limit.value() : Math.max(0, completions.maxModelLen() - ids.length);
        completions.checkLength(ids, max, "messages", limit.field());
        return completions.request(body, model, adapter, List.of(ids), List.of(prompt), (int) max, logprobs ? top : -1, false);
    }

    private String render(List<Map<String, Object>> messages) {
        if (template == null) {
            throw ApiError.badRequest(noTemplate, null);
        }
        try {
            return template.render(messages, true);
        } catch (ChatTemplateException e) {
            throw ApiError.badRequest("the model's chat template rejects these messages: " + e.getMessage(), "messages");
        }
    }

    @Override
    public String idPrefix() {
        return "chatcmpl-";
    }

    @Override
    public String chunkObject() {
        return "chat.completion.chunk";
    }

    @Override
    public RequestPath.Stream stream(Completions.Request req, String id, long now) {
        return new RequestPath.Stream() {
            @Override
            public List<ObjectNode> opening() {
                List<ObjectNode> roles = new ArrayList<>();
                for (int i = 0; i < req.n(); i++) {
                    ObjectNode role = Json.MAPPER.createObjectNode().put("role", "assistant").put("content", "");
                    roles.add(chunk(req, id, now, i, role, List.of(), null));
                }
                return roles;
            }

            // built on the event loop: the executor's thread only hands over immutable pieces
            @Override
            public Supplier<ObjectNode> delta(int index, String text, List<ChoiceRun.TokenInfo> tokens) {
                return () -> chunk(req, id, now, index, Json.MAPPER.createObjectNode().put("content", text), tokens, null);
            }

            @Override
            public Supplier<ObjectNode> finished(int index, String reason, List<ChoiceRun.TokenInfo> rest) {
                return () -> chunk(req, id, now, index, Json.MAPPER.createObjectNode(), rest, reason);
            }
        };
    }

    /** One streamed chunk of choice {@code index}; {@code tokens} are its log-probabilities (when asked for). */
    private ObjectNode chunk(Completions.Request req, String id, long now, int index, ObjectNode delta,
                             List<ChoiceRun.TokenInfo> tokens, String finish) {
        ObjectNode c = RequestPath.head(req, id, now, chunkObject());
        ObjectNode ch = c.putArray("choices").addObject().put("index", index);
        ch.set("delta", delta);
        if (req.logprobs() >= 0 && !tokens.isEmpty()) {
            ch.set("logprobs", logprobs(tokens));
        } else {
            ch.putNull("logprobs");
        }
        if (finish == null) {
            ch.putNull("finish_reason");
        } else {
            ch.put("finish_reason", finish);
        }
        if (req.includeUsage()) { // as OpenAI: every chunk but the last has "usage": null
            c.putNull("usage");
        }
        return c;
    }

    @Override
    public ObjectNode response(Completions.Request req, List<ChoiceRun> runs, String id, long now) {
        ObjectNode root = RequestPath.head(req, id, now, "chat.completion");
        ArrayNode choices = root.putArray("choices");
        for (int i = 0; i < runs.size(); i++) {
            ChoiceRun run = runs.get(i);
            ObjectNode c = choices.addObject().put("index", i);
            c.putObject("message").put("role", "assistant").put("content", run.text.toString());
            if (req.logprobs() >= 0) {
                c.set("logprobs", logprobs(run.tokens));
            } else {
                c.putNull("logprobs");
            }
            c.put("finish_reason", run.finishReason);
        }
        root.set("usage", RequestPath.usage(req, runs));
        return root;
    }

    /** OpenAI's {@code logprobs: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}}. */
    private ObjectNode logprobs(List<ChoiceRun.TokenInfo> tokens) {
        ObjectNode lp = Json.MAPPER.createObjectNode();
        ArrayNode content = lp.putArray("content");
        for (ChoiceRun.TokenInfo t : tokens) {
            Sampler.Logprobs l = t.logprobs();
            ObjectNode e = token(content.addObject(), t.id(), t.text(), l.logprob());
            ArrayNode top = e.putArray("top_logprobs");
            for (int k = 0; k < l.topTokens().length; k++) {
                int alt = l.topTokens()[k];
                token(top.addObject(), alt, tokenizer.decode(new int[] {alt}, false), l.topLogprobs()[k]);
            }
        }
        return lp;
    }

    private ObjectNode token(ObjectNode e, int id, String text, float logprob) {
        e.put("token", text).put("logprob", logprob);
        ArrayNode bytes = e.putArray("bytes");
        for (byte b : TokenBytes.of(tokenizer, id, text)) {
            bytes.add(b & 0xFF);
        }
        return e;
    }
}
