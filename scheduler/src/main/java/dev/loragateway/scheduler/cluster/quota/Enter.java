package dev.loragateway.scheduler.cluster.quota;

import com.hazelcast.map.EntryProcessor;
import java.util.Map;

/**
 * Takes one of a tenant's in-flight slots for {@code member} when fewer than {@code limit} are held
 * across the cluster. Returns how many were held before: the request is admitted (and counted)
 * exactly when that is under {@code limit}.
 */
final class Enter implements EntryProcessor<String, TenantUsage, Integer> {
    private static final long serialVersionUID = 1L;

    private final String member;
    private final int limit;

    Enter(String member, int limit) {
        this.member = member;
        this.limit = limit;
    }

    @Override
    public Integer process(Map.Entry<String, TenantUsage> entry) {
        TenantUsage u = entry.getValue() != null ? entry.getValue() : new TenantUsage();
        int held = u.runningTotal();
        if (held < limit) {
            u.running.merge(member, 1, Integer::sum);
            entry.setValue(u);
        }
        return held;
    }
}
