package dev.loragateway.adapters;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Counters of one storage tier: hits (already there), misses (had to load from the tier below),
 * evictions, and the time loads took. Thread-safe; read by metrics and the bench.
 */
public final class TierStats {
    private final String tier;
    private final AtomicLong hits = new AtomicLong();
    private final AtomicLong misses = new AtomicLong();
    private final AtomicLong evictions = new AtomicLong();
    private final AtomicLong loads = new AtomicLong();
    private final AtomicLong loadNanos = new AtomicLong();
    private final AtomicLong maxLoadNanos = new AtomicLong();

    public TierStats(String tier) {
        this.tier = tier;
    }

    public String tier() {
        return tier;
    }

    void hit() {
        hits.incrementAndGet();
    }

    void miss() {
        misses.incrementAndGet();
    }

    void evicted() {
        evictions.incrementAndGet();
    }

    void loaded(long nanos) {
        loads.incrementAndGet();
        loadNanos.addAndGet(nanos);
        maxLoadNanos.accumulateAndGet(nanos, Math::max);
    }

    public long hits() {
        return hits.get();
    }

    public long misses() {
        return misses.get();
    }

    public long evictions() {
        return evictions.get();
    }

    public long loads() {
        return loads.get();
    }

    /** Total time all loads took, in nanoseconds (a monotonic counter, for metrics). */
    public long loadNanos() {
        return loadNanos.get();
    }

    /** Mean load latency in milliseconds (0 before the first load). */
    public double meanLoadMillis() {
        long n = loads.get();
        return n == 0 ? 0 : loadNanos.get() / 1e6 / n;
    }

    public double maxLoadMillis() {
        return maxLoadNanos.get() / 1e6;
    }

    @Override
    public String toString() {
        return String.format("%s: %d hits, %d misses, %d evictions, %d loads (mean %.2f ms, max %.2f ms)",
            tier, hits(), misses(), evictions(), loads(), meanLoadMillis(), maxLoadMillis());
    }
}
