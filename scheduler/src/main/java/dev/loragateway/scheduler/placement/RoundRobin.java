package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Rotation in node-id order over the nodes with room: the pick is the first node whose id follows
 * the last pick's, wrapping around. Remembering the last node id (not a counter) keeps the turn
 * when nodes join, leave or fill up. Concurrent callers each take a different turn (compare and
 * set on the last pick). Stateful: each instance keeps its own rotation.
 */
final class RoundRobin implements Placement {

    static final String NAME = "round-robin";

    /** The node id picked last, or null before the first pick. */
    private final AtomicReference<String> last = new AtomicReference<>();

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Optional<Decision> place(PlacementRequest req, List<NodeState> nodes) {
        List<NodeState> candidates = Room.candidates(req, nodes); // sorted by node id
        if (candidates.isEmpty()) {
            return Optional.empty();
        }
        while (true) {
            String prev = last.get();
            NodeState next = after(prev, candidates);
            if (last.compareAndSet(prev, next.nodeId())) {
                int kv = Room.kvBlocks(req, next);
                return Optional.of(new Decision(next, kv, NAME, NAME + ": next after "
                    + (prev == null ? "none" : prev) + ", " + Room.room(next, kv, req)));
            }
        }
    }

    private static NodeState after(String prev, List<NodeState> sorted) {
        if (prev != null) {
            for (NodeState n : sorted) {
                if (n.nodeId().compareTo(prev) > 0) {
                    return n;
                }
            }
        }
        return sorted.get(0);
    }
}
