package dev.loragateway.scheduler.cluster;

import dev.loragateway.scheduler.NodeState;

import java.util.List;

/**
 * What placement reads: the newest {@link NodeState} of every live member of the cluster, this node
 * included. Reading is local (no network hop), so placement may call {@link #nodes()} per request.
 */
public interface ClusterView {

    /** This node's id ({@code --node-id}). */
    String localNodeId();

    /**
     * The current state of each live member, sorted by node id (so ties in placement break the same
     * way on every node). A member that has left is absent as soon as its departure is known here,
     * even if its last state is still in the map; a member that has joined but not yet published is
     * absent until it does.
     */
    List<NodeState> nodes();

    /**
     * The node ids of the live members, whether or not their state is published now: a member
     * missing here has left the cluster (a state missing from {@link #nodes()} may only be late).
     */
    default java.util.Set<String> memberIds() {
        java.util.Set<String> ids = new java.util.HashSet<>();
        nodes().forEach(n -> ids.add(n.nodeId()));
        return ids;
    }

    /**
     * Calls {@code onChange} after any member's state changes, a member joins or a member leaves (for
     * a queue that waits for room). It runs on a Hazelcast event thread: it must return quickly and
     * never block on the cluster.
     */
    void addListener(Runnable onChange);
}
