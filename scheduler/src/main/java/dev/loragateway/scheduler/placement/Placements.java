package dev.loragateway.scheduler.placement;

import java.util.List;

/** The placement policies by their {@code --placement} names. */
public final class Placements {

    /** The policy {@code serve} uses without {@code --placement}. */
    public static final String DEFAULT = Consolidate.NAME;

    /** Every {@code --placement} name, the default first. */
    public static final List<String> NAMES =
        List.of(Consolidate.NAME, LeastLoaded.NAME, RoundRobin.NAME, AdapterAffinity.NAME);

    private Placements() {
    }

    /**
     * A new policy named {@code name} (each call a new instance: round-robin keeps its turn per
     * instance).
     *
     * @throws IllegalArgumentException for a name not in {@link #NAMES}, naming the allowed ones
     */
    public static Placement byName(String name) {
        if (name != null) {
            switch (name) {
                case Consolidate.NAME:
                    return new Consolidate();
                case LeastLoaded.NAME:
                    return new LeastLoaded();
                case RoundRobin.NAME:
                    return new RoundRobin();
                case AdapterAffinity.NAME:
                    return new AdapterAffinity();
                default:
                    break;
            }
        }
        throw new IllegalArgumentException("unknown placement '" + name + "': use one of "
            + String.join(", ", NAMES));
    }

    /**
     * True when {@code node} could take {@code req} once it has emptied: it does not drain, and its
     * whole batch and KV pool hold the request. A request that no node could ever take must not
     * wait for room (the engine that gets it decides: it admits it as far as it can, or refuses it).
     */
    public static boolean couldEverTake(dev.loragateway.scheduler.PlacementRequest req, dev.loragateway.scheduler.NodeState node) {
        return !node.draining() && node.maxBatch() >= req.sequences() && node.totalKvBlocks() >= Room.kvBlocks(req, node);
    }

    /**
     * The rendezvous weight {@code adapter-affinity} ranks {@code nodeId} by for {@code adapter}
     * (unsigned; the largest wins): for callers that must know a policy's ranking without asking it
     * once per node (the cluster simulator prunes the nodes it passes to {@link Placement#place}).
     */
    public static long rendezvousWeight(String adapter, String nodeId) {
        return AdapterAffinity.weight(adapter, nodeId);
    }

    /** The default policy, {@value #DEFAULT}. */
    public static Placement defaultPlacement() {
        return byName(DEFAULT);
    }
}
