package dev.loragateway.batcher;

import java.util.Arrays;

/**
 * The keys and values of one sequence: a block table into a {@link KvBlockPool}. Position p lives
 * in block {@code table[p / blockSize]}, row {@code p % blockSize}.
 *
 * <p>Example (block size 4): a sequence of 6 positions with table {@code [7, 2]} keeps positions
 * 0–3 in block 7 and 4–5 in block 2; position 6 goes to row 2 of block 2; position 8 needs a third
 * block. A {@link #fork} shares both blocks; the first of the two to write position 6 first copies
 * block 2 (copy-on-write), since the other still reads it.
 *
 * <p>Outside the engine, {@code new KvCache(cfg, capacity)} makes a cache with a private pool that
 * grows as needed.
 */
public final class KvCache {
    /** Positions per block of a private pool. */
    static final int PRIVATE_BLOCK = 16;

    private final KvBlockPool pool;
    private int[] table;
    private int blocks;
    private int length;
    /** Prefix caching: the salt of this sequence's content keys (null: its blocks are never keyed). */
    private String salt;
    /** Leading blocks whose content key is known (registered or matched), and the content id of the last of them. */
    private int keyedBlocks;
    private long lastId = PrefixIndex.ROOT;

    /** A cache on a pool of its own, room for {@code initialCapacity} positions at first. */
    public KvCache(ModelConfig cfg, int initialCapacity) {
        this(new KvBlockPool(cfg, Math.max(1, (Math.max(1, initialCapacity) + PRIVATE_BLOCK - 1) / PRIVATE_BLOCK), PRIVATE_BLOCK, true));
    }

    /** An empty cache whose blocks come from {@code pool}. */
    public KvCache(KvBlockPool pool) {
        this.pool = pool;
        this.table = new int[4];
    }

    /**
     * An empty cache on {@code pool} that takes the longest run of cached full blocks matching
     * {@code tokens[0, len)} under {@code salt} ({@link PrefixIndex}), leaving at least the last
     * token to compute (its logits are needed); its {@link #length()} is the positions matched. On a
     * pool without prefix caching it matches nothing. Its full blocks are keyed by
     * {@link #register} as they are computed.
     */
    public static KvCache matching(KvBlockPool pool, String salt, int[] tokens, int len) {
        KvCache c = new KvCache(pool);
        PrefixIndex index = pool.prefix();
        if (index == null) {
            return c;
        }
        c.salt = salt;
        int bs = pool.blockSize();
        int most = (len - 1) / bs;
        while (c.blocks < most) {
            int from = c.blocks * bs;
            int b = index.lookup(new PrefixIndex.Key(salt, c.lastId, Arrays.copyOfRange(tokens, from, from + bs)));
            if (b < 0) {
                break;
            }
            pool.hold(b);
            if (c.blocks == c.table.length) {
                c.table = Arrays.copyOf(c.table, c.table.length * 2);
            }
            c.table[c.blocks++] = b;
            c.lastId = index.id(b);
            c.keyedBlocks = c.blocks;
            c.length = c.blocks * bs;
        }
        return c;
    }

    /**
     * Gives every full block computed since the last call its content key ({@code tokens} are this
     * sequence's tokens, at least {@link #length()} of them), so later prompts can match it. A block
     * whose content another block already holds stays unkeyed (freed, not cached, when released).
     * Nothing on a cache made without a salt.
     */
    public void register(int[] tokens) {
        PrefixIndex index = pool.prefix();
        if (salt == null || index == null) {
            return;
        }
        int bs = pool.blockSize();
        int full = length / bs;
        while (keyedBlocks < full) {
            int from = keyedBlocks * bs;
            lastId = index.register(table[keyedBlocks], new PrefixIndex.Key(salt, lastId, Arrays.copyOfRange(tokens, from, from + bs)));
            keyedBlocks++;
        }
    }

    /** Positions stored (the next token's position). */
    public int length() {
        return length;
    }

    /** Blocks this cache holds (shared ones included). */
    public int blocks() {
        return blocks;
    }

    public KvBlockPool pool() {
        return pool;
    }

    float[] keys(int layer) {
        return pool.keys(layer);
    }

    float[] values(int layer) {
        return pool.values(layer);
    }

    /** The block table (valid up to {@link #blocks()}). */
    public int[] table() {
        return table;
    }

    int blockSize() {
        return pool.blockSize();
    }

    /**
     * Free blocks that {@link #ensureCapacity ensureCapacity(needed)} would take: blocks beyond the
     * table, plus shared blocks in {@code [length, needed)} that must be copied before writing.
     */
    public int blocksNeeded(int needed) {
        int bs = pool.blockSize();
        int have = blocks;
        int want = pool.blocksFor(needed);
        int n = Math.max(0, want - have);
        for (int b = length / bs; b < Math.min(have, want); b++) {
            if (pool.refs(table[b]) > 1 || pool.keyed(table[b])) {
                n++;
            }
        }
        return n;
    }

    /**
     * Makes positions up to {@code needed − 1} writable: takes new blocks and copies shared ones it
     * will write into. Takes nothing when {@link #blocksNeeded} is 0.
     *
     * @throws IllegalStateException when the pool runs dry (the engine checks first and preempts)
     */
    public void ensureCapacity(int needed) {
        int bs = pool.blockSize();
        int want = pool.blocksFor(needed);
        for (int b = length / bs; b < Math.min(blocks, want); b++) {
            int old = table[b];
            if (pool.refs(old) > 1 || pool.keyed(old)) { // shared, or cached content others may match
                int fresh = take(needed);
                pool.copy(old, fresh, Math.max(0, Math.min(bs, length - b * bs)));
                pool.release(old);
                table[b] = fresh;
            }
        }
        while (blocks < want) {
            if (blocks == table.length) {
                table = Arrays.copyOf(table, table.length * 2);
            }
            table[blocks++] = take(needed);
        }
    }

    private int take(int needed) {
        int b = pool.allocate();
        if (b < 0) {
            throw new IllegalStateException("the KV-cache pool is out of blocks (" + pool.total() + " blocks of "
                + pool.blockSize() + " positions) making room for " + needed + " positions");
        }
        return b;
    }

    void store(int layer, int pos, float[] k, int ko, float[] v, int vo) {
        int bs = pool.blockSize();
        int kvDim = pool.kvDim();
        int row = (table[pos / bs] * bs + pos % bs) * kvDim;
        System.arraycopy(k, ko, pool.keys(layer), row, kvDim);
        System.arraycopy(v, vo, pool.values(layer), row, kvDim);
    }

    public void advance(int n) {
        length += n;
    }

    /** A cache of the same positions sharing every block (copied on first write by either). */
    public KvCache fork() {
        KvCache c = new KvCache(pool);
        c.table = Arrays.copyOf(table, Math.max(4, table.length));
        c.blocks = blocks;
        c.length = length;
        c.salt = salt;
        c.keyedBlocks = keyedBlocks;
        c.lastId = lastId;
        for (int b = 0; b < blocks; b++) {
            pool.retain(table[b]);
        }
        return c;
    }

    /** Forgets every position from {@code newLength} on, returning blocks no longer needed. */
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a cache of " + length + " positions to " + newLength);
        }
        int keep = pool.blocksFor(newLength);
        while (blocks > keep) {
            pool.release(table[--blocks]);
        }
        length = newLength;
        if (keyedBlocks > newLength / pool.blockSize()) { // keys past the cut no longer describe this cache
            keyedBlocks = newLength / pool.blockSize();
            if (keyedBlocks == 0) {
                lastId = PrefixIndex.ROOT;
            } else {
                salt = null; // the predecessor's content id is not kept: key nothing more rather than guess
            }
        }
    }

    /** Returns every block to the pool; the cache is empty afterwards. */
    public void release() {
        truncate(0);
    }
}
