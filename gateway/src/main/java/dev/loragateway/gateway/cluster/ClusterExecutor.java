package dev.loragateway.gateway.cluster;

import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;
import dev.loragateway.scheduler.cluster.ClusterView;
import dev.loragateway.scheduler.placement.Decision;
import dev.loragateway.scheduler.placement.Placement;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where a request runs in a cluster: asks {@link Placement} over the {@link ClusterView} for each
 * request and runs it on this node's executor or forwards it to the chosen node's
 * {@link RemoteExecutor}.
 *
 * <pre>
 *   Work(tenant, adapter, prompts [p0 (n=2), p1 (n=2)])
 *     → PlacementRequest(tenant, adapter.toString(), longest prompt, max maxTokens, sequences 4)
 *     → placement.place(req, view.nodes())
 *         this node, no node published yet, or no node has room → local.submit(work)
 *         another node → remotes.apply(node.address()).submit(work)
 * </pre>
 *
 * When no node has room the request runs locally, where the engine queues it (or refuses it with
 * 429 when its queue is full). The cluster-wide fair queue, which would hold it until any node has
 * room, is a later part of the cluster work.
 */
public final class ClusterExecutor implements InferenceExecutor {
    private static final Logger LOG = LoggerFactory.getLogger(ClusterExecutor.class);

    private final InferenceExecutor local;
    private final ClusterView view;
    private final Placement placement;
    private final Function<String, ? extends InferenceExecutor> remotes;
    private final LongAdder forwarded = new LongAdder();

    /**
     * @param local     this node's executor
     * @param view      the cluster's node states (this node's included)
     * @param placement the {@code --placement} policy
     * @param remotes   the executor for a node's internal listener address ({@link RemoteExecutors})
     */
    public ClusterExecutor(InferenceExecutor local, ClusterView view, Placement placement,
                           Function<String, ? extends InferenceExecutor> remotes) {
        this.local = local;
        this.view = view;
        this.placement = placement;
        this.remotes = remotes;
    }

    @Override
    public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
        List<NodeState> nodes = view.nodes();
        if (nodes.isEmpty()) {
            LOG.debug("request {} runs on {}: no node state published yet", work.requestId(), view.localNodeId());
            return local.submit(work);
        }
        Optional<Decision> decision = placement.place(request(work), nodes);
        if (decision.isEmpty()) {
            LOG.debug("request {} runs on {}: no node has room now, its engine queues it", work.requestId(), view.localNodeId());
            return local.submit(work);
        }
        Decision d = decision.get();
        if (d.nodeId().equals(view.localNodeId())) {
            LOG.debug("request {} runs on {} ({})", work.requestId(), d.nodeId(), d.reason());
            return local.submit(work);
        }
        LOG.debug("request {} forwarded to {} at {} ({})", work.requestId(), d.nodeId(), d.node().address(), d.reason());
        List<List<CompletableFuture<Generator.Finish>>> futures = remotes.apply(d.node().address()).submit(work);
        forwarded.increment();
        return futures;
    }

    /** What placement knows of {@code work}: its longest prompt, its largest {@code max_tokens}, all its choices. */
    static PlacementRequest request(Work work) {
        int longest = 0;
        int maxTokens = 0;
        int sequences = 0;
        for (Prompt p : work.prompts()) {
            longest = Math.max(longest, p.tokens().length);
            for (Choice c : p.choices()) {
                maxTokens = Math.max(maxTokens, c.params().maxTokens());
                sequences++;
            }
        }
        return new PlacementRequest(work.tenant(), work.adapter() == null ? null : work.adapter().toString(), longest, maxTokens,
            sequences);
    }

    /** Requests this node sent to another node (admitted there). */
    public long forwarded() {
        return forwarded.sum();
    }

    @Override
    public ModelConfig config() {
        return local.config();
    }

    @Override
    public String unhealthy(long stallNanos) {
        return local.unhealthy(stallNanos);
    }
}
