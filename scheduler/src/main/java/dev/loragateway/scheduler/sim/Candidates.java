package dev.loragateway.scheduler.sim;

import java.util.Arrays;
import java.util.BitSet;

/**
 * Which nodes the simulator hands to the real {@code Placement} for one request: of a thousand
 * nodes, the few that can win, so that placement costs microseconds, not a sort of a thousand
 * {@code NodeState}s. A node is passed when it has room (the filter every policy applies: a free
 * batch place and the request's whole-life KV blocks) and is the smallest-id node of its class,
 * where a class is the values the policy's order reads before the node id:
 *
 * <pre>
 *   consolidate        (load, adapter tier)         ≤ 3 × (max batch + 1) nodes
 *   least-loaded       (load): the most free KV     ≤ max batch + 1
 *   round-robin        the next node after the last pick, and the first (the wrap)   ≤ 2
 *   adapter-affinity   every node with the adapter resident or warm, and of the rest the one
 *                      with the largest rendezvous weight; base-model requests as least-loaded
 * </pre>
 * Node ids sort as node indexes (zero-padded), so "smallest id" is "smallest index". Passing one
 * node per class leaves the policy's choice unchanged (the winner is the best of its class, and
 * the others of its class lose to it on id); {@code CandidatesTest} checks it against placement over
 * all nodes for random states.
 */
final class Candidates {
    private Candidates() {
    }

    /**
     * Writes the node indexes to pass into {@code out} and returns how many.
     *
     * @param load      running + queued per node
     * @param freeKv    free KV blocks per node (as published)
     * @param kvNeed    the request's whole-life blocks
     * @param resident  nodes with the adapter in a device slot (null: base model)
     * @param warm      nodes with it in the host tier (null: base model)
     * @param lastPick  the node round-robin picked last (−1: none)
     * @param weights   rendezvous weight per node for the adapter (adapter-affinity only)
     * @param exclude   a node not to use (−1: none)
     */
    static int select(String policy, int n, int[] load, int[] freeKv, int maxBatch, int kvNeed, BitSet resident,
                      BitSet warm, int lastPick, long[] weights, int exclude, int[] out) {
        int count = 0;
        switch (policy) {
            case "consolidate" -> {
                int[] rep = new int[3 * (maxBatch + 1)];
                Arrays.fill(rep, -1);
                for (int i = 0; i < n; i++) {
                    if (fits(i, load, freeKv, maxBatch, kvNeed, exclude)) {
                        int key = load[i] * 3 + tier(i, resident, warm);
                        if (rep[key] < 0) {
                            rep[key] = i;
                            out[count++] = i;
                        }
                    }
                }
            }
            case "least-loaded" -> count = leastLoaded(n, load, freeKv, maxBatch, kvNeed, exclude, out);
            case "round-robin" -> {
                int first = -1;
                int next = -1;
                for (int i = 0; i < n && next < 0; i++) {
                    if (fits(i, load, freeKv, maxBatch, kvNeed, exclude)) {
                        if (first < 0) {
                            first = i;
                        }
                        if (i > lastPick) {
                            next = i;
                        }
                    }
                }
                if (first >= 0) {
                    out[count++] = first;
                }
                if (next >= 0 && next != first) {
                    out[count++] = next;
                }
            }
            case "adapter-affinity" -> {
                if (resident == null) {
                    return leastLoaded(n, load, freeKv, maxBatch, kvNeed, exclude, out);
                }
                int best = -1;
                for (int i = 0; i < n; i++) {
                    if (fits(i, load, freeKv, maxBatch, kvNeed, exclude)) {
                        if (tier(i, resident, warm) > 0) {
                            out[count++] = i;
                        } else if (best < 0 || Long.compareUnsigned(weights[i], weights[best]) > 0) {
                            best = i;
                        }
                    }
                }
                if (best >= 0) {
                    out[count++] = best;
                }
            }
            default -> throw new IllegalArgumentException("unknown placement '" + policy + "'");
        }
        return count;
    }

    private static int leastLoaded(int n, int[] load, int[] freeKv, int maxBatch, int kvNeed, int exclude, int[] out) {
        int[] rep = new int[maxBatch + 1];
        Arrays.fill(rep, -1);
        for (int i = 0; i < n; i++) {
            if (fits(i, load, freeKv, maxBatch, kvNeed, exclude) && (rep[load[i]] < 0 || freeKv[i] > freeKv[rep[load[i]]])) {
                rep[load[i]] = i;
            }
        }
        int count = 0;
        for (int r : rep) {
            if (r >= 0) {
                out[count++] = r;
            }
        }
        return count;
    }

    private static boolean fits(int i, int[] load, int[] freeKv, int maxBatch, int kvNeed, int exclude) {
        return i != exclude && load[i] < maxBatch && freeKv[i] >= kvNeed;
    }

    private static int tier(int i, BitSet resident, BitSet warm) {
        if (resident == null) {
            return 0;
        }
        return resident.get(i) ? 2 : warm.get(i) ? 1 : 0;
    }
}
