package dev.loragateway.batcher;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Automatic prefix caching: the full KV blocks of a {@link KvBlockPool}, addressed by their content,
 * so a sequence whose prompt starts like an earlier one's reuses those blocks instead of
 * recomputing them (vLLM's automatic prefix caching).
 *
 * <p>A block's content key is (salt, the key of the block before it, the block's token ids). The
 * chain makes the key stand for every token from position 0 to the block's end: the keys and values
 * of a position depend on every token before it. The salt is what else they depend on, and whom
 * they may be served to: the tenant and the adapter with its weights' epoch (see
 * {@link #salt}). Blocks of different adapters never match (their keys and values differ), and
 * neither do blocks of different tenants, even on the base model: a cache hit is faster than a
 * miss, so sharing across tenants would let one tenant time what another sent (why vLLM added
 * {@code cache_salt}).
 *
 * <p>A key's predecessor is named by a content id, a number given to each key when it is first
 * registered and never reused, not by the block: once a block is evicted and reused for other
 * content, keys that named it as their predecessor can never be reached again (a lookup walks from
 * position 0), so nothing stale is ever matched.
 *
 * <p>Block states: free (on the pool's stack, no key), held (reference count above 0, with or
 * without a key), and cached (reference count 0 with a key: in this index's least-recently-used
 * list, reclaimable). The pool counts cached blocks as free and evicts the least recently released
 * one only when its stack of never-cached blocks is empty. Engine thread only.
 */
final class PrefixIndex {
    /** A block's content key; {@code tokens} is the block's own token ids (compared by value). */
    record Key(String salt, long parent, int[] tokens) {
        @Override
        public boolean equals(Object o) {
            return o instanceof Key k && k.parent == parent && k.salt.equals(salt) && Arrays.equals(k.tokens, tokens);
        }

        @Override
        public int hashCode() {
            return (salt.hashCode() * 31 + Long.hashCode(parent)) * 31 + Arrays.hashCode(tokens);
        }
    }

    /** The content id of the empty prefix: the predecessor of every sequence's first block. */
    static final long ROOT = 0;

    private final Map<Key, Integer> blockOf = new HashMap<>();
    private Key[] keyOf;
    private long[] idOf;
    /** The LRU list of cached blocks (refs 0), oldest first: links by block id, -1 ends. */
    private int[] prev;
    private int[] next;
    private boolean[] listed;
    private int head = -1;
    private int tail = -1;
    private int cached;
    private long nextId = ROOT + 1;

    PrefixIndex(int blocks) {
        keyOf = new Key[blocks];
        idOf = new long[blocks];
        prev = new int[blocks];
        next = new int[blocks];
        listed = new boolean[blocks];
    }

    /**
     * The salt of a sequence's keys: its tenant, and its adapter (null for the base model) with
     * {@code epoch}, the adapter's content epoch (it changes when the adapter is deleted or
     * replaced, so blocks computed with old weights are never served for new ones).
     */
    static String salt(String tenant, Object adapter, long epoch) {
        return adapter == null ? tenant + "\u0000" : tenant + "\u0000" + adapter + "\u0000" + epoch;
    }

    /** The block holding {@code key}'s content, or -1. */
    int lookup(Key key) {
        Integer b = blockOf.get(key);
        return b == null ? -1 : b;
    }

    /** The content id of {@code block}'s key (valid while it has one). */
    long id(int block) {
        return idOf[block];
    }

    boolean hasKey(int block) {
        return keyOf[block] != null;
    }

    /**
     * Gives {@code block} (held, fully written) the key {@code key}, unless another block already
     * has it; returns the content id of the key either way.
     */
    long register(int block, Key key) {
        Integer other = blockOf.get(key);
        if (other != null) {
            return idOf[other];
        }
        if (keyOf[block] != null) {
            throw new IllegalStateException("KV block " + block + " already has a content key");
        }
        long id = nextId++;
        keyOf[block] = key;
        idOf[block] = id;
        blockOf.put(key, block);
        return id;
    }

    /** Blocks cached and reclaimable (reference count 0). */
    int cached() {
        return cached;
    }

    /** Keys held (blocks with a key, cached or held). */
    int keys() {
        return blockOf.size();
    }

    /** {@code block} (with a key) dropped to reference count 0: it becomes the most recently used cached block. */
    void park(int block) {
        if (listed[block]) {
            throw new IllegalStateException("KV block " + block + " is already cached");
        }
        listed[block] = true;
        prev[block] = tail;
        next[block] = -1;
        if (tail >= 0) {
            next[tail] = block;
        } else {
            head = block;
        }
        tail = block;
        cached++;
    }

    /** {@code block} (cached) is held again by a sequence that matched it. */
    void unpark(int block) {
        if (!listed[block]) {
            throw new IllegalStateException("KV block " + block + " is not cached");
        }
        listed[block] = false;
        if (prev[block] >= 0) {
            next[prev[block]] = next[block];
        } else {
            head = next[block];
        }
        if (next[block] >= 0) {
            prev[next[block]] = prev[block];
        } else {
            tail = prev[block];
        }
        cached--;
    }

    /** Takes the least recently used cached block for new content: its key is forgotten. Returns -1 when none is cached. */
    int evict() {
        int b = head;
        if (b < 0) {
            return -1;
        }
        unpark(b);
        forget(b);
        return b;
    }

    /** Drops {@code block}'s key (it is about to be overwritten). */
    void forget(int block) {
        Key k = keyOf[block];
        if (k != null) {
            blockOf.remove(k);
            keyOf[block] = null;
            idOf[block] = 0;
        }
    }
}
