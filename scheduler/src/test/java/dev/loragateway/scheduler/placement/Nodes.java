package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/** Fabricated node states for the placement tests, and a tiny cluster that applies decisions. */
final class Nodes {

    static final int BLOCK = 16;

    private Nodes() {
    }

    /** An empty node: {@code maxBatch} slots, {@code kvBlocks} KV blocks of {@value #BLOCK} positions. */
    static NodeState empty(String id, int maxBatch, int kvBlocks) {
        return node(id, 0, 0, maxBatch, kvBlocks, kvBlocks, Set.of(), Set.of(), false);
    }

    static NodeState node(String id, int running, int queued, int maxBatch, int freeKv, int totalKv,
                          Set<String> resident, Set<String> warm, boolean draining) {
        return new NodeState(id, "http://127.0.0.1:0/" + id, "cpu", running, queued, maxBatch, freeKv, totalKv,
            BLOCK, resident, warm, 1.0, draining, 1L);
    }

    static NodeState withLoad(NodeState n, int running) {
        return node(n.nodeId(), running, n.queued(), n.maxBatch(), n.freeKvBlocks(), n.totalKvBlocks(),
            n.residentAdapters(), n.warmAdapters(), n.draining());
    }

    static NodeState withResident(NodeState n, String... adapters) {
        return node(n.nodeId(), n.running(), n.queued(), n.maxBatch(), n.freeKvBlocks(), n.totalKvBlocks(),
            Set.of(adapters), n.warmAdapters(), n.draining());
    }

    static NodeState withWarm(NodeState n, String... adapters) {
        return node(n.nodeId(), n.running(), n.queued(), n.maxBatch(), n.freeKvBlocks(), n.totalKvBlocks(),
            n.residentAdapters(), Set.of(adapters), n.draining());
    }

    static PlacementRequest req(String adapter, int prompt, int maxTokens, int sequences) {
        return new PlacementRequest("tenant-a", adapter, prompt, maxTokens, sequences);
    }

    /** What the chosen node looks like once it admitted the request: batch and KV taken, adapter resident. */
    static NodeState admit(NodeState n, Decision d, PlacementRequest r) {
        Set<String> resident = new HashSet<>(n.residentAdapters());
        if (r.adapter() != null) {
            resident.add(r.adapter());
        }
        return node(n.nodeId(), n.running() + r.sequences(), n.queued(), n.maxBatch(),
            n.freeKvBlocks() - d.kvBlocks(), n.totalKvBlocks(), resident, n.warmAdapters(), n.draining());
    }

    /** Places each request in turn on {@code cluster} (updated in place); returns the chosen node ids (null: no room). */
    static List<String> run(Placement p, List<NodeState> cluster, List<PlacementRequest> reqs) {
        List<String> picks = new ArrayList<>();
        for (PlacementRequest r : reqs) {
            var d = p.place(r, cluster);
            if (d.isEmpty()) {
                picks.add(null);
                continue;
            }
            picks.add(d.get().nodeId());
            for (int i = 0; i < cluster.size(); i++) {
                if (cluster.get(i).nodeId().equals(d.get().nodeId())) {
                    cluster.set(i, admit(cluster.get(i), d.get(), r));
                }
            }
        }
        return picks;
    }

    static List<NodeState> threeEmpty(int maxBatch, int kvBlocks) {
        return new ArrayList<>(List.of(empty("node-c", maxBatch, kvBlocks), empty("node-a", maxBatch, kvBlocks),
            empty("node-b", maxBatch, kvBlocks)));
    }
}
