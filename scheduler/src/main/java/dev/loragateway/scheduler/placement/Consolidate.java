package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * Punica's consolidation: of the nodes with room, the one with the largest batch (running +
 * queued) wins, then the one where the adapter is resident (device tier), then warm (host tier),
 * then the smallest node id. Load packs onto as few nodes as it needs; the rest stay idle and can
 * be released. The adapter is second because loading one costs milliseconds while every extra
 * busy node costs a GPU.
 */
final class Consolidate implements Placement {

    static final String NAME = "consolidate";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Optional<Decision> place(PlacementRequest req, List<NodeState> nodes) {
        Comparator<NodeState> best = Comparator.comparingInt((NodeState n) -> Room.load(n)).reversed()
            .thenComparing(Comparator.comparingInt((NodeState n) -> Room.tier(n, req.adapter())).reversed())
            .thenComparing(NodeState::nodeId);
        return Room.candidates(req, nodes).stream().min(best).map(n -> {
            int kv = Room.kvBlocks(req, n);
            return new Decision(n, kv, NAME, NAME + ": load " + Room.load(n) + ", "
                + Room.tierName(Room.tier(n, req.adapter())) + ", " + Room.room(n, kv, req));
        });
    }
}
