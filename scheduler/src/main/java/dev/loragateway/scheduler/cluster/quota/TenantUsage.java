package dev.loragateway.scheduler.cluster.quota;

import java.io.Serializable;
import java.util.HashMap;
import java.util.Map;

/**
 * One tenant's entry of the quota map: its request-rate token bucket and its requests in flight per
 * member. Changed only by the entry processors of this package, on the partition that owns the
 * tenant (and, identically, on its backup), so every change is atomic without a lock.
 *
 * <pre>
 *   tokens 3.4, lastMillis 1718000000123, running {uuid-A: 2, uuid-C: 1}   → 3 in flight in the cluster
 * </pre>
 */
final class TenantUsage implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Tokens in the bucket at {@link #lastMillis}; NaN until the first request (then: a full bucket). */
    double tokens = Double.NaN;
    /** Cluster time of the last refill, in ms. */
    long lastMillis;
    /** Requests in flight by member UUID; a member with none has no key. */
    final HashMap<String, Integer> running = new HashMap<>();

    int runningTotal() {
        int sum = 0;
        for (int n : running.values()) {
            sum += n;
        }
        return sum;
    }

    /** A copy of the in-flight counts (for tests and logs). */
    Map<String, Integer> runningByMember() {
        return Map.copyOf(running);
    }
}
