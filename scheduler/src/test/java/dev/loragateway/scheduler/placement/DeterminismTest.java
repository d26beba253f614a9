package dev.loragateway.scheduler.placement;

import static dev.loragateway.scheduler.placement.Nodes.node;
import static dev.loragateway.scheduler.placement.Nodes.req;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.Set;

import org.junit.jupiter.api.Test;

/** The same node states in any order give the same decision, ties included. */
class DeterminismTest {

    private static final String[] ADAPTERS = {"t1/a", "t1/b", "t2/a"};

    /** Loads, free KV and adapters from small ranges, so that many nodes tie. */
    private static List<NodeState> randomCluster(Random rnd) {
        List<NodeState> nodes = new ArrayList<>();
        int count = 1 + rnd.nextInt(8);
        for (int i = 0; i < count; i++) {
            Set<String> resident = new HashSet<>();
            Set<String> warm = new HashSet<>();
            for (String a : ADAPTERS) {
                int t = rnd.nextInt(3);
                if (t == 2) {
                    resident.add(a);
                } else if (t == 1) {
                    warm.add(a);
                }
            }
            nodes.add(node("node-" + (char) ('a' + i), rnd.nextInt(3), rnd.nextInt(2), 4,
                rnd.nextBoolean() ? 20 : 40, 40, resident, warm, rnd.nextInt(6) == 0));
        }
        return nodes;
    }

    @Test
    void shuffledNodeListsGiveTheSameDecision() {
        Random rnd = new Random(20260114L);
        int decided = 0;
        for (int trial = 0; trial < 300; trial++) {
            List<NodeState> nodes = randomCluster(rnd);
            String adapter = rnd.nextInt(4) == 0 ? null : ADAPTERS[rnd.nextInt(ADAPTERS.length)];
            PlacementRequest r = req(adapter, rnd.nextInt(64), rnd.nextInt(64), 1 + rnd.nextInt(2));
            for (String name : Placements.NAMES) {
                Optional<Decision> expected = Placements.byName(name).place(r, nodes);
                for (int s = 0; s < 8; s++) {
                    List<NodeState> shuffled = new ArrayList<>(nodes);
                    Collections.shuffle(shuffled, rnd);
                    // a new instance each time: round-robin's turn starts from the same place
                    Optional<Decision> got = Placements.byName(name).place(r, shuffled);
                    assertEquals(expected.map(Decision::nodeId), got.map(Decision::nodeId),
                        name + " " + r + " " + nodes);
                    assertEquals(expected.map(Decision::reason), got.map(Decision::reason));
                }
                decided += expected.isPresent() ? 1 : 0;
            }
        }
        assertTrue(decided > 600, "too few placements found room: " + decided); // both outcomes are exercised
        assertTrue(decided < 1200, "every placement found room: " + decided);
    }
}
