package dev.loragateway.scheduler;

import java.io.Serializable;
import java.util.Objects;
import java.util.Set;

/**
 * What one gateway of the cluster publishes about itself, several times a second and on every
 * admission and finish, for placement to read: how full its engine is, which adapters it holds,
 * and whether it still takes work. One value per node; the newest replaces the last.
 *
 * @param nodeId          the node's name ({@code --node-id}, default host:port)
 * @param address         base URL of its internal listener (where forwarded requests go)
 * @param backend         {@code cpu} or {@code cuda}
 * @param running         sequences in its running batch
 * @param queued          sequences waiting to join it
 * @param maxBatch        the most sequences its batch holds ({@code --max-batch})
 * @param freeKvBlocks    KV blocks free now
 * @param totalKvBlocks   KV blocks of its pool
 * @param kvBlockSize     positions per KV block
 * @param residentAdapters adapter keys ({@code AdapterKey.toString()}) in its device tier
 * @param warmAdapters    adapter keys in its host tier (parsed, not yet in a device slot)
 * @param stepMillis      its measured time of one engine step (moving average; 0 before the first)
 * @param draining        true once it refuses new work (SIGTERM)
 * @param updatedMillis   wall-clock time of this value
 */
public record NodeState(String nodeId, String address, String backend, int running, int queued, int maxBatch,
                        int freeKvBlocks, int totalKvBlocks, int kvBlockSize, Set<String> residentAdapters,
                        Set<String> warmAdapters, double stepMillis, boolean draining, long updatedMillis)
    implements Serializable {

    public NodeState {
        Objects.requireNonNull(nodeId, "nodeId");
        residentAdapters = Set.copyOf(residentAdapters);
        warmAdapters = Set.copyOf(warmAdapters);
    }

    /** Batch slots free now (never below 0). */
    public int freeBatchSlots() {
        return Math.max(0, maxBatch - running - queued);
    }

    /** KV blocks {@code positions} positions take. */
    public int blocksFor(int positions) {
        return kvBlockSize <= 0 ? 0 : (positions + kvBlockSize - 1) / kvBlockSize;
    }

    /** True when nothing runs or waits here: consolidation has left it empty (safe to release). */
    public boolean idle() {
        return running == 0 && queued == 0;
    }
}
