package dev.loragateway.batcher;

import java.util.Arrays;

/**
 * The paged KV-cache memory of one engine: {@code blocks} fixed-size blocks of {@code blockSize}
 * positions, each holding keys and values of every layer, float32. A sequence owns a block table
 * (see {@link KvCache}) instead of one long buffer, so memory is handed out in small pieces and
 * nothing is copied as sequences grow (vLLM's PagedAttention).
 *
 * <pre>
 * keys[layer]:   (blocks · blockSize, kvDim)    position p of block b is row b·blockSize + p
 * values[layer]: the same
 * </pre>
 *
 * Blocks are reference counted: sequences forked from one prompt ({@code n > 1}) share its blocks
 * and copy a shared block only when they write into it. Free blocks sit on a stack. A pool made
 * {@code growable} (a lone sequence outside the engine) doubles instead of running dry.
 * Not thread-safe: the engine thread owns it.
 */
public final class KvBlockPool {
    /**
     * Where a pool made by {@link #external} keeps its keys and values (the CUDA backend's device
     * memory): the pool only does the bookkeeping and tells the store of each copy-on-write.
     */
    public interface BlockStore {
        /** Copy the first {@code positions} rows of every layer of block {@code src} into {@code dst}. */
        void copy(int src, int dst, int positions);
    }

    private final BlockStore store; // null: the float arrays below hold the blocks
    private final int layers;
    private final int kvDim;
    private final int blockSize;
    private final boolean growable;
    private float[][] keys;
    private float[][] values;
    private int[] refs;
    private int[] free;   // stack of free block ids
    private int freeTop;
    private int blocks;
    /** Content-addressed full blocks ({@link #enablePrefixCaching}), or null. */
    private PrefixIndex prefix;

    /**
     * @param blocks    number of blocks
     * @param blockSize positions per block
     * @param growable  double the pool instead of failing when it runs dry
     */
    public KvBlockPool(ModelConfig cfg, int blocks, int blockSize, boolean growable) {
        this(cfg, blocks, blockSize, growable, null);
    }

    /** A fixed pool of {@code blocks} blocks whose data lives in {@code store}; it allocates no host arrays. */
    public static KvBlockPool external(ModelConfig cfg, int blocks, int blockSize, BlockStore store) {
        return new KvBlockPool(cfg, blocks, blockSize, false, java.util.Objects.requireNonNull(store, "store"));
    }

    private KvBlockPool(ModelConfig cfg, int blocks, int blockSize, boolean growable, BlockStore store) {
        this.store = store;
        if (blocks < 1 || blockSize < 1) {
            throw new IllegalArgumentException("a KV pool needs at least one block of at least one position, got "
                + blocks + " blocks of " + blockSize);
        }
        this.layers = cfg.numLayers();
        this.kvDim = cfg.kvDim();
        this.blockSize = blockSize;
        this.growable = growable;
        long floats = (long) blocks * blockSize * kvDim;
        if (store == null && floats > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException(blocks + " KV blocks of " + blockSize + " positions exceed one Java array per layer ("
                + floats + " floats); use fewer or smaller blocks");
        }
        this.keys = new float[layers][];
        this.values = new float[layers][];
        resize(blocks);
    }

    /** A pool of as many blocks as fit in {@code bytes} (at least one). */
    public static KvBlockPool ofBytes(ModelConfig cfg, long bytes, int blockSize) {
        long per = bytesPerBlock(cfg, blockSize);
        long floatsPerBlock = (long) blockSize * cfg.kvDim();
        long cap = (Integer.MAX_VALUE - 16) / floatsPerBlock;
        return new KvBlockPool(cfg, (int) Math.max(1, Math.min(cap, bytes / per)), blockSize, false);
    }

    /** Bytes of one block: keys and values of every layer. */
    public static long bytesPerBlock(ModelConfig cfg, int blockSize) {
        return 2L * cfg.numLayers() * blockSize * cfg.kvDim() * Float.BYTES;
    }

    private void resize(int newBlocks) {
        int old = blocks;
        for (int l = 0; l < layers && store == null; l++) {
            keys[l] = keys[l] == null ? new float[newBlocks * blockSize * kvDim] : Arrays.copyOf(keys[l], newBlocks * blockSize * kvDim);
            values[l] = values[l] == null ? new float[newBlocks * blockSize * kvDim] : Arrays.copyOf(values[l], newBlocks * blockSize * kvDim);
        }
        refs = refs == null ? new int[newBlocks] : Arrays.copyOf(refs, newBlocks);
        free = free == null ? new int[newBlocks] : Arrays.copyOf(free, newBlocks);
        for (int b = newBlocks - 1; b >= old; b--) {
            free[freeTop++] = b;
        }
        blocks = newBlocks;
    }

    public int blockSize() {
        return blockSize;
    }

    /** All blocks. */
    public int total() {
        return blocks;
    }

    /** Blocks a sequence may take: those on the free stack, and cached ones no sequence holds (prefix caching). */
    public int free() {
        return freeTop + (prefix == null ? 0 : prefix.cached());
    }

    /** Blocks held by some sequence (cached blocks no sequence holds count as free). */
    public int used() {
        return blocks - free();
    }

    /**
     * Turns on automatic prefix caching ({@link PrefixIndex}): full blocks can be given a content
     * key, and a block with a key stays cached when its last holder releases it, until the pool
     * needs it. Only for a fixed-size pool, before any block is taken.
     */
    public void enablePrefixCaching() {
        if (growable) {
            throw new IllegalStateException("prefix caching needs a fixed-size KV pool");
        }
        if (freeTop != blocks) {
            throw new IllegalStateException("prefix caching must be enabled before any KV block is taken");
        }
        prefix = new PrefixIndex(blocks);
    }

    /** The content index, or null when prefix caching is off. */
    PrefixIndex prefix() {
        return prefix;
    }

    /** Blocks cached for reuse that no sequence holds (0 when prefix caching is off). */
    public int cachedFree() {
        return prefix == null ? 0 : prefix.cached();
    }

    /** Content keys held (blocks that a later prompt could match; 0 when prefix caching is off). */
    public int cachedKeys() {
        return prefix == null ? 0 : prefix.keys();
    }

    /**
     * One more sequence holds {@code block}, which a prefix lookup matched: a cached block no
     * sequence held leaves the reclaimable list.
     */
    void hold(int block) {
        if (refs[block] == 0) {
            prefix.unpark(block);
        }
        refs[block]++;
    }

    /** Whether {@code block} has a content key (its rows must not be written again in place). */
    boolean keyed(int block) {
        return prefix != null && prefix.hasKey(block);
    }

    /** Blocks that {@code positions} positions occupy. */
    public int blocksFor(long positions) {
        return (int) ((positions + blockSize - 1) / blockSize);
    }

    /** Takes a free block (reference count 1), or returns −1 when none is free. */
    public int allocate() {
        if (freeTop == 0) {
            int evicted = prefix == null ? -1 : prefix.evict(); // never-cached blocks first, then the least recently used
            if (evicted >= 0) {
                refs[evicted] = 1;
                return evicted;
            }
            if (!growable) {
                return -1;
            }
            resize(blocks * 2);
        }
        int b = free[--freeTop];
        refs[b] = 1;
        return b;
    }

    /** One more sequence holds {@code block}. */
    void retain(int block) {
        if (refs[block] <= 0) {
            throw new IllegalStateException("retain of free KV block " + block);
        }
        refs[block]++;
    }

    /** One sequence lets go of {@code block}; the last one returns it to the free stack. */
    void release(int block) {
        if (refs[block] <= 0) {
            throw new IllegalStateException("double release of KV block " + block);
        }
        if (--refs[block] == 0) {
            if (prefix != null && prefix.hasKey(block)) {
                prefix.park(block); // stays cached until the pool needs it
            } else {
                free[freeTop++] = block;
            }
        }
    }

    /** Sequences holding {@code block}. */
    int refs(int block) {
        return refs[block];
    }

    /** Copies the first {@code positions} rows of every layer of block {@code src} into {@code dst}. */
    void copy(int src, int dst, int positions) {
        if (store != null) {
            store.copy(src, dst, positions);
            return;
        }
        int n = positions * kvDim;
        for (int l = 0; l < layers; l++) {
            System.arraycopy(keys[l], src * blockSize * kvDim, keys[l], dst * blockSize * kvDim, n);
            System.arraycopy(values[l], src * blockSize * kvDim, values[l], dst * blockSize * kvDim, n);
        }
    }

    /** Whether the blocks' data lives in a {@link BlockStore} (then {@link #keys} and {@link #values} are null). */
    public boolean isExternal() {
        return store != null;
    }

    float[] keys(int layer) {
        return keys[layer];
    }

    float[] values(int layer) {
        return values[layer];
    }

    int kvDim() {
        return kvDim;
    }
}
