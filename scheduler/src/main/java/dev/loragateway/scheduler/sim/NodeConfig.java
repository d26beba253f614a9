package dev.loragateway.scheduler.sim;

/**
 * One simulated node's capacities: the same knobs as {@code serve} ({@code --max-batch},
 * {@code --max-num-batched-tokens}, {@code --kv-cache-mb} as blocks, {@code --gpu-adapter-slots},
 * {@code --host-cache-mb} as adapters).
 *
 * @param maxBatch      most sequences in the running batch
 * @param maxStepTokens most rows of one step (every decode, then prompt chunks up to this)
 * @param kvBlocks      KV blocks of the pool
 * @param blockSize     positions per KV block (the engine's 16)
 * @param adapterSlots  adapters resident in device slots at once
 * @param hostAdapters  adapters the host tier holds (least recently used leave first)
 */
public record NodeConfig(int maxBatch, int maxStepTokens, int kvBlocks, int blockSize, int adapterSlots, int hostAdapters) {
    public NodeConfig {
        check("max-batch", maxBatch);
        check("max-num-batched-tokens", maxStepTokens);
        check("kv-blocks", kvBlocks);
        check("kv-block-size", blockSize);
        check("gpu-adapter-slots", adapterSlots);
        check("host-adapters", hostAdapters);
    }

    private static void check(String what, int v) {
        if (v < 1) {
            throw new IllegalArgumentException(what + " must be >= 1, got " + v);
        }
    }

    /** KV blocks {@code positions} positions take. */
    public int blocksFor(int positions) {
        return (positions + blockSize - 1) / blockSize;
    }
}
