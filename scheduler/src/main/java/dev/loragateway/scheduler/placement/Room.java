package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The filter every policy shares: which nodes can take a request now.
 *
 * <p>A node qualifies when it is not draining, has {@code req.sequences()} free batch slots, and
 * has the request's KV blocks free for its whole life (prompt plus {@code maxTokens}), so that it
 * never has to be migrated for room it was promised.
 *
 * <p>KV counting follows the engine's copy-on-write forks ({@code n > 1}): the choices of one
 * prompt share the prompt's full blocks; each choice owns its partly-filled prompt block (copied
 * on its first write) and its generated blocks. With {@code p} prompt tokens, block size
 * {@code b}, {@code s} sequences and {@code L = p + maxTokens}:
 * <pre>
 *   shared = floor(p / b)                       // prompt blocks no choice writes again
 *   kv     = shared + s × (ceil(L / b) − shared)
 *   e.g. p 40, maxTokens 10, b 16, s 4: shared 2, ceil(50/16) = 4 → 2 + 4 × 2 = 10 blocks
 * </pre>
 * This is exact for one prompt with {@code n} choices (the chat API). A completions request with
 * several prompts is counted as if they shared the longest one's blocks, so it is undercounted by
 * the other prompts' full blocks; the engine still admits by its own count and preempts when it
 * runs dry, so an undercount costs a migration, never a wrong answer.
 */
final class Room {

    private Room() {
    }

    /** KV blocks {@code req} takes on {@code node} over its life (see the class comment). */
    static int kvBlocks(PlacementRequest req, NodeState node) {
        int b = node.kvBlockSize();
        if (b <= 0) {
            return 0;
        }
        int shared = req.promptTokens() / b; // with one sequence the formula is simply ceil(L / b)
        return shared + req.sequences() * (node.blocksFor(req.positions()) - shared);
    }

    /** True when {@code node} takes {@code req} now. */
    static boolean fits(PlacementRequest req, NodeState node) {
        return !node.draining()
            && node.freeBatchSlots() >= req.sequences()
            && node.freeKvBlocks() >= kvBlocks(req, node);
    }

    /**
     * The nodes that take {@code req} now, sorted by node id; of two values for one node id only
     * the newer ({@code updatedMillis}) counts.
     */
    static List<NodeState> candidates(PlacementRequest req, List<NodeState> nodes) {
        check(req, nodes);
        Map<String, NodeState> newest = new HashMap<>();
        for (NodeState n : nodes) {
            Objects.requireNonNull(n, "node state");
            newest.merge(n.nodeId(), n, (a, c) -> c.updatedMillis() > a.updatedMillis() ? c : a);
        }
        List<NodeState> fit = new ArrayList<>();
        for (NodeState n : newest.values()) {
            if (fits(req, n)) {
                fit.add(n);
            }
        }
        fit.sort(Comparator.comparing(NodeState::nodeId));
        return fit;
    }

    private static void check(PlacementRequest req, List<NodeState> nodes) {
        Objects.requireNonNull(req, "request");
        Objects.requireNonNull(nodes, "nodes");
        if (req.sequences() < 1) {
            throw new IllegalArgumentException("request sequences " + req.sequences() + " is below 1");
        }
        if (req.promptTokens() < 0 || req.maxTokens() < 0) {
            throw new IllegalArgumentException("request prompt tokens " + req.promptTokens()
                + " and max tokens " + req.maxTokens() + " must not be negative");
        }
    }

    /** Running plus queued sequences: the batch a node is building. */
    static int load(NodeState n) {
        return n.running() + n.queued();
    }

    /** 2 when {@code adapter} is in the node's device tier, 1 in its host tier, 0 otherwise (or base model). */
    static int tier(NodeState n, String adapter) {
        if (adapter == null) {
            return 0;
        }
        return n.residentAdapters().contains(adapter) ? 2 : n.warmAdapters().contains(adapter) ? 1 : 0;
    }

    static String tierName(int tier) {
        return tier == 2 ? "adapter resident" : tier == 1 ? "adapter warm" : "adapter absent";
    }

    /** The common tail of every reason: how much of the node the request takes. */
    static String room(NodeState n, int kvBlocks, PlacementRequest req) {
        return kvBlocks + " of " + n.freeKvBlocks() + " free KV blocks, " + req.sequences() + " of "
            + n.freeBatchSlots() + " free batch slots";
    }
}
