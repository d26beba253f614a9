package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.batcher.Engine;
import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.WorkerExecutor;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.RoutingContext;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The {@code POST /v1/completions} handler: parse (a 400 naming the field), submit every choice to
 * the engine (429 when its queue is full), answer in one body or as Server-Sent Events (deltas
 * with their logprobs, each choice's finish chunk as soon as it ends, usage, {@code [DONE]}), and
 * cancel the choices when the client goes away.
 */
final class CompletionsRoute {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Vertx vertx;
    private final Engine engine;
    private final Completions completions;
    private final AtomicInteger inFlight;
    private final WorkerExecutor prompts;

    /**
     * @param inFlight the server's count of running requests (draining waits for it)
     * @param prompts the worker threads that parse and tokenize requests
     */
    CompletionsRoute(Vertx vertx, Engine engine, Completions completions, AtomicInteger inFlight, WorkerExecutor prompts) {
        this.vertx = vertx;
        this.prompts = prompts;
        this.engine = engine;
        this.completions = completions;
        this.inFlight = inFlight;
    }

    void handle(RoutingContext ctx) {
        String tenant = ApiServer.tenant(ctx).id();
        Context context = vertx.getOrCreateContext();
        String[] named = new String[1]; // the model the body names, logged even when it is no model we have (404)
        // decoding the body and tokenizing take time that grows with the prompt: off the event loop,
        // so that /health and other requests are answered meanwhile
        Inference.parseThenRun(ctx, inFlight, prompts, () -> {
            JsonNode json = ApiServer.body(ctx);
            if (json.path("model").isTextual()) {
                String m = json.get("model").asText();
                named[0] = m.length() > ApiServer.MAX_LOGGED_MODEL ? m.substring(0, ApiServer.MAX_LOGGED_MODEL) + "..." : m;
            }
            return completions.parse(json, tenant);
        }, () -> {
            if (named[0] != null) {
                ctx.put(ApiServer.MODEL, named[0]);
            }
        }, req -> {
            ctx.put(ApiServer.MODEL, req.model());
            String id = "cmpl-" + UUID.randomUUID().toString().replace("-", "");
            long now = System.currentTimeMillis() / 1000;
            if (req.stream()) {
                stream(ctx, req, id, now, context);
            } else {
                Completions.Submitted sub = completions.submit(engine, req, tenant, null);
                Inference.answer(ctx, context, inFlight, sub, runs -> completions.response(req, runs, id, now));
            }
        });
    }

    private void stream(RoutingContext ctx, Completions.Request req, String id, long now, Context context) {
        HttpServerResponse resp = ctx.response();
        int choices = req.prompts().size() * req.n();
        int[] tokenOffset = new int[choices]; // per choice: text_offset of its next token (after an echoed prompt)
        for (int i = 0; i < choices && req.echo(); i++) {
            tokenOffset[i] = completions.promptText(req, i / req.n()).length();
        }
        Completions.Submitted sub = completions.submit(engine, req, ApiServer.tenant(ctx).id(), new Completions.ChoiceListener() {
            @Override
            public void delta(int index, String text, List<ChoiceRun.TokenInfo> tokens) {
                send(withLogprobs(chunk(req, id, now, index, text, null), index, tokens));
            }

            @Override
            public void finished(int index, String reason, List<ChoiceRun.TokenInfo> rest) { // sent as soon as the choice ends
                send(withLogprobs(chunk(req, id, now, index, "", reason), index, rest));
            }

            /** The tokens' logprobs in the chunk, as the non-streamed response lists them (engine thread). */
            private String withLogprobs(ObjectNode chunk, int index, List<ChoiceRun.TokenInfo> tokens) {
                if (req.logprobs() >= 0) {
                    ObjectNode lp = completions.logprobs(tokens, tokenOffset[index]);
                    for (ChoiceRun.TokenInfo t : tokens) {
                        tokenOffset[index] += t.text().length();
                    }
                    ((ObjectNode) chunk.get("choices").get(0)).set("logprobs", lp);
                }
                return chunk.toString();
            }

            private void send(String chunk) {
                context.runOnContext(v -> {
                    if (!resp.closed()) {
                        resp.write("data: " + chunk + "\n\n");
                    }
                });
            }
        });
        resp.setChunked(true).putHeader("Content-Type", "text/event-stream").putHeader("Cache-Control", "no-cache");
        if (req.echo()) { // the prompt comes first, as in the non-streamed text; deltas run on this context after it
            for (int i = 0; i < req.prompts().size() * req.n(); i++) {
                String prompt = completions.promptText(req, i / req.n());
                if (!prompt.isEmpty()) {
                    resp.write("data: " + chunk(req, id, now, i, prompt, null) + "\n\n");
                }
            }
        }
        Inference.endStream(ctx, context, inFlight, sub, id, runs -> {
            int completion = 0;
            for (ChoiceRun run : runs) {
                completion += run.completionTokens;
            }
            ctx.put(ApiServer.USAGE, ApiServer.usage(completions.usage(req, completion)));
            if (req.includeUsage()) {
                ObjectNode u = JSON.createObjectNode().put("id", id).put("object", "text_completion")
                    .put("created", now).put("model", req.model());
                u.putArray("choices");
                u.set("usage", completions.usage(req, completion));
                resp.write("data: " + u + "\n\n");
            }
        });
    }

    private ObjectNode chunk(Completions.Request req, String id, long now, int index, String text, String finish) {
        ObjectNode c = JSON.createObjectNode().put("id", id).put("object", "text_completion").put("created", now)
            .put("model", req.model());
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
