package dev.loragateway.gateway.cluster;

import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.cluster.ClusterView;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;

/**
 * What each hop of a cluster request leaves behind: the node that ran it ({@link ExecutingNode},
 * for the front node's access log) and one span per hop, so that a trace shows where the request
 * went and the executing node's spans hang under the front node's.
 *
 * <pre>
 *   front node-0                                             executing node-2
 *   POST /v1/completions          SERVER (RequestSpans)
 *    └ lora_gateway.forward       CLIENT  target node-2 ──traceparent──► lora_gateway.internal.generate  SERVER  node-2
 *                                                                          └ engine.generate (per choice)
 *   a request that runs where it entered:
 *   POST /v1/completions  └ engine.generate
 * </pre>
 *
 * These are decorators of {@link InferenceExecutor}, wired around the cluster's executors in one
 * place ({@code ServeCommand}): {@link #ranHere} around the local executor that
 * {@link ClusterExecutor} uses, {@link #forwarding} around its remote executors, {@link #serving}
 * around the executor of the {@link InternalApi}. Each hop span ends when every choice of the
 * request has finished (a cancelled choice is not an error; a failed one marks the span an error).
 */
public final class Hops {
    /** The node that made the span. */
    static final AttributeKey<String> NODE = AttributeKey.stringKey("lora_gateway.node.id");
    /** The node a forwarded request goes to. */
    static final AttributeKey<String> TARGET_NODE = AttributeKey.stringKey("lora_gateway.target_node.id");
    static final AttributeKey<String> REQUEST_ID = AttributeKey.stringKey("lora_gateway.request_id");
    static final AttributeKey<String> TENANT = AttributeKey.stringKey("lora_gateway.tenant");
    static final AttributeKey<String> SERVER_ADDRESS = AttributeKey.stringKey("server.address");
    static final AttributeKey<Long> SERVER_PORT = AttributeKey.longKey("server.port");
    static final AttributeKey<Long> CHOICES = AttributeKey.longKey("lora_gateway.choices");

    /** The front node's span around a forward. */
    public static final String FORWARD_SPAN = "lora_gateway.forward";
    /** The executing node's span around a forwarded request. */
    public static final String INTERNAL_SPAN = "lora_gateway.internal.generate";

    private Hops() {
    }

    /** {@code local}, saying that requests it runs ran on {@code nodeId}. */
    public static InferenceExecutor ranHere(InferenceExecutor local, String nodeId) {
        return new Decorated(local) {
            @Override
            public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
                ExecutingNode.record(work.trace(), nodeId);
                return local.submit(work);
            }
        };
    }

    /**
     * The executors of {@code remotes} (keyed by a node's internal address, as
     * {@link ClusterExecutor} asks for them), each request in a CLIENT span
     * {@value #FORWARD_SPAN} whose context is what the node receives as {@code traceparent}, and
     * its node named the executing one. The node id comes from the view (the member that
     * publishes that address; the address itself when it has just left).
     */
    public static Function<String, InferenceExecutor> forwarding(Function<String, ? extends InferenceExecutor> remotes, ClusterView view,
                                                                 Tracer tracer) {
        return address -> {
            InferenceExecutor remote = remotes.apply(address);
            String target = nodeAt(view, address);
            return new Decorated(remote) {
                @Override
                public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
                    ExecutingNode.record(work.trace(), target);
                    URI uri = URI.create(address);
                    Span span = tracer.spanBuilder(FORWARD_SPAN).setParent(parent(work)).setSpanKind(SpanKind.CLIENT)
                        .setAttribute(NODE, view.localNodeId()).setAttribute(TARGET_NODE, target)
                        .setAttribute(SERVER_ADDRESS, String.valueOf(uri.getHost())).setAttribute(SERVER_PORT, (long) uri.getPort())
                        .setAttribute(REQUEST_ID, String.valueOf(work.requestId())).setAttribute(CHOICES, (long) choices(work))
                        .startSpan();
                    return inSpan(remote, work, span);
                }
            };
        };
    }

    /**
     * {@code local} as the executing node's {@link InternalApi} uses it: each forwarded request in a
     * SERVER span {@value #INTERNAL_SPAN}, a child of the {@code traceparent} the front node sent,
     * and the parent of this node's engine spans.
     */
    public static InferenceExecutor serving(InferenceExecutor local, String nodeId, Tracer tracer) {
        return new Decorated(local) {
            @Override
            public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
                var b = tracer.spanBuilder(INTERNAL_SPAN).setParent(parent(work)).setSpanKind(SpanKind.SERVER)
                    .setAttribute(NODE, nodeId).setAttribute(REQUEST_ID, String.valueOf(work.requestId()))
                    .setAttribute(CHOICES, (long) choices(work));
                if (work.tenant() != null) {
                    b.setAttribute(TENANT, work.tenant());
                }
                return inSpan(local, work, b.startSpan());
            }
        };
    }

    private static Context parent(InferenceExecutor.Work work) {
        return work.trace() != null ? work.trace() : Context.root();
    }

    /** Submits {@code work} to {@code ex} under {@code span}; ends the span when every choice is done (or at once when refused). */
    private static List<List<CompletableFuture<Generator.Finish>>> inSpan(InferenceExecutor ex, InferenceExecutor.Work work, Span span) {
        List<List<CompletableFuture<Generator.Finish>>> futures;
        try {
            futures = ex.submit(new InferenceExecutor.Work(work.requestId(), work.tenant(), work.adapter(), work.prompts(),
                parent(work).with(span)));
        } catch (RuntimeException | Error e) { // refused (queue full, unreachable node, ...): the request never ran there
            span.recordException(e);
            span.setStatus(StatusCode.ERROR, String.valueOf(e.getMessage()));
            span.end();
            throw e;
        }
        List<CompletableFuture<Generator.Finish>> all = new ArrayList<>();
        futures.forEach(all::addAll);
        AtomicInteger open = new AtomicInteger(all.size());
        AtomicReference<Throwable> fault = new AtomicReference<>();
        for (CompletableFuture<Generator.Finish> f : all) {
            f.whenComplete((end, failure) -> {
                Throwable cause = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
                if (cause != null && !(cause instanceof CancellationException)) { // a cancel is the client leaving, not a fault
                    fault.compareAndSet(null, cause);
                }
                if (open.decrementAndGet() == 0) {
                    if (fault.get() != null) {
                        span.setStatus(StatusCode.ERROR, String.valueOf(fault.get().getMessage()));
                    }
                    span.end();
                }
            });
        }
        if (all.isEmpty()) {
            span.end();
        }
        return futures;
    }

    private static int choices(InferenceExecutor.Work work) {
        int n = 0;
        for (InferenceExecutor.Prompt p : work.prompts()) {
            n += p.choices().size();
        }
        return n;
    }

    private static String nodeAt(ClusterView view, String address) {
        for (NodeState n : view.nodes()) {
            if (address.equals(n.address())) {
                return n.nodeId();
            }
        }
        return address;
    }

    /** An executor that is {@code inner} but for {@code submit}. */
    private abstract static class Decorated implements InferenceExecutor {
        private final InferenceExecutor inner;

        Decorated(InferenceExecutor inner) {
            this.inner = inner;
        }

        @Override
        public ModelConfig config() {
            return inner.config();
        }

        @Override
        public String unhealthy(long stallNanos) {
            return inner.unhealthy(stallNanos);
        }
    }
}
