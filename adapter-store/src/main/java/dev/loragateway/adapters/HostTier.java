package dev.loragateway.adapters;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.RemovalCause;
import java.util.function.Function;

/**
 * The warm tier: parsed adapters in host memory, a Caffeine cache weighed by the adapters' float32
 * bytes ({@code --host-cache-mb}); a miss reads the adapter from disk through {@code loader}.
 * Caffeine evicts by W-TinyLFU, not strict LRU: an adapter used often survives one-off scans.
 *
 * @param <K> the adapter key
 */
public final class HostTier<K> {
    private final Cache<K, LoraAdapter> cache;
    private final Function<K, LoraAdapter> loader;
    private final TierStats stats = new TierStats("host");

    /**
     * @param capacityBytes the cache's capacity in bytes
     * @param loader reads and validates an adapter from disk; its exceptions reach the caller of {@link #get}
     */
    public HostTier(long capacityBytes, Function<K, LoraAdapter> loader) {
        this.loader = loader;
        this.cache = Caffeine.newBuilder()
            .maximumWeight(Math.max(0, capacityBytes))
            .weigher((K k, LoraAdapter a) -> (int) Math.min(Integer.MAX_VALUE, a.floatBytes()))
            .executor(Runnable::run)
            .removalListener((K k, LoraAdapter a, RemovalCause cause) -> {
                if (cause.wasEvicted()) {
                    stats.evicted();
                }
            })
            .build();
    }

    /** The adapter from memory, or loaded from disk (and kept while it fits). */
    public LoraAdapter get(K key) {
        LoraAdapter a = cache.getIfPresent(key);
        if (a != null) {
            stats.hit();
            return a;
        }
        stats.miss();
        long t0 = System.nanoTime();
        LoraAdapter loaded = cache.get(key, loader);
        stats.loaded(System.nanoTime() - t0);
        return loaded;
    }

    /** Whether {@code key} is in memory now. */
    public boolean contains(K key) {
        return cache.getIfPresent(key) != null;
    }

    /** Drops {@code key} (its adapter was deleted or replaced). */
    public void invalidate(K key) {
        cache.invalidate(key);
    }

    /** Bytes held now. */
    /** The keys of the adapters parsed in host memory now. */
    public java.util.Set<K> keys() {
        return java.util.Set.copyOf(cache.asMap().keySet());
    }

    public long bytes() {
        return cache.policy().eviction().map(e -> e.weightedSize().orElse(0L)).orElse(0L);
    }

    public TierStats stats() {
        return stats;
    }
}
