package dev.loragateway.gateway.cluster;

import io.opentelemetry.context.Context;
import io.opentelemetry.context.ContextKey;

/**
 * Which node ran a request, for its access-log line: the front node puts one in the request's
 * OpenTelemetry context ({@code InferenceExecutor.Work.trace}), and whichever executor runs the
 * request writes its node id into it ({@link Hops}). The context carries it through every
 * executor unchanged (they pass {@code trace} on), so {@code InferenceExecutor} needs no new
 * field, and only the W3C {@code traceparent} of the context crosses to another node.
 *
 * <pre>
 *   ExecutingNode where = new ExecutingNode();
 *   executor.submit(new Work(..., where.attachTo(trace)));   // forwarded to node-2
 *   where.id()  → "node-2"
 * </pre>
 *
 * The last executor to run the request wins (a request resubmitted elsewhere names where it ended).
 */
public final class ExecutingNode {
    private static final ContextKey<ExecutingNode> KEY = ContextKey.named("lora_gateway.executing_node");

    private volatile String id;

    /** {@code trace} with this holder in it ({@link Context#root()} when {@code trace} is null). */
    public Context attachTo(Context trace) {
        return (trace == null ? Context.root() : trace).with(KEY, this);
    }

    /** The node that ran the request, or null before any executor took it. */
    public String id() {
        return id;
    }

    /** Says that {@code nodeId} runs the request of {@code trace} (nothing when it carries no holder). */
    public static void record(Context trace, String nodeId) {
        ExecutingNode where = trace == null ? null : trace.get(KEY);
        if (where != null) {
            where.id = nodeId;
        }
    }
}
