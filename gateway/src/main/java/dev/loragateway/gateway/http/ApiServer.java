package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterCatalog;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.LocalExecutor;
import dev.loragateway.gateway.auth.TenantLimiter;
import dev.loragateway.gateway.auth.TenantLimits;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.gateway.text.TextTokenizer;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.TracerProvider;
import io.netty.handler.codec.http.TooLongHttpHeaderException;
import io.netty.handler.codec.http.TooLongHttpLineException;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.WorkerExecutor;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The HTTP edge: thin Vert.x handlers that parse, hand work to an {@link InferenceExecutor} (the
 * local engine, or a cluster router) through the one {@link RequestPath} (never blocking an event
 * loop), and answer in OpenAI's shapes, errors included ({@link ApiError#of}).
 */
public final class ApiServer {
    private static final Logger LOG = LoggerFactory.getLogger(ApiServer.class);
    private static final long MAX_JSON_BODY = 16L << 20;
    /** The worker pool that parses, renders and tokenizes inference requests, and its size: at most that many at once. */
    static final String PROMPT_POOL = "lora-gateway-prompts";
    static final int PROMPT_THREADS = Math.max(2, Runtime.getRuntime().availableProcessors());
    /** {@code --max-adapter-mb}'s default. */
    static final long DEFAULT_MAX_ADAPTER_BYTES = 512L << 20;

    private final Vertx vertx;
    private final String modelId;
    private final RequestPath requests;
    private final ChatCompletions chat;
    private final long created = System.currentTimeMillis() / 1000;
    private final AtomicInteger inFlight = new AtomicInteger();
    private final CompletionsRoute completions;
    private volatile boolean draining;
    private volatile dev.loragateway.scheduler.cluster.ClusterView cluster;
    private volatile String placement;
    private HttpServer server;

    /** Tenant of every caller when auth is off. */
    static final String DEFAULT_TENANT = Tenants.DEFAULT;
    /** Routing-context keys: the caller's {@link Tenants.Tenant}, the request id, its start, the model named. */
    static final String TENANT = "lg.tenant";
    static final String REQUEST_ID = "lg.requestId";
    static final String STARTED = "lg.started";
    static final String MODEL = "lg.model";
    static final String USAGE = "lg.usage"; // int[] {prompt tokens, completion tokens}
    static final String SPAN = "lg.span";
    static final String EXECUTED_ON = "lg.executedOn"; // an ExecutingNode, once the request is submitted
    /** Longest {@code model} name kept for the access log and spans of a request that named an unknown one. */
    static final int MAX_LOGGED_MODEL = 256;

    private final AdapterCatalog adapters;
    private Tenants tenants = Tenants.open();
    private TenantLimiter limits = new TenantLimits();
    private RequestObserver observer = RequestObserver.NONE;
    private RequestSpans spans = new RequestSpans(TracerProvider.noop().get("lora-gateway"));
    private DeviceTier<AdapterKey> deviceTier;
    private long maxAdapterBytes = DEFAULT_MAX_ADAPTER_BYTES;
    private MetricsEndpoint metrics; // null: /metrics is a 404
    private RuntimeLoras runtimeLoras; // null: its routes answer 404 naming the flag
    private HttpServer metricsServer;
    private final Health healthCheck;
    private HttpLimits httpLimits = HttpLimits.defaults();

    /** A server for the base model only, running requests on the local {@code engine}. */
    public ApiServer(Vertx vertx, Engine engine, TextTokenizer tokenizer, String modelId, int maxModelLen) {
        this(vertx, new LocalExecutor(engine), tokenizer, modelId, maxModelLen, null);
    }

    /** A server running requests on the local {@code engine}; see {@link #ApiServer(Vertx, InferenceExecutor, TextTokenizer, String, int, AdapterCatalog)}. */
    public ApiServer(Vertx vertx, Engine engine, TextTokenizer tokenizer, String modelId, int maxModelLen, AdapterCatalog adapters) {
        this(vertx, new LocalExecutor(engine), tokenizer, modelId, maxModelLen, adapters);
    }

    /**
     * @param executor where completions and chat completions run (and what {@code /health} asks)
     * @param adapters the adapters a request's {@code model} may name (null: none): a node's
     *     {@code AdapterRegistry}, or the cluster's catalog; the engine's device tier is keyed by
     *     their {@link AdapterKey}
     * @throws IllegalArgumentException when {@code adapters} does not keep {@code modelId} from
     *     adapter names (an adapter of that name could never be reached)
     */
    public ApiServer(Vertx vertx, InferenceExecutor executor, TextTokenizer tokenizer, String modelId, int maxModelLen,
                     AdapterCatalog adapters) {
        if (adapters != null && !modelId.equals(adapters.baseModelId())) {
            throw new IllegalArgumentException("the adapter registry reserves the name '" + adapters.baseModelId()
                + "' for the base model, but the server's model id is '" + modelId + "'");
        }
        this.vertx = vertx;
        this.modelId = modelId;
        this.adapters = adapters;
        Completions parsing = new Completions(tokenizer, modelId, this::adapterKey, maxModelLen, executor.config().vocabSize());
        // shared by name: every server of this Vert.x instance tokenizes on the same bounded pool
        WorkerExecutor prompts = vertx.createSharedWorkerExecutor(PROMPT_POOL, PROMPT_THREADS);
        this.requests = new RequestPath(vertx, executor, tokenizer, inFlight, prompts);
        this.completions = new CompletionsRoute(parsing);
        this.chat = new ChatCompletions(tokenizer, parsing);
        this.healthCheck = new Health(executor);
    }

    /**
     * {@code /health} answers 503 when work waits and no engine step has finished for this long
     * ({@code --watchdog-s}; default 60 s), or at once when the engine loop has stopped.
     */
    public ApiServer watchdog(java.time.Duration stall) {
        healthCheck.watchdog(stall);
        return this;
    }

    /** Callers and their keys and limits ({@code --api-keys}); call before {@link #listen}. */
    public ApiServer tenants(Tenants t) {
        this.tenants = t;
        return this;
    }

    /**
     * Who counts the tenants' request rates and requests in flight (default: this node alone,
     * {@link TenantLimits}; in a cluster, the whole cluster); call before {@link #listen}.
     */
    public ApiServer limiter(TenantLimiter l) {
        this.limits = l;
        return this;
    }

    /** Told about every finished request (metrics, access log); call before {@link #listen}. */
    public ApiServer observer(RequestObserver o) {
        this.observer = o;
        return this;
    }

    /** Where each request's server span goes (default: nowhere); call before {@link #listen}. */
    public ApiServer tracer(Tracer t) {
        this.spans = new RequestSpans(t);
        return this;
    }

    /**
     * The engine's device tier, told to forget adapters that are deleted or replaced so that a name
     * uploaded again never runs on stale weights; call before {@link #listen}.
     */
    public ApiServer deviceTier(DeviceTier<AdapterKey> tier) {
        this.deviceTier = tier;
        return this;
    }

    /**
     * Cluster mode: {@code GET /v1/cluster} lists {@code view}'s members and the placement policy
     * (without it that route is a 404 naming the flag); call before {@link #listen}.
     */
    public ApiServer cluster(dev.loragateway.scheduler.cluster.ClusterView view, String placement) {
        this.cluster = view;
        this.placement = placement;
        return this;
    }

    /** True once {@link #refuseNewWork} ran: what this node publishes to the cluster as draining. */
    public boolean draining() {
        return draining;
    }

    /** The largest adapter upload body ({@code --max-adapter-mb}); larger gets 413; call before {@link #listen}. */
    public ApiServer maxAdapterBytes(long bytes) {
        this.maxAdapterBytes = bytes;
        return this;
    }

    /** Timeouts and the connection cap ({@code --idle-timeout-s} ... {@code --max-connections}); call before {@link #listen}. */
    public ApiServer httpLimits(HttpLimits l) {
        this.httpLimits = l;
        return this;
    }

    /**
     * What {@code GET /metrics} answers (Prometheus text): {@code full}, with tenant labels, when
     * auth is off (every caller is tenant {@code default}) or the caller presents an operator key;
     * else {@code tenantFree}, where no series names a tenant or an adapter ({@link MetricsEndpoint}).
     * Call before {@link #listen}.
     */
    public ApiServer metrics(java.util.function.Supplier<String> full, java.util.function.Supplier<String> tenantFree) {
        this.metrics = new MetricsEndpoint(full, tenantFree, () -> tenants);
        return this;
    }

    /**
     * Turns on vLLM's {@code POST /v1/load_lora_adapter} and {@code /v1/unload_lora_adapter}
     * ({@code --allow-runtime-lora-updating}; without it they answer 404 naming the flag), loading
     * only from under {@code allowedDirs} ({@code --allowed-lora-dir}; none: every load is refused).
     * A single node's only: the server's adapters must be an {@link AdapterRegistry}. Call before
     * {@link #listen}.
     *
     * @throws IllegalArgumentException when a directory does not exist
     * @throws IllegalStateException when the adapters are not a node's registry (a cluster's catalog)
     */
    public ApiServer runtimeLoraUpdating(java.util.List<java.nio.file.Path> allowedDirs) {
        if (!(adapters instanceof AdapterRegistry registry)) {
            throw new IllegalStateException("runtime LoRA updating needs a node's own adapter registry (not a cluster's catalog)");
        }
        this.runtimeLoras = new RuntimeLoras(vertx, registry, allowedDirs, () -> maxAdapterBytes, () -> tenants, this::forget);
        return this;
    }

    /** Drops {@code key} from the device and host tiers, when there are any. */
    private void forget(AdapterKey key) {
        if (deviceTier != null) {
            deviceTier.invalidate(key);
        }
    }

    private Optional<AdapterKey> adapterKey(String tenant, String model) {
        return adapters == null ? Optional.empty() : adapters.find(tenant, model).map(AdapterInfo::key);
    }

    /** The caller's tenant (set by authentication on every {@code /v1/} route). */
    static Tenants.Tenant tenant(RoutingContext ctx) {
        return ctx.get(TENANT);
    }

    /** Starts listening; the future gives the bound port. */
    public Future<Integer> listen(String host, int port) {
        Router router = Router.router(vertx);
        router.route().handler(this::begin);
        router.get("/health").handler(this::health);
        router.get("/metrics").handler(this::metricsRoute);
        // before /v1/* authentication: these take operator keys, which open no other /v1/ route
        (runtimeLoras != null ? runtimeLoras : RuntimeLoras.off(vertx)).routes(router);
        router.route("/v1/*").handler(this::authenticate);
        router.get("/v1/models").handler(this::models);
        router.get("/v1/models/:id").handler(this::model);
        router.get("/v1/cluster").handler(this::clusterRoute);
        if (adapters != null) {
            new AdaptersApi(vertx, adapters, modelId, maxAdapterBytes, this::forget).routes(router);
        }
        router.post("/v1/completions").handler(this::inferenceLimits);
        router.post("/v1/completions").handler(BodyHandler.create().setBodyLimit(MAX_JSON_BODY)).handler(ctx -> requests.handle(ctx, completions));
        router.post("/v1/chat/completions").handler(this::inferenceLimits);
        router.post("/v1/chat/completions").handler(BodyHandler.create().setBodyLimit(MAX_JSON_BODY)).handler(ctx -> requests.handle(ctx, chat));
        router.errorHandler(404, ctx -> error(ctx.response(), new ApiError(404, "not_found_error",
            "no route " + ctx.request().method() + " " + ctx.request().path(), null, null)));
        router.errorHandler(405, ctx -> error(ctx.response(), new ApiError(405, "invalid_request_error",
            "method " + ctx.request().method() + " is not allowed on " + ctx.request().path(), null, null)));
        router.errorHandler(413, ctx -> error(ctx.response(), new ApiError(413, "invalid_request_error",
            "request body is larger than " + MAX_JSON_BODY + " bytes", null, null)));
        // vertx-web fails a request that broke before any handler answered with 400 (no Host header, a
        // body Netty could not decode) or, for other errors of the request stream such as a bad chunk
        // size, with 200 (its BodyHandler's default status); both are the client's malformed request
        router.errorHandler(400, ctx -> malformed(ctx.request(), 400, ctx.failure()));
        router.errorHandler(200, ctx -> malformed(ctx.request(), 400, ctx.failure()));
        router.errorHandler(500, ctx -> {
            LOG.error("internal error on {} {}", ctx.request().method(), ctx.request().path(), ctx.failure());
            error(ctx.response(), new ApiError(500, "internal_error", "internal error", null, null));
        });
        // HTTP/1 only: every connection then runs through one ConnectionGuard (an h2c connection would
        // multiplex requests past it)
        HttpServerOptions options = new HttpServerOptions().setHttp2ClearTextEnabled(false);
        Connections connections = new Connections(httpLimits, options.getHttp1Config());
        HttpServer http = vertx.createHttpServer(options).connectionHandler(connections::accept).requestHandler(router)
            .invalidRequestHandler(ApiServer::invalidRequest);
        return http.listen(port, host).map(s -> {
            server = s;
            return s.actualPort();
        });
    }

    /**
     * A request Netty could not decode (not HTTP, a bad header or Content-Length): Vert.x's status
     * (414 / 431 for a line / headers too long, else 400) with an OpenAI error body instead of an
     * empty one.
     */
    private static void invalidRequest(HttpServerRequest req) {
        Throwable cause = req.decoderResult().cause();
        malformed(req, cause instanceof TooLongHttpLineException ? 414 : cause instanceof TooLongHttpHeaderException ? 431 : 400, cause);
    }

    /** Answers a request whose framing or headers are broken, then closes the connection: what follows cannot be trusted. */
    private static void malformed(HttpServerRequest req, int status, Throwable cause) {
        String why = cause == null || cause.getMessage() == null ? "it could not be decoded" : cause.getMessage();
        HttpServerResponse resp = req.response();
        resp.putHeader("Connection", "close");
        error(resp, new ApiError(status, "invalid_request_error", "malformed HTTP request: " + why, null, null));
        req.connection().close();
    }

    /** From now on every new request, {@code /health} included, gets 503; running ones go on. Returns at once. */
    public void refuseNewWork() {
        draining = true;
    }

    /** Stops accepting work (new requests get 503), waits for running ones, then closes the port. */
    public void drain() {
        refuseNewWork();
        while (inFlight.get() > 0) {
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        if (server != null) {
            server.close().await();
        }
        if (metricsServer != null) {
            metricsServer.close().await();
        }
    }

    /** Every request: an id, a start time, a span, the observer told when it ends; 503 while draining. */
    private void begin(RoutingContext ctx) {
        String id = "req-" + UUID.randomUUID().toString().replace("-", "");
        ctx.put(REQUEST_ID, id);
        ctx.put(STARTED, System.nanoTime());
        Span span = spans.start(ctx.request());
        ctx.put(SPAN, span);
        ctx.response().putHeader("X-Request-Id", id);
        ctx.addEndHandler(v -> {
            RequestObserver.Record r = record(ctx);
            spans.end(span, r);
            observer.finished(r);
        });
        String path = ctx.request().path();
        boolean operations = path.equals("/health") || path.equals("/metrics");
        if (draining && !operations) {
            error(ctx.response(), new ApiError(503, "unavailable", "the server is draining and takes no new requests", null, null));
            return;
        }
        ConnectionGuard guard = Connections.guard(ctx.request().connection());
        if (guard != null && guard.healthOnly()) { // beyond --max-connections: health checks only, one per connection
            ctx.response().putHeader("Connection", "close");
            ctx.addEndHandler(v -> ctx.request().connection().close()); // (the response's own end handler is vertx-web's)
            if (!operations) {
                ctx.response().putHeader("Retry-After", "1");
                error(ctx.response(), new ApiError(503, "unavailable", "the server has " + httpLimits.maxConnections() + " connections "
                    + "serving requests (--max-connections " + httpLimits.maxConnections() + "); this one beyond them serves only /health "
                    + "and /metrics", null, "too_many_connections"));
                return;
            }
        }
        if (guard != null && !ctx.request().isEnded()) {
            guard.onBodyTimeout(() -> bodyTimedOut(ctx));
        }
        ctx.next();
    }

    /** The body stalled past {@code --body-timeout-s}: 408, then the connection closes (its route cleans up on the close). */
    private void bodyTimedOut(RoutingContext ctx) {
        String s = HttpLimits.seconds(httpLimits.bodyTimeout());
        HttpServerResponse resp = ctx.response();
        if (resp.ended() || resp.closed() || resp.headWritten()) {
            ctx.request().connection().close();
            return;
        }
        ApiError e = new ApiError(408, "invalid_request_error", "the request body stalled: no byte of it arrived for " + s
            + " s (--body-timeout-s " + s + ")", null, "request_timeout");
        resp.setStatusCode(408).putHeader("Content-Type", "application/json").putHeader("Connection", "close")
            .end(e.toJson().toString()).onComplete(v -> ctx.request().connection().close());
    }

    private RequestObserver.Record record(RoutingContext ctx) {
        Tenants.Tenant t = ctx.get(TENANT);
        int[] usage = ctx.get(USAGE);
        String route = ctx.currentRoute() != null && ctx.currentRoute().getPath() != null ? ctx.currentRoute().getPath() : "unmatched";
        Long started = ctx.get(STARTED);
        return new RequestObserver.Record(ctx.get(REQUEST_ID), t == null ? null : t.id(), ctx.request().method().name(), route,
            ctx.response().getStatusCode(), ctx.get(MODEL), usage == null ? 0 : usage[0], usage == null ? 0 : usage[1],
            started == null ? 0 : System.nanoTime() - started, node(ctx));
    }

    /**
     * The node that ran the request: in a cluster, where its executor ran it, else this node (it
     * answered without running anything: a 400, {@code /v1/models}); without a cluster, null.
     */
    private String node(RoutingContext ctx) {
        dev.loragateway.scheduler.cluster.ClusterView view = cluster;
        if (view == null) {
            return null;
        }
        dev.loragateway.gateway.cluster.ExecutingNode where = ctx.get(EXECUTED_ON);
        return where != null && where.id() != null ? where.id() : view.localNodeId();
    }

    /** {@code /v1/*}: the caller's key names its tenant (401 otherwise); per-tenant request rate. */
    private void authenticate(RoutingContext ctx) {
        int keys = ctx.request().headers().getAll("Authorization").size();
        if (keys > 1) { // which one counts would be a guess: refuse rather than let the first (or last) win
            error(ctx.response(), new ApiError(400, "invalid_request_error", "the request has " + keys + " Authorization headers; send "
                + "exactly one: 'Authorization: Bearer KEY'", null, "duplicate_header"));
            return;
        }
        Optional<Tenants.Tenant> t = tenants.authenticate(ctx.request().getHeader("Authorization"));
        if (t.isEmpty()) {
            error(ctx.response(), unauthorized(ctx.request().getHeader("Authorization")));
            return;
        }
        ctx.put(TENANT, t.get());
        whenAnswered(ctx, limits.request(t.get()), refused -> {
            if (refused.isPresent()) {
                tooMany(ctx.response(), refused.get());
            } else {
                ctx.next();
            }
        });
    }

    /** The 401 of a request whose {@code Authorization} header (null: none) names no caller. */
    static ApiError unauthorized(String authorization) {
        String msg = authorization == null
            ? "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'."
            : "Incorrect API key provided.";
        return new ApiError(401, "invalid_request_error", msg, null, "invalid_api_key");
    }

    /** Inference routes: the tenant's concurrent-request limit, released when the response ends. */
    void inferenceLimits(RoutingContext ctx) {
        whenAnswered(ctx, limits.enter(tenant(ctx)), slot -> {
            if (slot.refusal().isPresent()) {
                tooMany(ctx.response(), slot.refusal().get());
                return;
            }
            if (ctx.response().ended() || ctx.response().closed()) { // the client left while the cluster answered
                slot.release();
                return;
            }
            ctx.addEndHandler(v -> slot.release());
            ctx.next();
        });
    }

    /**
     * Runs {@code then} with the limiter's answer on this request's event loop: at once when the
     * answer is ready (a single node's limits, as before), else when it comes (the cluster's, one
     * round trip), with the request paused meanwhile so that no byte of its body is lost before the
     * body handler that follows reads it (as vertx-web's own asynchronous authentication does).
     */
    private static <T> void whenAnswered(RoutingContext ctx, java.util.concurrent.CompletionStage<T> answer,
                                         java.util.function.Consumer<T> then) {
        java.util.concurrent.CompletableFuture<T> f = answer.toCompletableFuture();
        if (f.isDone() && !f.isCompletedExceptionally()) {
            then.accept(f.join());
            return;
        }
        HttpServerRequest req = ctx.request();
        if (!req.isEnded()) {
            req.pause();
        }
        io.vertx.core.Context context = vertx(ctx);
        f.whenComplete((value, failure) -> context.runOnContext(v -> {
            if (!req.isEnded()) {
                req.resume();
            }
            if (failure != null) { // a limiter answers, never fails: this is a bug, a 500
                ctx.fail(failure);
            } else {
                then.accept(value);
            }
        }));
    }

    private static io.vertx.core.Context vertx(RoutingContext ctx) {
        io.vertx.core.Context c = Vertx.currentContext();
        return c != null ? c : ctx.vertx().getOrCreateContext();
    }

    private static void tooMany(HttpServerResponse resp, TenantLimiter.Refusal r) {
        resp.putHeader("Retry-After", Long.toString(r.retryAfterSeconds()));
        error(resp, new ApiError(429, "rate_limit_error", r.message(), null, "rate_limit_exceeded"));
    }

    private void metricsRoute(RoutingContext ctx) {
        if (metrics == null) {
            error(ctx.response(), new ApiError(404, "not_found_error", "metrics are not enabled", null, null));
            return;
        }
        metrics.handle(ctx);
    }

    /**
     * Also serves {@code GET /metrics} with every label and without a key on {@code host:port}
     * ({@code --metrics-port}; nothing else is routed there); the future gives the bound port.
     * Call after {@link #metrics}.
     */
    public Future<Integer> listenMetrics(String host, int port) {
        if (metrics == null) {
            throw new IllegalStateException("no metrics to serve: call metrics() first");
        }
        return metrics.listen(vertx, host, port).map(s -> {
            metricsServer = s;
            return s.actualPort();
        });
    }

    private void health(RoutingContext ctx) {
        if (draining) {
            error(ctx.response(), new ApiError(503, "unavailable", "the server is draining", null, null));
            return;
        }
        String problem = healthCheck.problem();
        if (problem != null) {
            error(ctx.response(), new ApiError(503, "unavailable", "the server cannot serve: " + problem, null, "engine_unhealthy"));
            return;
        }
        json(ctx.response(), 200, Json.MAPPER.createObjectNode().put("status", "ok"));
    }

    private void models(RoutingContext ctx) {
        String tenant = tenant(ctx).id();
        readAdapters(ctx, () -> adapters == null ? java.util.List.<AdapterInfo>of() : adapters.list(tenant), list -> {
            ObjectNode root = Json.MAPPER.createObjectNode().put("object", "list");
            com.fasterxml.jackson.databind.node.ArrayNode data = root.putArray("data");
            data.add(baseModel());
            list.forEach(a -> data.add(adapterModel(a)));
            json(ctx.response(), 200, root);
        });
    }

    /**
     * Reads the adapters with {@code read} and answers with {@code answer}: at once from a local
     * registry (memory), on a worker thread from the cluster's catalog (remote calls).
     */
    private <T> void readAdapters(RoutingContext ctx, java.util.concurrent.Callable<T> read, java.util.function.Consumer<T> answer) {
        AdaptersApi.read(vertx, adapters != null && adapters.remote(), read).onComplete(ar -> {
            if (ar.failed()) {
                fail(ctx.response(), ar.cause());
            } else {
                answer.accept(ar.result());
            }
        });
    }

    /** {@code GET /v1/cluster}: every live member's published state, and the placement policy. */
    private void clusterRoute(RoutingContext ctx) {
        if (cluster == null) {
            error(ctx.response(), new ApiError(404, "not_found_error",
                "this gateway is not in a cluster (start it with --cluster-name and --cluster-members)", null, "not_in_cluster"));
            return;
        }
        ObjectNode root = Json.MAPPER.createObjectNode().put("object", "cluster").put("node", cluster.localNodeId())
            .put("placement", placement);
        com.fasterxml.jackson.databind.node.ArrayNode members = root.putArray("members");
        // adapter keys name their tenant: a caller sees the system adapters and its own (all of them with auth off)
        String own = tenant(ctx).id() + "/";
        java.util.function.Predicate<String> visible = k -> !tenants.enabled() || k.startsWith(AdapterKey.SYSTEM_OWNER + ":")
            || k.startsWith(own);
        for (dev.loragateway.scheduler.NodeState n : cluster.nodes()) {
            ObjectNode m = members.addObject().put("id", n.nodeId()).put("address", n.address()).put("backend", n.backend())
                .put("running", n.running()).put("queued", n.queued()).put("max_batch", n.maxBatch())
                .put("free_kv_blocks", n.freeKvBlocks()).put("total_kv_blocks", n.totalKvBlocks())
                .put("step_ms", Math.round(n.stepMillis() * 1000) / 1000.0).put("draining", n.draining()).put("idle", n.idle());
            m.put("resident_adapter_count", n.residentAdapters().size()).put("warm_adapter_count", n.warmAdapters().size());
            com.fasterxml.jackson.databind.node.ArrayNode resident = m.putArray("resident_adapters");
            n.residentAdapters().stream().filter(visible).sorted().forEach(resident::add);
            com.fasterxml.jackson.databind.node.ArrayNode warm = m.putArray("warm_adapters");
            n.warmAdapters().stream().filter(visible).sorted().forEach(warm::add);
        }
        json(ctx.response(), 200, root);
    }

    /** {@code GET /v1/models/{id}}: the base model or one of the caller's adapters, else 404. */
    private void model(RoutingContext ctx) {
        String id = ctx.pathParam("id");
        if (id.equals(modelId)) {
            json(ctx.response(), 200, baseModel());
            return;
        }
        String tenant = tenant(ctx).id();
        readAdapters(ctx, () -> adapters == null ? Optional.<AdapterInfo>empty() : adapters.find(tenant, id), a -> {
            if (a.isEmpty()) {
                error(ctx.response(), ApiError.modelNotFound(id));
            } else {
                json(ctx.response(), 200, adapterModel(a.get()));
            }
        });
    }

    private ObjectNode baseModel() {
        ObjectNode m = Json.MAPPER.createObjectNode().put("id", modelId).put("object", "model").put("created", created).put("owned_by", "system");
        return m.putNull("parent").put("root", modelId);
    }

    private ObjectNode adapterModel(AdapterInfo a) {
        return Json.MAPPER.createObjectNode().put("id", a.name()).put("object", "model").put("created", a.created())
            .put("owned_by", a.tenant()).put("parent", modelId).put("root", modelId);
    }

    static int[] usage(JsonNode u) {
        return new int[] {u.path("prompt_tokens").asInt(), u.path("completion_tokens").asInt()};
    }

    /** Answers {@code failure} as {@link ApiError#of} maps it. */
    static void fail(HttpServerResponse resp, Throwable failure) {
        error(resp, ApiError.of(failure, null));
    }

    static void error(HttpServerResponse resp, ApiError e) {
        json(resp, e.status(), e.toJson());
    }

    static void json(HttpServerResponse resp, int status, JsonNode body) {
        if (resp.ended() || resp.closed()) {
            return;
        }
        resp.setStatusCode(status).putHeader("Content-Type", "application/json").end(body.toString());
    }

}
