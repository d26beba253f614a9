package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.List;
import java.util.Optional;

/**
 * Where one request runs: filter the nodes that can take it ({@link Room}), score those, pick the
 * best, ties broken by node id. Implementations are thread-safe; given the same request and the
 * same node states (in any order) a stateless policy always picks the same node.
 */
public interface Placement {

    /** The policy's {@code --placement} name (one of {@link Placements#NAMES}). */
    String name();

    /**
     * Picks the node for {@code req} among {@code nodes} (one value per node; if a node id appears
     * twice the newer value counts).
     *
     * @return the decision, or empty when no node has room now: the caller queues the request and
     *         places it again when a node's state changes
     */
    Optional<Decision> place(PlacementRequest req, List<NodeState> nodes);
}
