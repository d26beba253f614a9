package dev.loragateway.scheduler.placement;

import static dev.loragateway.scheduler.placement.Nodes.empty;
import static dev.loragateway.scheduler.placement.Nodes.node;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.loragateway.scheduler.NodeState;

import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class ConsolidationTest {

    @Test
    void idleMeansNothingRunningNorQueuedDrainingOrNot() {
        NodeState running = node("node-c", 1, 0, 8, 90, 100, Set.of(), Set.of(), false);
        NodeState queued = node("node-a", 0, 2, 8, 100, 100, Set.of(), Set.of(), false);
        NodeState idle = empty("node-d", 8, 100);
        NodeState drained = node("node-b", 0, 0, 8, 100, 100, Set.of("t1/a"), Set.of(), true);
        List<NodeState> nodes = List.of(running, queued, idle, drained);
        assertEquals(List.of(drained, idle), Consolidation.idleNodes(nodes));
        assertEquals(List.of(queued, running), Consolidation.busyNodes(nodes));
        assertEquals(List.of(), Consolidation.idleNodes(List.of()));
    }
}
