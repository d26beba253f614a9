package dev.loragateway.gateway.cluster;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The executing node's internal listener: runs requests other gateways forward
 * ({@link InternalWire#GENERATE}) on this node's executor and streams their tokens back, one JSON
 * line per event. Every call must carry the cluster secret's token ({@link InternalWire#token});
 * without it the answer is 401 before the body is read, and nothing runs.
 *
 * <p>Admission errors (queue full, too large, unavailable, a bad prompt) answer before any stream,
 * with the status the public routes would use; a choice that fails later gets an error line. A
 * caller that goes away cancels every choice of its request. Token lines are written on this
 * listener's event loop in the order the engine made them (no backpressure: a decode step makes
 * one small line per sequence).
 */
public final class InternalApi {
    private static final Logger LOG = LoggerFactory.getLogger(InternalApi.class);
    /** Token ids of a long prompt, as JSON, with room to spare. */
    private static final long MAX_BODY = 64L << 20;
    private static final TextMapGetter<HttpServerRequest> HEADERS = new TextMapGetter<>() {
        @Override
        public Iterable<String> keys(HttpServerRequest carrier) {
            return carrier.headers().names();
        }

        @Override
        public String get(HttpServerRequest carrier, String key) {
            return carrier == null ? null : carrier.getHeader(key);
        }
    };

    private final Vertx vertx;
    private final InferenceExecutor executor;
    private final String token;
    /** Streams running now, by the front node's stream id (for cancel calls). */
    private final Map<String, Running> running = new ConcurrentHashMap<>();
    private final List<java.util.function.Consumer<Router>> mounted = new ArrayList<>();
    private HttpServer server;
    private volatile boolean draining;
    private volatile java.util.function.BooleanSupplier roomElsewhere = () -> false;

    /**
     * @param executor where forwarded requests run: this node's {@code LocalExecutor}, never a
     *     {@link ClusterExecutor} (a forwarded request runs where placement sent it and is never
     *     forwarded again); its {@code submit} runs on this listener's event loop, so it must not block
     * @param secret   the cluster secret's bytes ({@code ClusterMember.secret()}; empty without one)
     */
    public InternalApi(Vertx vertx, InferenceExecutor executor, byte[] secret) {
        this.vertx = vertx;
        this.executor = executor;
        this.token = InternalWire.token(secret);
    }

    /** Adds more {@code /internal/} routes (e.g. {@link AdapterFiles#routes}), behind the same secret check; call before {@link #listen}. */
    public InternalApi mount(java.util.function.Consumer<Router> routes) {
        mounted.add(routes);
        return this;
    }

    /** Listens on {@code host:port} (0: any free port); the future has the bound port. */
    public Future<Integer> listen(String host, int port) {
        Router router = Router.router(vertx);
        router.route("/internal/*").handler(this::authenticate);
        mounted.forEach(m -> m.accept(router));
        router.post(InternalWire.GENERATE).handler(BodyHandler.create().setBodyLimit(MAX_BODY)).handler(this::generate);
        router.post(InternalWire.CANCEL).handler(BodyHandler.create().setBodyLimit(4096)).handler(this::cancel);
        server = vertx.createHttpServer(new HttpServerOptions().setHost(host).setPort(port)).requestHandler(router);
        return server.listen().map(HttpServer::actualPort);
    }

    /**
     * When this node's KV pool runs dry, its newest forwarded choice goes back to its front node
     * (a {@code move} line, reason {@code kv}) instead of being preempted here, provided
     * {@code roomElsewhere} says another node has room now (else it is preempted and waits here).
     */
    public InternalApi moveOnKvShortage(java.util.function.BooleanSupplier roomElsewhere) {
        this.roomElsewhere = roomElsewhere;
        return this;
    }

    /** Stops listening; streams running now are cancelled by their closed connections. */
    public Future<Void> close() {
        return server == null ? Future.succeededFuture() : server.close();
    }

    /** Streams running now. */
    public int streams() {
        return running.size();
    }

    /**
     * This node drains: forwarded requests get 503 from now on (their front nodes place them
     * elsewhere), and every choice running here for another node is given back unfinished with a
     * {@code move} line, so its front node resumes it on a node that stays. Returns the number of
     * choices given back.
     */
    public int drain() {
        draining = true;
        int moved = 0;
        for (Running run : running.values()) {
            moved += run.moveAll(Moved.DRAIN);
        }
        return moved;
    }

    private void authenticate(RoutingContext ctx) {
        if (!InternalWire.tokenMatches(token, ctx.request().getHeader(InternalWire.SECRET_HEADER))) {
            LOG.warn("internal call to {} from {} refused: missing or wrong cluster secret", ctx.request().path(),
                ctx.request().remoteAddress());
            ctx.response().setStatusCode(401).putHeader("Content-Type", "application/json")
                .end(InternalWire.MAPPER.createObjectNode().set("error", InternalWire.MAPPER.createObjectNode()
                    .put("status", 401).put("type", "authentication_error")
                    .put("message", "missing or wrong cluster secret (X-Cluster-Secret)")).toString());
            return;
        }
        ctx.next();
    }

    private void generate(RoutingContext ctx) {
        HttpServerResponse resp = ctx.response();
        if (draining) {
            resp.setStatusCode(503).putHeader("Content-Type", "application/json")
                .end(InternalWire.error(new dev.loragateway.batcher.Engine.UnavailableException(
                    "the node is draining and takes no new requests"), null).toString());
            return;
        }
        Context context = vertx.getOrCreateContext();
        String requestId = null;
        Running run;
        try {
            JsonNode body = InternalWire.MAPPER.readTree(ctx.body().buffer().getBytes());
            String id = InternalWire.text(body, "id");
            requestId = body.path("requestId").isTextual() ? body.get("requestId").asText() : id;
            String tenant = body.path("tenant").isTextual() ? body.get("tenant").asText() : null;
            io.opentelemetry.context.Context trace = W3CTraceContextPropagator.getInstance()
                .extract(io.opentelemetry.context.Context.root(), ctx.request(), HEADERS);
            run = new Running(id, resp, context);
            List<InferenceExecutor.Prompt> prompts = new ArrayList<>();
            int index = 0;
            for (JsonNode p : body.path("prompts")) {
                List<InferenceExecutor.Choice> choices = new ArrayList<>();
                for (JsonNode c : p.path("choices")) {
                    choices.add(new InferenceExecutor.Choice(InternalWire.params(c), run.sink(index++)));
                }
                prompts.add(new InferenceExecutor.Prompt(InternalWire.tokens(p), choices));
            }
            run.expect(index);
            var work = new InferenceExecutor.Work(requestId, tenant, InternalWire.adapter(body), prompts, trace);
            List<CompletableFuture<Generator.Finish>> futures = new ArrayList<>();
            executor.submit(work).forEach(futures::addAll);
            run.started(futures, requestId);
        } catch (Exception e) { // admission refused (or a malformed body): nothing runs
            int status = InternalWire.status(e);
            LOG.debug("forwarded request {} refused with {}: {}", requestId, status, e.getMessage());
            resp.setStatusCode(status).putHeader("Content-Type", "application/json")
                .end(InternalWire.error(e, requestId).toString());
            return;
        }
        running.put(run.id, run);
        resp.setChunked(true).putHeader("Content-Type", InternalWire.NDJSON);
        resp.closeHandler(v -> run.cancelAll());
        resp.writeHead(); // the front node waits for the status line to know the request was admitted
    }

    private void cancel(RoutingContext ctx) {
        try {
            JsonNode body = InternalWire.MAPPER.readTree(ctx.body().buffer().getBytes());
            Running run = running.get(InternalWire.text(body, "id"));
            if (run != null) {
                run.cancel(body.path("c").asInt(-1));
            }
            ctx.response().setStatusCode(204).end();
        } catch (Exception e) {
            ctx.response().setStatusCode(400).end();
        }
    }

    /** One forwarded request: its choices' futures and the response their lines go to. */
    private final class Running {
        final String id;
        final HttpServerResponse resp;
        final Context context;
        private AtomicReferenceArray<CompletableFuture<Generator.Finish>> futures;
        private AtomicBoolean[] stopped;
        private final AtomicInteger open = new AtomicInteger();

        Running(String id, HttpServerResponse resp, Context context) {
            this.id = id;
            this.resp = resp;
            this.context = context;
        }

        void expect(int choices) {
            futures = new AtomicReferenceArray<>(choices);
            stopped = new AtomicBoolean[choices];
            for (int i = 0; i < choices; i++) {
                stopped[i] = new AtomicBoolean();
            }
            open.set(choices);
        }

        /** Choice {@code c}'s tokens, as lines, until it is cancelled or moved. */
        Generator.TokenSink sink(int c) {
            return new Generator.MovableSink() {
                @Override
                public boolean accept(int token, dev.loragateway.batcher.Sampler.Logprobs lp) {
                    if (stopped[c].get()) {
                        return false;
                    }
                    send(InternalWire.tokenLine(c, token, lp));
                    return true;
                }

                @Override
                public boolean moveAway() {
                    if (!roomElsewhere.getAsBoolean() || !stopped[c].compareAndSet(false, true)) {
                        return false;
                    }
                    send(InternalWire.moveLine(c, Moved.KV)); // before the cancelled future ends the stream
                    return true;
                }
            };
        }

        void started(List<CompletableFuture<Generator.Finish>> fs, String requestId) {
            for (int i = 0; i < fs.size(); i++) {
                futures.set(i, fs.get(i));
            }
            for (int i = 0; i < fs.size(); i++) {
                int c = i;
                fs.get(i).whenComplete((finish, failure) -> {
                    if (failure == null) {
                        // a choice stopped here (moved or cancelled) sends no finish: once drain() has marked it,
                        // the engine may end it (its sink refuses the next token) before the move line is queued,
                        // and a finish ahead of the move would end the client's choice early
                        if (!stopped[c].get()) {
                            send(InternalWire.finishLine(c, finish.wire()));
                        }
                    } else if (!stopped[c].get()) {
                        send(InternalWire.errorLine(c, failure, requestId));
                    }
                    if (open.decrementAndGet() == 0) {
                        context.runOnContext(v -> {
                            running.remove(id);
                            if (!resp.closed()) {
                                resp.end();
                            }
                        });
                    }
                });
            }
        }

        /**
         * Writes {@code line} on the listener's event loop, in call order. A line the engine makes
         * while {@link #generate} still runs is queued behind it, so it follows the status line.
         */
        private void send(String line) {
            context.runOnContext(v -> {
                if (!resp.closed() && !resp.ended()) {
                    resp.write(line);
                }
            });
        }

        void cancel(int c) {
            if (c >= 0 && c < stopped.length) {
                stopped[c].set(true);
                CompletableFuture<Generator.Finish> f = futures.get(c);
                if (f != null) {
                    f.cancel(false);
                }
            }
        }

        /** Gives every unfinished choice back with a {@code move} line; returns how many. */
        int moveAll(String reason) {
            int moved = 0;
            for (int c = 0; c < stopped.length; c++) {
                CompletableFuture<Generator.Finish> f = futures.get(c);
                if (f != null && !f.isDone() && stopped[c].compareAndSet(false, true)) {
                    send(InternalWire.moveLine(c, reason)); // before the cancel's end of stream
                    f.cancel(false);
                    moved++;
                }
            }
            return moved;
        }

        void cancelAll() {
            running.remove(id);
            for (int c = 0; c < stopped.length; c++) {
                cancel(c);
            }
        }
    }
}
