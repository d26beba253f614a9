package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.gateway.text.ChatTemplate;
import dev.loragateway.gateway.text.ChatTemplateException;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.gateway.text.TokenBytes;
import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.WorkerExecutor;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.RoutingContext;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code POST /v1/chat/completions}: the messages rendered with the model's {@code chat_template}
 * ({@code add_generation_prompt=true}), tokenized without adding special tokens (the template writes
 * {@code bos_token} itself, as {@code transformers} does), then generated exactly as {@link
 * Completions} generates a token-id prompt: same validation of the shared fields, same choices
 * (stop strings, EOS kept out of the text), in OpenAI's chat shapes.
 *
 * <p>Differences from {@code /v1/completions}, as in OpenAI's API: {@code max_completion_tokens}
 * (wins over {@code max_tokens}); without either, the completion may use the rest of {@code
 * --max-model-len}; {@code logprobs} is a boolean with {@code top_logprobs} (0 to 5) beside it;
 * {@code usage.prompt_tokens} counts the prompt once whatever {@code n}.
 *
 * <p>Streaming: per choice a first chunk with {@code delta: {role: "assistant", content: ""}}, then
 * {@code delta: {content}} chunks (with the log-probabilities of the tokens whose text they release),
 * then one {@code delta: {}} chunk with the finish reason; then the usage chunk ({@code choices: []})
 * when {@code stream_options.include_usage}, and {@code [DONE]}.
 */
final class ChatCompletions {
    private static final Logger LOG = LoggerFactory.getLogger(ChatCompletions.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    static final int MAX_TOP_LOGPROBS = 20; // as OpenAI's chat API

    private final Vertx vertx;
    private final Engine engine;
    private final TextTokenizer tokenizer;
    private final Completions completions;
    private final AtomicInteger inFlight;
    private final WorkerExecutor prompts;
    private final ChatTemplate template; // null when the model has none, or it does not parse
    private final String noTemplate;     // then: why

    /**
     * @param inFlight the server's count of running requests (draining waits for it)
     * @param prompts the worker threads that parse, render and tokenize requests
     */
    ChatCompletions(Vertx vertx, Engine engine, TextTokenizer tokenizer, Completions completions, AtomicInteger inFlight,
                    WorkerExecutor prompts) {
        this.vertx = vertx;
        this.prompts = prompts;
        this.engine = engine;
        this.tokenizer = tokenizer;
        this.completions = completions;
        this.inFlight = inFlight;
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
    Completions.Request parse(JsonNode body, String tenant) {
        Completions.requireObject(body);
        String model = Json.string(body, "model", true);
        AdapterKey adapter = completions.adapter(model, tenant);
        List<Map<String, Object>> messages = ChatMessages.parse(body.get("messages"));
        boolean logprobs = Json.bool(body, "logprobs", false);
        if (!Json.absent(body, "top_logprobs") && !logprobs) {
            throw ApiError.badRequest("'top_logprobs' requires 'logprobs' to be true", "top_logprobs");
        }
        int top = Json.integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS);
        // read as longs so that a value past 32 bits gets the context-length message too, with both numbers
        long maxCompletion = Json.absent(body, "max_completion_tokens") ? -1 : Json.integral(body, "max_completion_tokens", -1, 0, Long.MAX_VALUE);
        long maxTokens = Json.absent(body, "max_tokens") ? -1 : Json.integral(body, "max_tokens", -1, 0, Long.MAX_VALUE);
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
        String limitField = maxCompletion >= 0 ? "max_completion_tokens" : "max_tokens";
        long max = maxCompletion >= 0 ? maxCompletion : maxTokens >= 0 ? maxTokens : Math.max(0, completions.maxModelLen() - ids.length);
        completions.checkLength(ids, max, "messages", limitField);
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

    /** The route's handler (after authentication and the tenant's concurrency limit). */
    void handle(RoutingContext ctx) {
        String tenant = ApiServer.tenant(ctx).id();
        Context context = vertx.getOrCreateContext();
        // decoding the body, rendering the template and tokenizing take time that grows with the
        // messages: off the event loop, so that /health and other requests are answered meanwhile
        Inference.parseThenRun(ctx, inFlight, prompts, () -> parse(ApiServer.body(ctx), tenant), req -> {
            ctx.put(ApiServer.MODEL, req.model());
            String id = "chatcmpl-" + UUID.randomUUID().toString().replace("-", "");
            long now = System.currentTimeMillis() / 1000;
            if (req.stream()) {
                stream(ctx, req, tenant, id, now, context);
            } else {
                Completions.Submitted sub = completions.submit(engine, req, tenant, null);
                Inference.answer(ctx, context, inFlight, sub, runs -> response(req, runs, id, now));
            }
        });
    }

    private void stream(RoutingContext ctx, Completions.Request req, String tenant, String id, long now, Context context) {
        HttpServerResponse resp = ctx.response();
        Completions.Submitted sub = completions.submit(engine, req, tenant, new Completions.ChoiceListener() {
            @Override
            public void delta(int index, String text, List<ChoiceRun.TokenInfo> tokens) {
                // built on the event loop: the engine thread only hands over immutable pieces
                send(() -> chunk(req, id, now, index, JSON.createObjectNode().put("content", text), tokens, null));
            }

            @Override
            public void finished(int index, String reason, List<ChoiceRun.TokenInfo> rest) {
                send(() -> chunk(req, id, now, index, JSON.createObjectNode(), rest, reason));
            }

            private void send(java.util.function.Supplier<ObjectNode> chunk) {
                context.runOnContext(v -> {
                    if (!resp.closed()) {
                        resp.write("data: " + chunk.get() + "\n\n");
                    }
                });
            }
        });
        resp.setChunked(true).putHeader("Content-Type", "text/event-stream").putHeader("Cache-Control", "no-cache");
        // the role chunks go out before any delta: deltas run on this context after this handler
        for (int i = 0; i < req.n(); i++) {
            ObjectNode role = JSON.createObjectNode().put("role", "assistant").put("content", "");
            resp.write("data: " + chunk(req, id, now, i, role, List.of(), null) + "\n\n");
        }
        Inference.endStream(ctx, context, inFlight, sub, id, runs -> {
            ObjectNode usage = usage(req, runs);
            ctx.put(ApiServer.USAGE, ApiServer.usage(usage));
            if (req.includeUsage()) {
                ObjectNode u = head(req, id, now, "chat.completion.chunk");
                u.putArray("choices");
                u.set("usage", usage);
                resp.write("data: " + u + "\n\n");
            }
        });
    }

    private static ObjectNode head(Completions.Request req, String id, long now, String object) {
        return JSON.createObjectNode().put("id", id).put("object", object).put("created", now).put("model", req.model());
    }

    /** One streamed chunk of choice {@code index}; {@code tokens} are its log-probabilities (when asked for). */
    private ObjectNode chunk(Completions.Request req, String id, long now, int index, ObjectNode delta,
                             List<ChoiceRun.TokenInfo> tokens, String finish) {
        ObjectNode c = head(req, id, now, "chat.completion.chunk");
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

    ObjectNode response(Completions.Request req, List<ChoiceRun> runs, String id, long now) {
        ObjectNode root = head(req, id, now, "chat.completion");
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
        root.set("usage", usage(req, runs));
        return root;
    }

    /** The prompt counts once: the {@code n} choices share its prefill. */
    private static ObjectNode usage(Completions.Request req, List<ChoiceRun> runs) {
        int prompt = req.prompts().get(0).length;
        int completion = 0;
        for (ChoiceRun run : runs) {
            completion += run.completionTokens;
        }
        return JSON.createObjectNode().put("prompt_tokens", prompt).put("completion_tokens", completion)
            .put("total_tokens", prompt + completion);
    }

    /** OpenAI's {@code logprobs: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}}. */
    private ObjectNode logprobs(List<ChoiceRun.TokenInfo> tokens) {
        ObjectNode lp = JSON.createObjectNode();
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
