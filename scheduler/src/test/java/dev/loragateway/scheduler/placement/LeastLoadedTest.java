package dev.loragateway.scheduler.placement;

import static dev.loragateway.scheduler.placement.Nodes.empty;
import static dev.loragateway.scheduler.placement.Nodes.node;
import static dev.loragateway.scheduler.placement.Nodes.req;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.NodeState;

import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class LeastLoadedTest {

    private final Placement leastLoaded = Placements.byName("least-loaded");

    @Test
    void theEmptiestNodeWinsCountingQueuedSequences() {
        NodeState a = node("node-a", 3, 0, 16, 50, 100, Set.of(), Set.of(), false);
        NodeState b = node("node-b", 1, 3, 16, 90, 100, Set.of(), Set.of(), false); // 4 with its queue
        NodeState c = node("node-c", 2, 0, 16, 10, 100, Set.of("t1/a"), Set.of(), false);
        assertEquals("node-c", leastLoaded.place(req("t1/a", 10, 10, 1), List.of(a, b, c)).orElseThrow().nodeId());
    }

    @Test
    void onEqualLoadTheMostFreeKvThenTheSmallestNodeId() {
        NodeState a = node("node-a", 2, 0, 16, 50, 100, Set.of(), Set.of(), false);
        NodeState b = node("node-b", 2, 0, 16, 80, 100, Set.of(), Set.of(), false);
        NodeState c = node("node-c", 2, 0, 16, 80, 100, Set.of(), Set.of(), false);
        var r = req(null, 10, 10, 1);
        assertEquals("node-b", leastLoaded.place(r, List.of(c, a, b)).orElseThrow().nodeId());
        assertEquals("node-c", leastLoaded.place(r, List.of(a, c)).orElseThrow().nodeId(), "more free KV");
        assertEquals("node-b", leastLoaded.place(r, List.of(c, b)).orElseThrow().nodeId(), "full tie: node id");
    }

    @Test
    void aStreamSpreadsOverEveryNodeAndSkipsThoseWithoutRoom() {
        List<NodeState> cluster = Nodes.threeEmpty(8, 100);
        List<String> picks = Nodes.run(leastLoaded, cluster, Collections.nCopies(9, req(null, 20, 20, 1)));
        assertEquals(Set.of("node-a", "node-b", "node-c"), new HashSet<>(picks));
        assertTrue(Consolidation.idleNodes(cluster).isEmpty());
        NodeState full = node("node-a", 0, 0, 8, 2, 100, Set.of(), Set.of(), false);
        NodeState busy = node("node-b", 7, 0, 8, 50, 100, Set.of(), Set.of(), false);
        assertEquals("node-b", leastLoaded.place(req(null, 20, 20, 1), List.of(full, busy)).orElseThrow().nodeId());
        assertTrue(leastLoaded.place(req(null, 20, 20, 2), List.of(full, busy)).isEmpty());
        assertEquals("node-a", leastLoaded.place(req(null, 1, 1, 1), List.of(full, busy)).orElseThrow().nodeId(),
            "one block fits the emptiest again");
    }
}
