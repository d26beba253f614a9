package dev.loragateway.scheduler.cluster.quota;

import com.hazelcast.map.EntryProcessor;
import java.util.Map;

/** Gives back one in-flight slot {@code member} holds for a tenant (nothing when it holds none). */
final class Leave implements EntryProcessor<String, TenantUsage, Void> {
    private static final long serialVersionUID = 1L;

    private final String member;

    Leave(String member) {
        this.member = member;
    }

    @Override
    public Void process(Map.Entry<String, TenantUsage> entry) {
        TenantUsage u = entry.getValue();
        if (u != null && u.running.containsKey(member)) {
            u.running.computeIfPresent(member, (k, n) -> n > 1 ? n - 1 : null);
            entry.setValue(u);
        }
        return null;
    }
}
