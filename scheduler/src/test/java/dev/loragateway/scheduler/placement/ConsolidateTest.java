package dev.loragateway.scheduler.placement;

import static dev.loragateway.scheduler.placement.Nodes.empty;
import static dev.loragateway.scheduler.placement.Nodes.node;
import static dev.loragateway.scheduler.placement.Nodes.req;
import static dev.loragateway.scheduler.placement.Nodes.withLoad;
import static dev.loragateway.scheduler.placement.Nodes.withResident;
import static dev.loragateway.scheduler.placement.Nodes.withWarm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class ConsolidateTest {

    private final Placement consolidate = Placements.byName("consolidate");

    /** {@code count} one-sequence requests over four adapters and the base model. */
    private static List<PlacementRequest> mix(int count) {
        List<PlacementRequest> reqs = new ArrayList<>();
        String[] adapters = {"t1/a", "t1/b", "t2/a", null, "t3/c"};
        for (int i = 0; i < count; i++) {
            reqs.add(req(adapters[i % adapters.length], 20 + i, 20, 1)); // 3 blocks each
        }
        return reqs;
    }

    @Test
    void aLoadOneNodeHoldsRunsOnOneNodeAndLeavesTwoIdle() {
        List<NodeState> cluster = Nodes.threeEmpty(8, 100);
        List<String> picks = Nodes.run(consolidate, cluster, mix(8));
        assertEquals(Set.of("node-a"), new HashSet<>(picks), picks.toString());
        assertEquals(List.of("node-b", "node-c"), ids(Consolidation.idleNodes(cluster)));
        assertEquals(List.of("node-a"), ids(Consolidation.busyNodes(cluster)));
    }

    @Test
    void pastOneNodesCapacityTheSecondFillsBeforeTheThirdStarts() {
        List<NodeState> cluster = Nodes.threeEmpty(8, 100);
        List<String> picks = Nodes.run(consolidate, cluster, mix(20));
        String first = picks.get(0);
        String second = picks.get(8);
        assertEquals(List.of(first), List.copyOf(new HashSet<>(picks.subList(0, 8))), picks.toString());
        assertNotEquals(first, second);
        assertEquals(List.of(second), List.copyOf(new HashSet<>(picks.subList(8, 16))), picks.toString());
        String third = picks.get(16);
        assertTrue(!third.equals(first) && !third.equals(second), picks.toString());
        assertEquals(List.of(third), List.copyOf(new HashSet<>(picks.subList(16, 20))), picks.toString());
    }

    @Test
    void kvRunsOutBeforeBatchSlotsAndTheNextNodeTakesOver() {
        List<NodeState> cluster = Nodes.threeEmpty(64, 10); // 3 requests of 3 blocks fill a node's KV
        List<String> picks = Nodes.run(consolidate, cluster, mix(10));
        assertEquals(List.of("node-a", "node-a", "node-a", "node-b", "node-b", "node-b",
            "node-c", "node-c", "node-c"), picks.subList(0, 9));
        assertEquals(null, picks.get(9), "1 free KV block left on each node: no room for 4");
    }

    @Test
    void theBusiestNodeWithRoomWinsOverAnIdleOneEvenWithoutTheAdapter() {
        NodeState busy = withLoad(empty("node-b", 8, 100), 5);
        NodeState idleWithAdapter = withResident(empty("node-a", 8, 100), "t1/a");
        var d = consolidate.place(req("t1/a", 10, 10, 1), List.of(idleWithAdapter, busy)).orElseThrow();
        assertEquals("node-b", d.nodeId());
        assertTrue(d.reason().startsWith("consolidate: load 5, adapter absent"), d.reason());
    }

    @Test
    void amongEquallyLoadedNodesResidentBeatsWarmBeatsAbsent() {
        NodeState a = withLoad(empty("node-a", 8, 100), 2);
        NodeState b = withWarm(withLoad(empty("node-b", 8, 100), 2), "t1/a");
        NodeState c = withResident(withLoad(empty("node-c", 8, 100), 2), "t1/a");
        var r = req("t1/a", 10, 10, 1);
        assertEquals("node-c", consolidate.place(r, List.of(a, b, c)).orElseThrow().nodeId());
        assertEquals("node-b", consolidate.place(r, List.of(a, b)).orElseThrow().nodeId());
        assertEquals("node-a", consolidate.place(req("t9/z", 10, 10, 1), List.of(c, b, a)).orElseThrow().nodeId(),
            "nobody holds it: smallest node id");
    }

    @Test
    void neverDrainingNorWithoutKvNorWithoutBatchSlots() {
        var r = req(null, 40, 10, 4); // 10 KV blocks, 4 batch slots
        NodeState draining = node("node-a", 7, 0, 64, 100, 100, Set.of(), Set.of(), true);
        NodeState noKv = node("node-b", 6, 0, 64, 9, 100, Set.of(), Set.of(), false);
        NodeState noSlots = node("node-c", 5, 1, 9, 100, 100, Set.of(), Set.of(), false);
        NodeState ok = node("node-d", 1, 0, 8, 10, 100, Set.of(), Set.of(), false);
        assertEquals("node-d", consolidate.place(r, List.of(draining, noKv, noSlots, ok)).orElseThrow().nodeId());
        assertTrue(consolidate.place(r, List.of(draining, noKv, noSlots)).isEmpty());
        assertTrue(consolidate.place(r, List.of()).isEmpty());
    }

    @Test
    void theDecisionCarriesTheKvBlocksItCounted() {
        var d = consolidate.place(req(null, 40, 10, 4), List.of(empty("node-a", 8, 100))).orElseThrow();
        assertEquals(10, d.kvBlocks());
        assertEquals("consolidate", d.policy());
    }

    private static List<String> ids(List<NodeState> nodes) {
        return nodes.stream().map(NodeState::nodeId).toList();
    }
}
