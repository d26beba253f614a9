package dev.loragateway.gateway.http;

import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.vertx.core.MultiMap;
import io.vertx.core.http.HttpServerRequest;

/**
 * One SERVER span per HTTP request, named {@code METHOD ROUTE} and attributed as OpenTelemetry's
 * HTTP conventions say, plus the caller's tenant, the model it named, the request id and the
 * token counts (in a cluster, {@code lora_gateway.executing_node.id}: the node that ran it). A W3C
 * {@code traceparent} header makes it a child of the caller's span. While the
 * request is submitted to the engine the span is current, so the engine's spans
 * ({@code engine.generate}: queue, first token, decode) become its children.
 */
final class RequestSpans {
    static final AttributeKey<String> METHOD = AttributeKey.stringKey("http.request.method");
    static final AttributeKey<String> PATH = AttributeKey.stringKey("url.path");
    static final AttributeKey<String> ROUTE = AttributeKey.stringKey("http.route");
    static final AttributeKey<Long> STATUS = AttributeKey.longKey("http.response.status_code");
    static final AttributeKey<String> TENANT = AttributeKey.stringKey("lora_gateway.tenant");
    static final AttributeKey<String> REQUEST_ID = AttributeKey.stringKey("lora_gateway.request_id");
    static final AttributeKey<String> MODEL = AttributeKey.stringKey("gen_ai.request.model");
    static final AttributeKey<Long> INPUT_TOKENS = AttributeKey.longKey("gen_ai.usage.input_tokens");
    static final AttributeKey<Long> OUTPUT_TOKENS = AttributeKey.longKey("gen_ai.usage.output_tokens");
    static final AttributeKey<String> EXECUTING_NODE = AttributeKey.stringKey("lora_gateway.executing_node.id");

    private static final TextMapGetter<MultiMap> HEADERS = new TextMapGetter<>() {
        @Override
        public Iterable<String> keys(MultiMap carrier) {
            return carrier.names();
        }

        @Override
        public String get(MultiMap carrier, String key) {
            return carrier == null ? null : carrier.get(key);
        }
    };

    private final Tracer tracer;

    RequestSpans(Tracer tracer) {
        this.tracer = tracer;
    }

    /** Starts the span of a request that just arrived (its route is not known yet). */
    Span start(HttpServerRequest req) {
        Context parent = W3CTraceContextPropagator.getInstance().extract(Context.root(), req.headers(), HEADERS);
        return tracer.spanBuilder(req.method().name()).setParent(parent).setSpanKind(SpanKind.SERVER)
            .setAttribute(METHOD, req.method().name()).setAttribute(PATH, req.path()).startSpan();
    }

    /** Ends the span of a finished request; a 5xx marks it an error. */
    void end(Span span, RequestObserver.Record r) {
        span.updateName(r.method() + " " + r.route());
        span.setAttribute(ROUTE, r.route());
        span.setAttribute(STATUS, (long) r.status());
        span.setAttribute(REQUEST_ID, r.requestId());
        if (r.tenant() != null) {
            span.setAttribute(TENANT, r.tenant());
        }
        if (r.model() != null) {
            span.setAttribute(MODEL, r.model());
        }
        if (r.node() != null) {
            span.setAttribute(EXECUTING_NODE, r.node());
        }
        if (r.promptTokens() > 0 || r.completionTokens() > 0) {
            span.setAttribute(INPUT_TOKENS, (long) r.promptTokens());
            span.setAttribute(OUTPUT_TOKENS, (long) r.completionTokens());
        }
        if (r.status() >= 500) {
            span.setStatus(StatusCode.ERROR);
        }
        span.end();
    }
}
