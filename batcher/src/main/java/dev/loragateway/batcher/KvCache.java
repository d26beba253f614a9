package dev.loragateway.batcher;

/**
 * The keys and values of one sequence, per layer, float32, grown by doubling as tokens arrive.
 * Layout per layer: {@code (position, kvHeads · headDim)}.
 */
public final class KvCache {
    private final int kvDim;
    private final float[][] keys;   // (layers) → (capacity, kvDim)
    private final float[][] values; // (layers) → (capacity, kvDim)
    private int capacity;
    private int length;

    public KvCache(ModelConfig cfg, int initialCapacity) {
        this.kvDim = cfg.kvDim();
        this.capacity = Math.max(1, initialCapacity);
        keys = new float[cfg.numLayers()][capacity * kvDim];
        values = new float[cfg.numLayers()][capacity * kvDim];
    }

    /** Positions stored (the next token's position). */
    public int length() {
        return length;
    }

    float[] keys(int layer) {
        return keys[layer];
    }

    float[] values(int layer) {
        return values[layer];
    }

    /** Makes room for positions up to {@code needed - 1}. */
    void ensureCapacity(int needed) {
        if (needed <= capacity) {
            return;
        }
        int cap = Math.max(needed, capacity * 2);
        for (int l = 0; l < keys.length; l++) {
            keys[l] = java.util.Arrays.copyOf(keys[l], cap * kvDim);
            values[l] = java.util.Arrays.copyOf(values[l], cap * kvDim);
        }
        capacity = cap;
    }

    void store(int layer, int pos, float[] k, int ko, float[] v, int vo) {
        System.arraycopy(k, ko, keys[layer], pos * kvDim, kvDim);
        System.arraycopy(v, vo, values[layer], pos * kvDim, kvDim);
    }

    void advance(int n) {
        length += n;
    }

    /** Forgets every position from {@code newLength} on (for re-running a suffix). */
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a cache of " + length + " positions to " + newLength);
        }
        length = newLength;
    }
}
