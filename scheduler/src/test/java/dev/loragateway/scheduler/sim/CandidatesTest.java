package dev.loragateway.scheduler.sim;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;
import dev.loragateway.scheduler.placement.Decision;
import dev.loragateway.scheduler.placement.Placement;
import dev.loragateway.scheduler.placement.Placements;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The simulator passes placement a few nodes instead of all: for random cluster states every
 * policy must pick the same node from the few as from all of them (round-robin over a run of
 * picks, its turn kept in both).
 */
class CandidatesTest {
    static List<String> policies() {
        return Placements.NAMES;
    }

    @ParameterizedTest
    @MethodSource("policies")
    void theFewPickWhatAllWouldPick(String policy) {
        SplittableRandom rnd = new SplittableRandom(policy.hashCode());
        int maxBatch = 8;
        int total = 64;
        Placement onAll = Placements.byName(policy);
        Placement onFew = Placements.byName(policy);
        int lastPick = -1;
        int decided = 0;
        for (int round = 0; round < 400; round++) {
            int n = 1 + rnd.nextInt(40);
            int[] load = new int[n];
            int[] free = new int[n];
            String[] adapters = {"t0/a", "t0/b", "t1/a"};
            List<BitSet> res = List.of(new BitSet(), new BitSet(), new BitSet());
            List<BitSet> warm = List.of(new BitSet(), new BitSet(), new BitSet());
            List<NodeState> all = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                // few distinct values, so that classes and ties are common
                load[i] = rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(maxBatch + 2);
                free[i] = load[i] == 0 ? total : rnd.nextInt(total + 1) / 8 * 8;
                Set<String> r = new HashSet<>();
                Set<String> w = new HashSet<>();
                for (int a = 0; a < adapters.length; a++) {
                    int t = rnd.nextInt(5);
                    if (t == 0) {
                        r.add(adapters[a]);
                        res.get(a).set(i);
                    }
                    if (t <= 1) {
                        w.add(adapters[a]);
                        warm.get(a).set(i);
                    }
                }
                all.add(new NodeState(String.format("node-%04d", i), "", "sim", load[i], 0, maxBatch, free[i], total, 16, r, w,
                    0, false, 0));
            }
            int a = rnd.nextInt(adapters.length + 1) - 1;
            String adapter = a < 0 ? null : adapters[a];
            PlacementRequest req = new PlacementRequest("t0", adapter, 1 + rnd.nextInt(200), 1 + rnd.nextInt(300), 1);
            int need = (req.positions() + 15) / 16;
            int exclude = rnd.nextInt(3) == 0 ? rnd.nextInt(n) : -1;
            long[] weights = new long[n];
            for (int i = 0; i < n && adapter != null; i++) {
                weights[i] = Placements.rendezvousWeight(adapter, all.get(i).nodeId());
            }
            int[] out = new int[n + 3 * (maxBatch + 1)];
            int count = Candidates.select(policy, n, load, free, maxBatch, need, a < 0 ? null : res.get(a),
                a < 0 ? null : warm.get(a), lastPick, weights, exclude, out);
            List<NodeState> few = new ArrayList<>();
            for (int c = 0; c < count; c++) {
                few.add(all.get(out[c]));
            }
            List<NodeState> others = new ArrayList<>(all);
            if (exclude >= 0) {
                others.remove(exclude);
            }
            Optional<String> expected = onAll.place(req, others).map(Decision::nodeId);
            Optional<String> got = onFew.place(req, few).map(Decision::nodeId);
            assertEquals(expected, got, policy + " round " + round);
            if (got.isPresent()) {
                lastPick = Integer.parseInt(got.get().substring(5));
                decided++;
            }
        }
        org.junit.jupiter.api.Assertions.assertTrue(decided > 100, "only " + decided + " rounds found room");
    }
}
