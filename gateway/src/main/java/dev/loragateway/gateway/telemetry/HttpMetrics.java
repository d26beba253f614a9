package dev.loragateway.gateway.telemetry;

import dev.loragateway.gateway.http.RequestObserver;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.Meter;
import java.util.List;

/**
 * HTTP request instruments, fed by the {@link RequestObserver} (names as Prometheus shows them):
 *
 * <pre>
 * lora_gateway_http_requests_total{route,method,status,tenant}           counter
 * lora_gateway_http_request_duration_seconds{route,method,status,tenant} histogram, {@link #LATENCY_BUCKETS}
 * lora_gateway_tokens_total{type=prompt|completion,tenant}               counter
 * </pre>
 *
 * {@code route} is the matched route's pattern (never the raw path, so the label set stays small);
 * {@code tenant} is {@value #NO_TENANT} for requests that carried no identity ({@code /health},
 * {@code /metrics}, a 401).
 */
final class HttpMetrics implements RequestObserver {
    static final String NO_TENANT = "none";
    static final AttributeKey<String> ROUTE = AttributeKey.stringKey("route");
    static final AttributeKey<String> METHOD = AttributeKey.stringKey("method");
    static final AttributeKey<Long> STATUS = AttributeKey.longKey("status");
    static final AttributeKey<String> TENANT = AttributeKey.stringKey("tenant");
    static final AttributeKey<String> TYPE = AttributeKey.stringKey("type");
    /** Seconds: 5 ms to 5 minutes (a long stream is one request). */
    static final List<Double> LATENCY_BUCKETS = List.of(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 120.0, 300.0);

    private final LongCounter requests;
    private final DoubleHistogram duration;
    private final LongCounter tokens;

    HttpMetrics(Meter meter) {
        requests = meter.counterBuilder("lora_gateway.http.requests").setDescription("HTTP requests answered")
            .setUnit("{request}").build();
        duration = meter.histogramBuilder("lora_gateway.http.request.duration")
            .setDescription("Seconds from a request's arrival to the end of its response (the whole stream)").setUnit("s")
            .setExplicitBucketBoundariesAdvice(LATENCY_BUCKETS).build();
        tokens = meter.counterBuilder("lora_gateway.tokens").setDescription("Prompt and completion tokens of answered requests")
            .setUnit("{token}").build();
    }

    @Override
    public void finished(Record r) {
        String tenant = r.tenant() == null ? NO_TENANT : r.tenant();
        Attributes a = Attributes.of(ROUTE, r.route(), METHOD, r.method(), STATUS, (long) r.status(), TENANT, tenant);
        requests.add(1, a);
        duration.record(r.latencyNanos() / 1e9, a);
        if (r.promptTokens() > 0) {
            tokens.add(r.promptTokens(), Attributes.of(TYPE, "prompt", TENANT, tenant));
        }
        if (r.completionTokens() > 0) {
            tokens.add(r.completionTokens(), Attributes.of(TYPE, "completion", TENANT, tenant));
        }
    }
}
