package dev.loragateway.scheduler.cluster.quota;

import com.hazelcast.map.EntryProcessor;
import java.util.Map;

/**
 * Takes one token of a tenant's request-rate bucket, which holds one second's worth (at least one
 * request) and refills at {@code perSecond}. Returns 0 when the request is admitted, else the
 * seconds until a token will be there.
 *
 * <p>The time comes from the caller ({@code Cluster.getClusterTime()}), not from the partition
 * owner's clock, so that the backup replays the same arithmetic and a partition that moves to
 * another member keeps its bucket. Two callers' clocks may differ by a few ms: a time before the
 * last refill counts as no time passed.
 */
final class TakeRequest implements EntryProcessor<String, TenantUsage, Double> {
    private static final long serialVersionUID = 1L;

    private final double perSecond;
    private final long nowMillis;

    TakeRequest(double perSecond, long nowMillis) {
        this.perSecond = perSecond;
        this.nowMillis = nowMillis;
    }

    @Override
    public Double process(Map.Entry<String, TenantUsage> entry) {
        TenantUsage u = entry.getValue() != null ? entry.getValue() : new TenantUsage();
        double cap = Math.max(1, perSecond);
        if (Double.isNaN(u.tokens)) {
            u.tokens = cap;
            u.lastMillis = nowMillis;
        }
        long now = Math.max(nowMillis, u.lastMillis);
        u.tokens = Math.min(cap, u.tokens + (now - u.lastMillis) / 1000.0 * perSecond);
        u.lastMillis = now;
        double wait = 0;
        if (u.tokens < 1) {
            wait = (1 - u.tokens) / perSecond;
        } else {
            u.tokens -= 1;
        }
        entry.setValue(u);
        return wait;
    }
}
