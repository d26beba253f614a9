package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.nio.charset.StandardCharsets;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * Each adapter keeps to its own node: of the nodes with room, those where the adapter is resident
 * win, then warm, then the node that rendezvous hashing (highest random weight) assigns the
 * adapter, then the smallest node id. Rendezvous hashing ranks every node by
 * {@code hash(adapter, nodeId)}, so a node that joins or leaves moves only the adapters it
 * takes or held, and a full node hands its adapters to their second-ranked node. The hash is
 * fixed (FNV-1a 64 of the UTF-8 bytes, then a 64-bit finalizer), so every front node agrees.
 * Base-model requests (no adapter) go least-loaded.
 */
final class AdapterAffinity implements Placement {

    static final String NAME = "adapter-affinity";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Optional<Decision> place(PlacementRequest req, List<NodeState> nodes) {
        List<NodeState> candidates = Room.candidates(req, nodes);
        String adapter = req.adapter();
        if (adapter == null) {
            return LeastLoaded.pick(NAME, req, candidates);
        }
        // Long.compareUnsigned: the weight is an unsigned 64-bit number, the largest wins
        Comparator<NodeState> best = Comparator.comparingInt((NodeState n) -> Room.tier(n, adapter)).reversed()
            .thenComparing((a, b) -> Long.compareUnsigned(weight(adapter, b.nodeId()), weight(adapter, a.nodeId())))
            .thenComparing(NodeState::nodeId);
        return candidates.stream().min(best).map(n -> {
            int kv = Room.kvBlocks(req, n);
            return new Decision(n, kv, NAME, NAME + ": " + Room.tierName(Room.tier(n, adapter))
                + ", rendezvous weight " + Long.toUnsignedString(weight(adapter, n.nodeId()), 16) + ", "
                + Room.room(n, kv, req));
        });
    }

    /** The rendezvous weight of {@code nodeId} for {@code adapter}: the same in every JVM. */
    static long weight(String adapter, String nodeId) {
        long h = 0xcbf29ce484222325L; // FNV-1a 64 offset basis
        h = fnv(h, adapter.getBytes(StandardCharsets.UTF_8));
        h = fnv(h, new byte[] {0}); // separator: ("ab", "c") and ("a", "bc") differ
        h = fnv(h, nodeId.getBytes(StandardCharsets.UTF_8));
        // MurmurHash3 fmix64: FNV's low bits mix poorly on short keys
        h ^= h >>> 33;
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        h *= 0xc4ceb9fe1a85ec53L;
        h ^= h >>> 33;
        return h;
    }

    private static long fnv(long h, byte[] bytes) {
        for (byte b : bytes) {
            h ^= b & 0xff;
            h *= 0x100000001b3L; // FNV-1a 64 prime
        }
        return h;
    }
}
