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

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import org.junit.jupiter.api.Test;

class AdapterAffinityTest {

    private final Placement affinity = Placements.byName("adapter-affinity");

    private static List<NodeState> five() {
        List<NodeState> nodes = new ArrayList<>();
        for (String id : List.of("n1", "n2", "n3", "n4", "n5")) {
            nodes.add(empty(id, 8, 100));
        }
        return nodes;
    }

    private static List<String> adapters(int count) {
        List<String> names = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            names.add("tenant-" + (i % 7) + "/adapter-" + i);
        }
        return names;
    }

    private String pick(String adapter, List<NodeState> nodes) {
        return affinity.place(req(adapter, 10, 10, 1), nodes).orElseThrow().nodeId();
    }

    @Test
    void anAdapterKeepsItsNodeAcrossCallsAndNodeOrders() {
        List<NodeState> nodes = five();
        Random rnd = new Random(7);
        for (String a : adapters(50)) {
            String first = pick(a, nodes);
            for (int i = 0; i < 5; i++) {
                List<NodeState> shuffled = new ArrayList<>(nodes);
                Collections.shuffle(shuffled, rnd);
                assertEquals(first, pick(a, shuffled), a);
            }
        }
    }

    @Test
    void adaptersSpreadOverTheNodes() {
        Map<String, Integer> perNode = new HashMap<>();
        for (String a : adapters(500)) {
            perNode.merge(pick(a, five()), 1, Integer::sum);
        }
        assertEquals(5, perNode.size(), perNode.toString());
        perNode.values().forEach(c -> assertTrue(c > 60 && c < 140, perNode.toString())); // 100 expected each
    }

    @Test
    void removingAnotherNodeMovesOnlyTheAdaptersItHeld() {
        List<NodeState> all = five();
        List<NodeState> withoutN3 = new ArrayList<>(all);
        withoutN3.removeIf(n -> n.nodeId().equals("n3"));
        int moved = 0;
        for (String a : adapters(300)) {
            String before = pick(a, all);
            String after = pick(a, withoutN3);
            if (before.equals("n3")) {
                moved++;
                assertNotEquals("n3", after);
            } else {
                assertEquals(before, after, a + " moved though its node stayed");
            }
        }
        assertTrue(moved > 0, "n3 held none of 300 adapters");
        // a full node hands its adapters on the same way: as if it had left
        List<NodeState> n3Full = new ArrayList<>(all);
        n3Full.replaceAll(n -> n.nodeId().equals("n3") ? withLoad(n, 8) : n);
        for (String a : adapters(300)) {
            assertEquals(pick(a, withoutN3), pick(a, n3Full), a);
        }
    }

    @Test
    void residentBeatsWarmBeatsTheHash() {
        String a = "t1/a";
        List<NodeState> nodes = five();
        String hashed = pick(a, nodes);
        String other = hashed.equals("n1") ? "n2" : "n1";
        String third = hashed.equals("n5") ? "n4" : "n5";
        List<NodeState> warm = new ArrayList<>(nodes);
        warm.replaceAll(n -> n.nodeId().equals(other) ? withWarm(n, a) : n);
        assertEquals(other, pick(a, warm));
        List<NodeState> resident = new ArrayList<>(warm);
        resident.replaceAll(n -> n.nodeId().equals(third) ? withResident(withLoad(n, 6), a) : n);
        var d = affinity.place(req(a, 10, 10, 1), resident).orElseThrow();
        assertEquals(third, d.nodeId());
        assertTrue(d.reason().startsWith("adapter-affinity: adapter resident"), d.reason());
    }

    @Test
    void baseModelRequestsGoLeastLoaded() {
        NodeState a = withLoad(empty("n1", 8, 100), 3);
        NodeState b = withLoad(empty("n2", 8, 100), 1);
        NodeState c = node("n3", 0, 0, 8, 1, 100, Set.of(), Set.of(), false); // emptiest but no KV room
        var d = affinity.place(req(null, 10, 10, 1), List.of(a, b, c)).orElseThrow();
        assertEquals("n2", d.nodeId());
        assertEquals("adapter-affinity", d.policy());
    }

    @Test
    void theWeightIsFixedAcrossJvms() {
        // pinned (checked against an independent FNV-1a 64 + fmix64): a change of the hash would move
        // every adapter of a cluster whose nodes run different builds
        assertEquals(0xdb0a1c832ff06832L, AdapterAffinity.weight("t1/a", "n4"));
        assertEquals("n4", pick("t1/a", five()));
        assertNotEquals(AdapterAffinity.weight("ab", "c"), AdapterAffinity.weight("a", "bc"));
    }
}
