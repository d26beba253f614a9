package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;

import java.util.Comparator;
import java.util.List;
import java.util.stream.Collectors;

/**
 * Which nodes carry work and which placement has left empty: the releasable-node signal
 * ({@code lora_gateway_cluster_nodes_idle}) an autoscaler scales in on, as INFaaS and Punica
 * describe. A node is idle when nothing runs or waits on it ({@link NodeState#idle()}), draining
 * or not.
 */
public final class Consolidation {

    private Consolidation() {
    }

    /** The idle nodes, by node id. */
    public static List<NodeState> idleNodes(List<NodeState> nodes) {
        return nodes.stream().filter(NodeState::idle).sorted(Comparator.comparing(NodeState::nodeId))
            .collect(Collectors.toList());
    }

    /** The nodes with sequences running or queued, by node id. */
    public static List<NodeState> busyNodes(List<NodeState> nodes) {
        return nodes.stream().filter(n -> !n.idle()).sorted(Comparator.comparing(NodeState::nodeId))
            .collect(Collectors.toList());
    }
}
