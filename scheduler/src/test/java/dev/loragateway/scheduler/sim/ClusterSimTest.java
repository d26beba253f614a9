package dev.loragateway.scheduler.sim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.placement.Placements;
import dev.loragateway.scheduler.workload.TraceRequest;
import dev.loragateway.scheduler.workload.Workload;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The single-node engine model checked by hand against its profile, then the cluster: determinism
 * and every policy through the real placement.
 */
class ClusterSimTest {
    /** 10 ms a step, +1 ms a decode row, +0.1 ms a prompt token, +2 ms an adapter; loads 5 ms (host), 50 ms (disk). */
    static Profile profile(NodeConfig node) {
        return new Profile("test", "hand-made", 10, 1, 0.1, 2, 5, 50, node);
    }

    static final NodeConfig NODE = new NodeConfig(32, 512, 1000, 16, 4, 8);
    static final double MS = 1e-3;

    static SimResult run(NodeConfig node, int nodes, String policy, List<TraceRequest> trace) {
        ClusterSim sim = new ClusterSim(new ClusterSim.Options(nodes, policy, profile(node), true, Double.NaN, Double.NaN));
        return sim.run(trace.iterator(), trace.size(), 1);
    }

    static TraceRequest req(double at, String adapter, int prompt, int output) {
        return new TraceRequest(at, "t0", adapter, prompt, output, "even");
    }

    @Test
    void oneRequestTakesItsPrefillStepThenOneStepPerToken() {
        SimResult r = run(NODE, 1, "consolidate", List.of(req(0, null, 100, 5)));
        assertEquals(1, r.completed());
        assertEquals(10 + 0.1 * 100, r.ttftP50() / MS, 1e-3); // one prefill step of 100 prompt tokens
        assertEquals(20 + 4 * 11, r.e2eP50() / MS, 1e-3);      // then 4 decode steps of one row
        assertEquals(11, r.tpotP99() / MS, 1e-3);
        assertEquals(5, r.steps());
    }

    @Test
    void theAttentionTermChargesEachStepThePositionsItsRowsAttendTo() {
        // as the test profile, plus 0.01 ms per position attended
        Profile p = new Profile("test", "hand-made", 10, 1, 0.1, 2, 0.01, 5, 50, NODE, 0);
        List<TraceRequest> trace = List.of(req(0, null, 16, 4));
        SimResult r = new ClusterSim(new ClusterSim.Options(1, "consolidate", p, true, Double.NaN, Double.NaN))
            .run(trace.iterator(), 1, 1);
        // prefill: 16 rows attend to 1 + 2 + ... + 16 = 136 positions
        assertEquals(10 + 0.1 * 16 + 0.01 * 136, r.ttftP50() / MS, 1e-3);
        // then 3 decode steps at positions 16, 17, 18 (one segment: its steps take their mean, the total is exact)
        assertEquals(10 + 1.6 + 1.36 + 3 * 11 + 0.01 * (17 + 18 + 19), r.e2eP50() / MS, 1e-3);
    }

    @Test
    void aPromptLongerThanTheStepBudgetIsChunked() {
        SimResult r = run(NODE, 1, "consolidate", List.of(req(0, null, 1200, 1)));
        // 512 + 512 + 176 prompt tokens over three steps; the last one samples the first token
        assertEquals(3 * 10 + 0.1 * 1200, r.ttftP50() / MS, 1e-3);
        assertEquals(3, r.steps());
    }

    @Test
    void theBatchCapMakesTheThirdRequestWait() {
        NodeConfig two = new NodeConfig(2, 512, 1000, 16, 4, 8);
        SimResult r = run(two, 1, "consolidate", List.of(req(0, null, 10, 3), req(0, null, 10, 3), req(0, null, 10, 3)));
        assertEquals(3, r.completed());
        // the first two share steps: prefill (10 + 0.1·20) then 2 decode steps of 2 rows (12 each) = 36 ms;
        // the third waits in the cluster queue (no node had a batch place) and starts after them
        assertEquals(12, r.ttftP50() / MS, 1e-3);
        assertEquals(36 + 11, r.ttftP99() / MS, 1e-3);
        assertEquals(36 + 11 + 2 * 11, r.e2eP99() / MS, 1e-3);
    }

    @Test
    void aDryKvPoolPreemptsTheNewestWhichStillCompletes() {
        NodeConfig tiny = new NodeConfig(8, 512, 4, 16, 4, 8); // 64 positions
        // the first holds 2 blocks by 50 ms and grows to 4; the second sees 2 free and needs 2 over its life
        SimResult r = run(tiny, 1, "consolidate", List.of(req(0, null, 16, 40), req(0.05, null, 16, 16)));
        assertEquals(2, r.completed());
        assertTrue(r.preemptions() >= 1, "preemptions " + r.preemptions());
        assertEquals(0, r.migrated());
    }

    @Test
    void withASecondNodeTheNewestMovesInsteadOfBeingPreempted() {
        NodeConfig tiny = new NodeConfig(8, 512, 4, 16, 4, 8);
        SimResult r = run(tiny, 2, "consolidate", List.of(req(0, null, 16, 40), req(0.05, null, 16, 16)));
        assertEquals(2, r.completed());
        assertEquals(1, r.migrated());
        assertEquals(0, r.preemptions());
    }

    @Test
    void adapterSlotLimitsCauseLoadsThatTheProfileCharges() {
        NodeConfig oneSlot = new NodeConfig(32, 512, 1000, 16, 1, 8);
        // one step of 10 prompt tokens and one adapter after the disk load
        SimResult first = run(oneSlot, 1, "consolidate", List.of(req(0, "a", 10, 1)));
        assertEquals(50 + 10 + 0.1 * 10 + 2, first.ttftP50() / MS, 1e-3);
        // a, b, a, b one after another: each from disk once, then each evicts the other from the one slot
        // and comes back from the host tier
        SimResult r = run(oneSlot, 1, "consolidate",
            List.of(req(0, "a", 10, 1), req(1, "b", 10, 1), req(2, "a", 10, 1), req(3, "b", 10, 1)));
        assertEquals(2, r.diskLoads());
        assertEquals(2, r.hostLoads());
        assertEquals(5 + 10 + 0.1 * 10 + 2, r.ttftP50() / MS, 1e-3); // nearest rank 2 of 4: a host load
        assertEquals(50 + 10 + 0.1 * 10 + 2, r.ttftP99() / MS, 1e-3);
    }

    @Test
    void theSameSeedGivesTheSameResult() {
        Workload w = Workload.of(Map.of("rate", "400", "tenants", "8", "popularity", "zipf:1.2", "seed", "7"));
        Profile p = profile(NODE);
        List<SimResult> runs = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            runs.add(new ClusterSim(new ClusterSim.Options(8, "adapter-affinity", p, true, Double.NaN, Double.NaN))
                .run(w.trace(), 3000, 3000 / 400.0));
        }
        SimResult a = runs.get(0);
        SimResult b = runs.get(1);
        assertEquals(a.completed(), b.completed());
        assertEquals(a.ttftP99(), b.ttftP99());
        assertEquals(a.e2eP50(), b.e2eP50());
        assertEquals(a.steps(), b.steps());
        assertEquals(a.busyMean(), b.busyMean());
        assertEquals(a.hostLoads(), b.hostLoads());
    }

    @Test
    void consolidateLeavesNodesIdleAtLowLoadWhereRoundRobinDoesNot() {
        Workload w = Workload.of(Map.of("rate", "20", "seed", "3"));
        Map<String, SimResult> by = new java.util.HashMap<>();
        for (String policy : Placements.NAMES) {
            SimResult r = new ClusterSim(new ClusterSim.Options(8, policy, profile(NODE), true, Double.NaN, Double.NaN))
                .run(w.trace(), 400, 20);
            assertEquals(400, r.completed(), policy);
            by.put(policy, r);
        }
        assertTrue(by.get("consolidate").busyPeak() <= 2, "consolidate peak " + by.get("consolidate").busyPeak());
        assertTrue(by.get("round-robin").busyPeak() >= 6, "round-robin peak " + by.get("round-robin").busyPeak());
        assertTrue(by.get("least-loaded").busyPeak() >= 6, "least-loaded peak " + by.get("least-loaded").busyPeak());
        // adapter-affinity keeps each adapter on its node: fewer loads than spreading them everywhere
        assertTrue(by.get("adapter-affinity").diskLoads() <= by.get("round-robin").diskLoads(),
            by.get("adapter-affinity").diskLoads() + " vs " + by.get("round-robin").diskLoads());
    }
}
