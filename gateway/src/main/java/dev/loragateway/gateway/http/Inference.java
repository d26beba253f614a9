package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.NonFiniteLogitsException;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.context.Scope;
import io.vertx.core.Context;
import io.vertx.core.WorkerExecutor;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.RoutingContext;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What {@code /v1/completions} and {@code /v1/chat/completions} share once a request is parsed:
 * counting it in flight (draining waits for it), making its span current so the engine's spans
 * become its children, 429 when the engine's queue is full, cancelling when the client goes away,
 * and ending the response, in one body or as the last events of a stream.
 */
final class Inference {
    private static final Logger LOG = LoggerFactory.getLogger(Inference.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private Inference() {
    }

    /** {@link #parseThenRun(RoutingContext, AtomicInteger, WorkerExecutor, Callable, Runnable, Consumer)} with nothing to note after parsing. */
    static <R> void parseThenRun(RoutingContext ctx, AtomicInteger inFlight, WorkerExecutor workers, Callable<R> parse, Consumer<R> submit) {
        parseThenRun(ctx, inFlight, workers, parse, () -> { }, submit);
    }

    /**
     * Parses a request on {@code workers} (decoding the body, rendering a chat template and
     * tokenizing take time that grows with the prompt, so they never run on the event loop; the
     * pool's size bounds how many run at once), counted in flight from the start so that draining
     * waits for it. Then, on the event loop: {@code parsed} (either way), and {@code submit} with
     * the request (a full engine queue is answered 429 here), or the parse's error as the answer.
     * A client gone meanwhile is not submitted.
     */
    static <R> void parseThenRun(RoutingContext ctx, AtomicInteger inFlight, WorkerExecutor workers, Callable<R> parse, Runnable parsed,
                                 Consumer<R> submit) {
        inFlight.incrementAndGet();
        workers.executeBlocking(parse, false).onComplete(ar -> {
            parsed.run();
            if (ar.failed() || ctx.response().closed()) {
                inFlight.decrementAndGet();
                if (ar.failed()) {
                    ApiServer.fail(ctx.response(), ar.cause());
                }
                return;
            }
            counted(ctx, inFlight, () -> submit.accept(ar.result()));
        });
    }

    /** Runs {@code submit} (which hands the request to the engine) for a request counted in flight; refusals are answered here. */
    private static void counted(RoutingContext ctx, AtomicInteger inFlight, Runnable submit) {
        HttpServerResponse resp = ctx.response();
        Span span = ctx.get(ApiServer.SPAN);
        try (Scope scope = span == null ? null : span.makeCurrent()) {
            submit.run();
        } catch (Engine.QueueFullException e) {
            inFlight.decrementAndGet();
            resp.putHeader("Retry-After", "1");
            ApiServer.error(resp, new ApiError(429, "rate_limit_error", e.getMessage(), null, "queue_full"));
        } catch (RuntimeException | Error e) { // an Error too: a request counted in flight forever would stall the drain
            inFlight.decrementAndGet();
            ApiServer.fail(resp, e);
        }
    }

    /** Answers with {@code body(runs)} once every choice is done (or the failure's error). */
    static void answer(RoutingContext ctx, Context context, AtomicInteger inFlight, Completions.Submitted sub,
                       Function<List<ChoiceRun>, ObjectNode> body) {
        HttpServerResponse resp = ctx.response();
        resp.closeHandler(v -> sub.cancel());
        sub.done().whenComplete((runs, failure) -> context.runOnContext(v -> {
            inFlight.decrementAndGet();
            if (resp.closed()) {
                return;
            }
            if (failure != null) {
                ApiServer.fail(resp, failure);
            } else {
                ObjectNode b = body.apply(runs);
                ctx.put(ApiServer.USAGE, ApiServer.usage(b.get("usage")));
                ApiServer.json(resp, 200, b);
            }
        }));
    }

    /**
     * Ends a stream once every choice is done: {@code last(runs)} writes what comes before
     * {@code [DONE]} (usage); a failure writes an error event instead.
     */
    static void endStream(RoutingContext ctx, Context context, AtomicInteger inFlight, Completions.Submitted sub, String id,
                          Consumer<List<ChoiceRun>> last) {
        HttpServerResponse resp = ctx.response();
        resp.closeHandler(v -> sub.cancel());
        sub.done().whenComplete((runs, failure) -> context.runOnContext(v -> {
            inFlight.decrementAndGet();
            if (resp.closed()) {
                return;
            }
            if (failure != null) {
                resp.write("data: " + streamError(id, failure) + "\n\n");
            } else {
                last.accept(runs);
            }
            resp.end("data: [DONE]\n\n");
        }));
    }

    private static ObjectNode streamError(String id, Throwable failure) {
        Throwable t = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
        ObjectNode err = JSON.createObjectNode();
        if (t instanceof AdapterLoadException || t instanceof Engine.UnavailableException) {
            err.putObject("error").put("message", t.getMessage()).put("type", "unavailable");
        } else if (t instanceof NonFiniteLogitsException) {
            LOG.warn("request {} failed: {}", id, t.getMessage());
            err.putObject("error").put("message", t.getMessage()).put("type", "internal_error").put("code", ApiServer.NON_FINITE_LOGITS);
        } else {
            LOG.error("request {} failed", id, t);
            err.putObject("error").put("message", "internal error").put("type", "internal_error");
        }
        return err;
    }
}
