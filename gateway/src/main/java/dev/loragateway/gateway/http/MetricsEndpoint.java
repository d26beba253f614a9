package dev.loragateway.gateway.http;

import dev.loragateway.gateway.auth.Tenants;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import java.util.function.Supplier;

/**
 * {@code GET /metrics}, and who sees which labels. An anonymous caller never learns a tenant or an
 * adapter name from it:
 *
 * <pre>
 * API port, auth off (--api-keys absent)     every label: the one tenant is "default"
 * API port, operator key (operator_keys)     every label
 * API port, anything else (none, a tenant's  tenant-free: series that differ only by tenant or
 *   key, a wrong key)                        adapter summed into one (totals unchanged)
 * --metrics-port (on --metrics-host,         every label, no key: for a scraper on the host or a
 *   127.0.0.1 by default)                    private network; only /metrics is routed there
 * </pre>
 *
 * A tenant's key gets the tenant-free view too: it would otherwise show the other tenants. In that
 * view {@code vllm:lora_requests_info} keeps its series, its adapter lists empty strings
 * ({@code VllmMetrics}).
 */
final class MetricsEndpoint {
    static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

    private final Supplier<String> full;
    private final Supplier<String> tenantFree;
    private final Supplier<Tenants> tenants;

    /** @param tenants the server's callers (read at each request: they may be set after this) */
    MetricsEndpoint(Supplier<String> full, Supplier<String> tenantFree, Supplier<Tenants> tenants) {
        this.full = full;
        this.tenantFree = tenantFree;
        this.tenants = tenants;
    }

    /** The API port's route. */
    void handle(RoutingContext ctx) {
        Tenants t = tenants.get();
        boolean everyLabel = !t.enabled() || t.isOperator(ctx.request().getHeader("Authorization"));
        ctx.response().putHeader("Content-Type", CONTENT_TYPE).putHeader("Vary", "Authorization")
            .end(everyLabel ? full.get() : tenantFree.get());
    }

    /** The {@code --metrics-port} listener: every label, no key, nothing but {@code GET /metrics}. */
    Future<HttpServer> listen(Vertx vertx, String host, int port) {
        Router router = Router.router(vertx);
        router.get("/metrics").handler(ctx -> ctx.response().putHeader("Content-Type", CONTENT_TYPE).end(full.get()));
        router.errorHandler(404, ctx -> ApiServer.error(ctx.response(), new ApiError(404, "not_found_error",
            "no route " + ctx.request().method() + " " + ctx.request().path() + " on the metrics port (only GET /metrics)", null, null)));
        router.errorHandler(405, ctx -> ApiServer.error(ctx.response(), new ApiError(405, "invalid_request_error",
            "method " + ctx.request().method() + " is not allowed on " + ctx.request().path(), null, null)));
        return vertx.createHttpServer().requestHandler(router).listen(port, host);
    }
}
