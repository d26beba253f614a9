package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * Spreading: of the nodes with room, the smallest batch (running + queued) wins, then the most
 * free KV blocks, then the smallest node id. Lowest latency per request, every node busy.
 */
final class LeastLoaded implements Placement {

    static final String NAME = "least-loaded";

    static final Comparator<NodeState> ORDER = Comparator.comparingInt(Room::load)
        .thenComparing(Comparator.comparingInt(NodeState::freeKvBlocks).reversed())
        .thenComparing(NodeState::nodeId);

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Optional<Decision> place(PlacementRequest req, List<NodeState> nodes) {
        return pick(NAME, req, Room.candidates(req, nodes));
    }

    /** The least-loaded of {@code candidates} (already filtered), named as {@code policy}. */
    static Optional<Decision> pick(String policy, PlacementRequest req, List<NodeState> candidates) {
        return candidates.stream().min(ORDER).map(n -> {
            int kv = Room.kvBlocks(req, n);
            return new Decision(n, kv, policy, policy + ": least loaded, load " + Room.load(n) + ", "
                + Room.room(n, kv, req));
        });
    }
}
