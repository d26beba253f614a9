package dev.loragateway.batcher;

import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletionException;

/**
 * The engine's part of a request, as OpenTelemetry spans (the gateway configures the SDK; without
 * one they cost nothing). One span per sequence (each choice of {@code n}), a child of whatever span
 * is current where {@link Engine#submitForks} is called, from submit to the sequence's end:
 *
 * <pre>
 * engine.generate  ├─ queue ─┤ admitted ├─ prefill ─┤ first_token ├─ decode ─────┤ end
 *                  events: admitted (it joined the running batch), first_token,
 *                          preempted (its blocks were freed; it waits to be recomputed)
 *                  attributes: tenant, adapter, prompt/output tokens, max_tokens,
 *                              queue seconds, time to first token, preemptions, finish reason
 * </pre>
 *
 * Events and attributes are set on the engine thread as things happen; the span ends just before
 * the sequence's future completes, or when that future is cancelled or failed from outside.
 */
final class EngineSpans {
    static final String NAME = "engine.generate";
    static final AttributeKey<String> TENANT = AttributeKey.stringKey("lora_gateway.tenant");
    static final AttributeKey<String> ADAPTER = AttributeKey.stringKey("lora_gateway.adapter");
    static final AttributeKey<Long> INPUT_TOKENS = AttributeKey.longKey("gen_ai.usage.input_tokens");
    static final AttributeKey<Long> OUTPUT_TOKENS = AttributeKey.longKey("gen_ai.usage.output_tokens");
    static final AttributeKey<Long> MAX_TOKENS = AttributeKey.longKey("gen_ai.request.max_tokens");
    static final AttributeKey<Double> QUEUE_SECONDS = AttributeKey.doubleKey("lora_gateway.queue_seconds");
    static final AttributeKey<Double> TTFT_SECONDS = AttributeKey.doubleKey("lora_gateway.time_to_first_token_seconds");
    static final AttributeKey<Long> PREEMPTIONS = AttributeKey.longKey("lora_gateway.preemptions");
    static final AttributeKey<String> FINISH = AttributeKey.stringKey("lora_gateway.finish_reason");

    private final Tracer tracer;

    EngineSpans(Tracer tracer) {
        this.tracer = tracer;
    }

    /** Starts {@code s}'s span under {@code parent}; it ends at the latest when {@code s.future} completes. */
    void start(Sequence s, Context parent) {
        var b = tracer.spanBuilder(NAME).setParent(parent).setSpanKind(SpanKind.INTERNAL)
            .setAttribute(TENANT, s.tenant)
            .setAttribute(INPUT_TOKENS, (long) s.req.prompt().length)
            .setAttribute(MAX_TOKENS, (long) s.req.params().maxTokens());
        if (s.req.adapter() != null) {
            b.setAttribute(ADAPTER, s.req.adapter().toString());
        }
        s.span = b.startSpan();
        s.future.whenComplete((end, failure) -> end(s, end, failure)); // cancelled, or failed before it ran
    }

    /**
     * Ends {@code s}'s span: with its finish reason, as cancelled, or as an error. The engine calls
     * this before it completes the sequence's future, so the span ends before the response does;
     * later calls do nothing.
     */
    void end(Sequence s, Generator.Finish end, Throwable failure) {
        Span span = s.span;
        if (!span.isRecording()) {
            return; // ended already (or never traced)
        }
        span.setAttribute(OUTPUT_TOKENS, (long) s.generated);
        Throwable t = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
        if (t instanceof CancellationException || (t == null && end == null)) {
            span.setAttribute(FINISH, "cancelled");
        } else if (t != null) {
            span.recordException(t);
            span.setStatus(StatusCode.ERROR, String.valueOf(t.getMessage()));
        } else {
            span.setAttribute(FINISH, end.wire());
        }
        span.end();
    }

    /** {@code s} joined the running batch for the first time, {@code nanos} after it was submitted. */
    void admitted(Sequence s, long nanos) {
        s.span.addEvent("admitted");
        s.span.setAttribute(QUEUE_SECONDS, nanos / 1e9);
    }

    /** {@code s} made its first token {@code nanos} after it was submitted. */
    void firstToken(Sequence s, long nanos) {
        s.span.addEvent("first_token");
        s.span.setAttribute(TTFT_SECONDS, nanos / 1e9);
    }

    /** {@code s} lost its blocks; this was its {@code count}th preemption. */
    void preempted(Sequence s, int count) {
        s.span.addEvent("preempted");
        s.span.setAttribute(PREEMPTIONS, (long) count);
    }
}
