package dev.loragateway.scheduler.cluster.quota;

import com.hazelcast.cluster.MembershipEvent;
import com.hazelcast.cluster.MembershipListener;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.map.IMap;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Tenant limits that hold across the cluster: one entry per tenant in the Hazelcast map
 * {@value #MAP_NAME}, changed only by entry processors, so each check-and-take is one atomic
 * operation on the partition that owns the tenant (one round trip, or none when this member owns
 * it) and the backup replays it. No lock, and nothing from Hazelcast's CP subsystem (which needs
 * CP members this cluster does not have).
 *
 * <pre>
 *   takeRequest("acme", 20)  → TakeRequest: refill the bucket to the caller's cluster time, take a token → 0 (admitted) or seconds to wait
 *   enter("acme", 8)         → Enter: held = Σ running[member]; held &lt; 8 ? running[this member]++ : refuse → held
 *   leave("acme")            → Leave: running[this member]--
 *   a member leaves          → ForgetMember(its UUID) on every entry (its requests died with it)
 * </pre>
 *
 * <p>Slots are counted per member (by member UUID, which a restarted node does not reuse), so that
 * the slots of a member that is killed are dropped when the others see it leave, instead of staying
 * taken forever. Every survivor runs that cleanup (it is idempotent), off Hazelcast's event thread.
 * Entries have one backup (the map default): a single lost member loses no count; losing an entry's
 * owner and its backup at once resets that tenant's counts to zero (the limit is briefly
 * over-admitted, never stuck).
 *
 * <p>The futures complete on Hazelcast's threads: callers must only hand the result on.
 */
public final class TenantQuotas implements AutoCloseable {
    public static final String MAP_NAME = "lora-gateway.tenant-quotas";
    private static final Logger LOG = LoggerFactory.getLogger(TenantQuotas.class);

    private final HazelcastInstance hz;
    private final IMap<String, TenantUsage> map;
    private final String member;
    private final AtomicInteger members = new AtomicInteger();
    private final ExecutorService cleaner;
    private final UUID listener;

    public TenantQuotas(HazelcastInstance hz) {
        this.hz = hz;
        this.map = hz.getMap(MAP_NAME);
        this.member = hz.getCluster().getLocalMember().getUuid().toString();
        this.cleaner = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "tenant-quota-cleaner");
            t.setDaemon(true);
            return t;
        });
        this.listener = hz.getCluster().addMembershipListener(new MembershipListener() {
            @Override
            public void memberAdded(MembershipEvent event) {
                members.set(event.getMembers().size());
            }

            @Override
            public void memberRemoved(MembershipEvent event) {
                members.set(event.getMembers().size());
                forget(event.getMember().getUuid().toString());
            }
        });
        members.set(hz.getCluster().getMembers().size());
        warmUp();
    }

    /**
     * One call that changes nothing, now: the first call on the map sets it up on its partitions and
     * loads the processor classes (measured: over 200 ms on a busy 2-core machine, against well
     * under 1 ms after), which belongs to start, not to a tenant's first request.
     */
    private void warmUp() {
        try {
            map.submitToKey(member, new Leave(member)).toCompletableFuture().get(10, java.util.concurrent.TimeUnit.SECONDS);
        } catch (Exception e) {
            LOG.debug("tenant quota warm-up: {}", e.toString());
        }
    }

    /**
     * Counts one request of {@code tenant} against {@code perSecond} (over 0): completes with 0 when
     * admitted, else with the seconds until the next token.
     */
    public CompletableFuture<Double> takeRequest(String tenant, double perSecond) {
        long now = hz.getCluster().getClusterTime();
        return map.submitToKey(tenant, new TakeRequest(perSecond, now)).toCompletableFuture();
    }

    /**
     * Takes an in-flight slot of {@code tenant} for this member when fewer than {@code limit} are
     * held in the cluster: completes with how many were held before (admitted exactly when that is
     * under {@code limit}; an admitted slot must be given back with {@link #leave}).
     */
    public CompletableFuture<Integer> enter(String tenant, int limit) {
        return map.submitToKey(tenant, new Enter(member, limit)).toCompletableFuture();
    }

    /** Gives back one slot of {@code tenant} that this member took. */
    public CompletableFuture<Void> leave(String tenant) {
        return map.submitToKey(tenant, new Leave(member)).toCompletableFuture();
    }

    /** Requests of {@code tenant} in flight across the cluster now (a read of the entry). */
    public int running(String tenant) {
        TenantUsage u = map.get(tenant);
        return u == null ? 0 : u.runningTotal();
    }

    /** Members in the cluster as last seen (also when this member can no longer ask). */
    public int members() {
        return Math.max(1, members.get());
    }

    private void forget(String departed) {
        try {
            cleaner.execute(() -> {
                try {
                    map.executeOnEntries(new ForgetMember(departed));
                    LOG.debug("in-flight slots of departed member {} dropped", departed);
                } catch (RuntimeException e) {
                    if (hz.getLifecycleService().isRunning()) {
                        LOG.warn("in-flight slots of departed member {} not dropped: {}", departed, e.toString());
                    }
                }
            });
        } catch (java.util.concurrent.RejectedExecutionException closed) {
            // shutting down: nothing to clean for
        }
    }

    /** Stops cleaning up after departed members (the member itself is closed by its owner). */
    @Override
    public void close() {
        cleaner.shutdownNow();
        try {
            if (hz.getLifecycleService().isRunning()) {
                hz.getCluster().removeMembershipListener(listener);
            }
        } catch (RuntimeException e) {
            LOG.debug("membership listener not removed: {}", e.toString());
        }
    }
}
