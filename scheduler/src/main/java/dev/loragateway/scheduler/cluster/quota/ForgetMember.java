package dev.loragateway.scheduler.cluster.quota;

import com.hazelcast.map.EntryProcessor;
import java.util.Map;

/**
 * Drops every in-flight slot a departed member held, on every tenant's entry: its requests died
 * with it (their clients' connections were to that member), so its slots must not stay taken.
 */
final class ForgetMember implements EntryProcessor<String, TenantUsage, Void> {
    private static final long serialVersionUID = 1L;

    private final String member;

    ForgetMember(String member) {
        this.member = member;
    }

    @Override
    public Void process(Map.Entry<String, TenantUsage> entry) {
        TenantUsage u = entry.getValue();
        if (u != null && u.running.remove(member) != null) {
            entry.setValue(u);
        }
        return null;
    }
}
