package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.gateway.cluster.ExecutingNode;
import dev.loragateway.gateway.text.TextTokenizer;
import io.opentelemetry.api.trace.Span;
import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.WorkerExecutor;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.RoutingContext;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The one path of an inference request, {@code /v1/completions} and {@code /v1/chat/completions}
 * alike; an {@link Endpoint} plugs in its prompt building and its response shapes.
 * <ol>
 *   <li>parse on a worker thread (decoding the body, rendering a chat template and tokenizing
 *   take time that grows with the prompt, so they never run on the event loop; the pool's size
 *   bounds how many run at once), counted in flight from the start so that draining waits for it;
 *   the {@code model} the body names is recorded for the access log, metrics and span even when
 *   the request fails (a 404 for an unknown model included);
 *   <li>submit every choice to the {@link InferenceExecutor} with the request's span as trace
 *   context (429 when its queue is full; a client gone meanwhile is not submitted);
 *   <li>answer in one body, or as Server-Sent Events: the endpoint's opening chunks, deltas,
 *   each choice's finish chunk as soon as it ends, the usage chunk when asked for, {@code [DONE]};
 *   cancel the choices when the client goes away.
 * </ol>
 * Every failure is answered through {@link ApiError#of}: a JSON error, or the error event that
 * ends a stream whose head is already sent.
 */
final class RequestPath {
    /** What an endpoint plugs into the path. */
    interface Endpoint {
        /** Prefix of its response ids ({@code cmpl-}). */
        String idPrefix();

        /** The {@code object} of its stream chunks. */
        String chunkObject();

        /** Validates {@code body} and builds the prompts (on a worker thread): a 400 naming the field, a 404 for an unknown model. */
        Completions.Request parse(JsonNode body, String tenant);

        /** The body of a non-streamed answer; it has the {@code usage} object. */
        ObjectNode response(Completions.Request req, List<ChoiceRun> runs, String id, long created);

        /** The chunks of one streamed answer. */
        Stream stream(Completions.Request req, String id, long created);
    }

    /** An endpoint's chunks of one streamed answer. */
    interface Stream {
        /** What goes out before any delta (on the event loop). */
        List<ObjectNode> opening();

        /**
         * The chunk of new final text of choice {@code index} with the tokens it releases (on the
         * executor's thread, called in order); the supplier runs on the event loop.
         */
        Supplier<ObjectNode> delta(int index, String text, List<ChoiceRun.TokenInfo> tokens);

        /** Choice {@code index}'s last chunk, with tokens not handed out before (as {@link #delta}). */
        Supplier<ObjectNode> finished(int index, String reason, List<ChoiceRun.TokenInfo> rest);
    }

    /** A submitted request: its choices (filled in as tokens arrive) and the future of all of them. */
    record Submitted(List<ChoiceRun> runs, List<CompletableFuture<Generator.Finish>> futures, CompletableFuture<List<ChoiceRun>> done) {
        /** Stops every choice (the client went away). */
        void cancel() {
            futures.forEach(f -> f.cancel(false));
        }
    }

    private final Vertx vertx;
    private final InferenceExecutor executor;
    private final TextTokenizer tokenizer;
    private final AtomicInteger inFlight;
    private final WorkerExecutor workers;

    /**
     * @param inFlight the server's count of running requests (draining waits for it)
     * @param workers the worker threads that parse, render and tokenize requests
     */
    RequestPath(Vertx vertx, InferenceExecutor executor, TextTokenizer tokenizer, AtomicInteger inFlight, WorkerExecutor workers) {
        this.vertx = vertx;
        this.executor = executor;
        this.tokenizer = tokenizer;
        this.inFlight = inFlight;
        this.workers = workers;
    }

    /** The route handler of {@code endpoint} (after authentication and the tenant's concurrency limit). */
    void handle(RoutingContext ctx, Endpoint endpoint) {
        String tenant = ApiServer.tenant(ctx).id();
        Context context = vertx.getOrCreateContext();
        String[] named = new String[1]; // the model the body names, logged even when it is no model we have (404)
        inFlight.incrementAndGet();
        workers.executeBlocking(() -> {
            JsonNode body = Json.body(ctx);
            named[0] = loggedModel(body);
            return endpoint.parse(body, tenant);
        }, false).onComplete(ar -> {
            if (named[0] != null) {
                ctx.put(ApiServer.MODEL, named[0]);
            }
            if (ar.failed() || ctx.response().closed()) {
                inFlight.decrementAndGet();
                if (ar.failed()) {
                    fail(ctx, ar.cause());
                }
                return;
            }
            try {
                run(ctx, context, endpoint, ar.result(), tenant);
            } catch (Engine.QueueFullException e) {
                inFlight.decrementAndGet();
                ctx.response().putHeader("Retry-After", "1");
                ApiServer.error(ctx.response(), new ApiError(429, "rate_limit_error", e.getMessage(), null, "queue_full"));
            } catch (RuntimeException | Error e) { // an Error too: a request counted in flight forever would stall the drain
                inFlight.decrementAndGet();
                fail(ctx, e);
            }
        });
    }

    /** The {@code model} field as the access log keeps it (at most {@link ApiServer#MAX_LOGGED_MODEL} chars), or null. */
    private static String loggedModel(JsonNode body) {
        if (!body.path("model").isTextual()) {
            return null;
        }
        String m = body.get("model").asText();
        return m.length() > ApiServer.MAX_LOGGED_MODEL ? m.substring(0, ApiServer.MAX_LOGGED_MODEL) + "..." : m;
    }

    private void run(RoutingContext ctx, Context context, Endpoint endpoint, Completions.Request req, String tenant) {
        ctx.put(ApiServer.MODEL, req.model());
        String id = endpoint.idPrefix() + UUID.randomUUID().toString().replace("-", "");
        long now = System.currentTimeMillis() / 1000;
        HttpServerResponse resp = ctx.response();
        if (!req.stream()) {
            whenDone(resp, context, submit(ctx, req, tenant, null), failure -> fail(ctx, failure), runs -> {
                ObjectNode b = endpoint.response(req, runs, id, now);
                ctx.put(ApiServer.USAGE, ApiServer.usage(b.get("usage")));
                ApiServer.json(resp, 200, b);
            });
            return;
        }
        Stream stream = endpoint.stream(req, id, now);
        Submitted sub = submit(ctx, req, tenant, new ChoiceListener() {
            @Override
            public void delta(int index, String text, List<ChoiceRun.TokenInfo> tokens) {
                send(stream.delta(index, text, tokens));
            }

            @Override
            public void finished(int index, String reason, List<ChoiceRun.TokenInfo> rest) { // sent as soon as the choice ends
                send(stream.finished(index, reason, rest));
            }

            private void send(Supplier<ObjectNode> chunk) {
                context.runOnContext(v -> {
                    if (!resp.closed()) {
                        resp.write("data: " + chunk.get() + "\n\n");
                    }
                });
            }
        });
        resp.setChunked(true).putHeader("Content-Type", "text/event-stream").putHeader("Cache-Control", "no-cache");
        // the opening goes out before any delta: deltas run on this context after this handler
        for (ObjectNode chunk : stream.opening()) {
            resp.write("data: " + chunk + "\n\n");
        }
        whenDone(resp, context, sub, failure -> {
            resp.write("data: " + ApiError.of(failure, ctx.get(ApiServer.REQUEST_ID)).toJson() + "\n\n");
            resp.end("data: [DONE]\n\n");
        }, runs -> {
            ObjectNode usage = usage(req, runs);
            ctx.put(ApiServer.USAGE, ApiServer.usage(usage));
            if (req.includeUsage()) {
                ObjectNode u = head(req, id, now, endpoint.chunkObject());
                u.putArray("choices");
                u.set("usage", usage);
                resp.write("data: " + u + "\n\n");
            }
            resp.end("data: [DONE]\n\n");
        });
    }

    /**
     * Cancels {@code sub} when the client goes away; once all its choices are done, on the event
     * loop: the request leaves the in-flight count and, unless the client is gone, {@code failed}
     * or {@code answered} ends the response.
     */
    private void whenDone(HttpServerResponse resp, Context context, Submitted sub, Consumer<Throwable> failed,
                          Consumer<List<ChoiceRun>> answered) {
        resp.closeHandler(v -> sub.cancel());
        sub.done().whenComplete((runs, failure) -> context.runOnContext(v -> {
            inFlight.decrementAndGet();
            if (resp.closed()) {
                return;
            }
            if (failure != null) {
                failed.accept(failure);
            } else {
                answered.accept(runs);
            }
        }));
    }

    private static void fail(RoutingContext ctx, Throwable failure) {
        ApiServer.error(ctx.response(), ApiError.of(failure, ctx.get(ApiServer.REQUEST_ID)));
    }

    /** {@code {"id", "object", "created", "model"}}: how every response body and chunk begins. */
    static ObjectNode head(Completions.Request req, String id, long created, String object) {
        return Json.MAPPER.createObjectNode().put("id", id).put("object", object).put("created", created).put("model", req.model());
    }

    /** Each prompt counts once, whatever {@code n} (the choices share its prefill; as OpenAI and vLLM count). */
    static ObjectNode usage(Completions.Request r, List<ChoiceRun> runs) {
        int prompt = 0;
        for (int[] p : r.prompts()) {
            prompt += p.length;
        }
        int completion = 0;
        for (ChoiceRun run : runs) {
            completion += run.completionTokens;
        }
        return Json.MAPPER.createObjectNode().put("prompt_tokens", prompt).put("completion_tokens", completion)
            .put("total_tokens", prompt + completion);
    }

    /** Receives streamed text of each choice, in order (from the executor's thread, but a {@code finished} may run on the submitting one). */
    interface ChoiceListener {
        /** {@code tokens}: the choice's tokens handed out with this text (empty without logprobs). */
        void delta(int index, String text, List<ChoiceRun.TokenInfo> tokens);

        /** Choice {@code index} is done (after its last delta); {@code rest}: its tokens not handed out with a delta. */
        void finished(int index, String reason, List<ChoiceRun.TokenInfo> rest);
    }

    /**
     * Sampling parameters of choice {@code i}: the request's seed (without one, a random one per
     * request) plus the choice's index, so that the n choices of a seeded request differ from each
     * other and repeat from one request to the next.
     */
    static SamplingParams params(Completions.Request r, long baseSeed, int choice) {
        return new SamplingParams(r.temperature(), r.topP(), baseSeed + choice, r.maxTokens(), r.logprobs(), r.controls());
    }

    /**
     * Submits every choice to the executor, where they join the running batch; {@code onDelta}
     * streams text when non-null. {@code done} completes with the choices in index order. The
     * request is queued all or none: its prompts × n sequences count against the queue bound
     * together.
     *
     * @throws Engine.QueueFullException when the queue has no room for them now (nothing is submitted)
     * @throws Engine.RequestTooLargeException when they are more than the whole queue holds (a 400)
     */
    private Submitted submit(RoutingContext ctx, Completions.Request r, String tenant, ChoiceListener onDelta) {
        long seed = r.seed() != null ? r.seed() : ThreadLocalRandom.current().nextLong();
        List<ChoiceRun> runs = new ArrayList<>();
        List<InferenceExecutor.Prompt> prompts = new ArrayList<>();
        for (int pi = 0; pi < r.prompts().size(); pi++) {
            int[] prompt = r.prompts().get(pi);
            List<InferenceExecutor.Choice> choices = new ArrayList<>();
            for (int c = 0; c < r.n(); c++) {
                int index = pi * r.n() + c;
                ChoiceRun.Sink sink = onDelta == null ? null : (d, tokens) -> onDelta.delta(index, d, tokens);
                SamplingParams params = params(r, seed, index);
                ChoiceRun run = new ChoiceRun(tokenizer, executor.config(), params, r.stop(), prompt, sink);
                runs.add(run);
                choices.add(new InferenceExecutor.Choice(params, run));
            }
            prompts.add(new InferenceExecutor.Prompt(prompt, choices)); // the n choices prefill once and fork, sharing the prompt's KV blocks
        }
        Span span = ctx.get(ApiServer.SPAN);
        io.opentelemetry.context.Context trace = io.opentelemetry.context.Context.current();
        // the executor's spans become children of the request's; the executor that runs it names its node there
        ExecutingNode where = new ExecutingNode();
        ctx.put(ApiServer.EXECUTED_ON, where);
        InferenceExecutor.Work work = new InferenceExecutor.Work(ctx.get(ApiServer.REQUEST_ID), tenant, (AdapterKey) r.adapter(), prompts,
            where.attachTo(span == null ? trace : trace.with(span)));
        List<CompletableFuture<Generator.Finish>> futures = new ArrayList<>();   // the executor's, for cancelling
        executor.submit(work).forEach(futures::addAll);                          // choice index order
        List<CompletableFuture<Generator.Finish>> finished = new ArrayList<>();  // after each choice's finish()
        for (int index = 0; index < futures.size(); index++) {
            ChoiceRun run = runs.get(index);
            int i = index;
            finished.add(futures.get(index).thenApply(end -> {
                run.finish(end);
                if (onDelta != null) {
                    onDelta.finished(i, run.finishReason, run.unreported());
                }
                return end;
            }));
        }
        CompletableFuture<List<ChoiceRun>> done = CompletableFuture.allOf(finished.toArray(new CompletableFuture<?>[0]))
            .thenApply(v -> runs);
        return new Submitted(runs, futures, done);
    }
}
