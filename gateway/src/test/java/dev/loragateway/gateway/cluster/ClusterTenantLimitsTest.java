package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.hazelcast.map.EntryProcessor;
import com.hazelcast.map.IMap;
import dev.loragateway.gateway.auth.TenantLimiter;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.cluster.ClusterMember;
import dev.loragateway.scheduler.cluster.ClusterOptions;
import dev.loragateway.scheduler.cluster.quota.TenantQuotas;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link ClusterTenantLimits} on a real Hazelcast member: answers come from the cluster's counts;
 * when the cluster hangs (the tenant's partition busy) or this member has stopped, they come within
 * the bound from this node's counts, and a slot the cluster grants late is given back.
 */
@Timeout(60)
class ClusterTenantLimitsTest {
    private static final Duration BOUND = Duration.ofMillis(200);

    @TempDir
    Path dir;

    /** Holds its entry's partition thread for a while: what a stalled partition owner looks like to a caller. */
    static final class Stall implements EntryProcessor<String, Object, Object> {
        private static final long serialVersionUID = 1L;
        private final long millis;

        Stall(long millis) {
            this.millis = millis;
        }

        @Override
        public Object process(Map.Entry<String, Object> entry) {
            try {
                Thread.sleep(millis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return null;
        }

        @Override
        public EntryProcessor<String, Object, Object> getBackupProcessor() {
            return null;
        }
    }

    private static <T> T answer(java.util.concurrent.CompletionStage<T> s) throws Exception {
        return s.toCompletableFuture().get(5, TimeUnit.SECONDS);
    }

    @Test
    void theClusterCountsAndAHangOrAStoppedMemberFallsBackToLocalCountsWithinTheBound() throws Exception {
        Path secret = Files.writeString(dir.resolve("secret"), "limits");
        int port = ClusterNodes.freePorts(1)[0];
        ClusterMember member = ClusterMember.start(ClusterOptions.parse("lg-limits", "127.0.0.1:" + port, port, "127.0.0.1", secret, "n0"),
            () -> new NodeState("n0", "http://127.0.0.1:0", "cpu", 0, 0, 8, 64, 64, 16, Set.of(), Set.of(), 0, false,
                System.currentTimeMillis()));
        TenantQuotas quotas = new TenantQuotas(member.hazelcast());
        ClusterTenantLimits limits = new ClusterTenantLimits(quotas, BOUND);
        try {
            Tenants.Tenant acme = new Tenants.Tenant("acme", 0, 0, 2);
            TenantLimiter.Slot first = answer(limits.enter(acme));
            TenantLimiter.Slot second = answer(limits.enter(acme));
            assertTrue(first.refusal().isEmpty() && second.refusal().isEmpty());
            TenantLimiter.Refusal full = answer(limits.enter(acme)).refusal().orElseThrow();
            assertEquals("tenant acme already has 2 requests running, its limit; retry when one finishes", full.message(),
                "the wording of a single node's 429");
            assertEquals(2, quotas.running("acme"), "counted in the cluster");
            first.release();
            first.release();
            awaitTrue(() -> quotas.running("acme") == 1, "one slot given back (once)");

            // the tenant's partition stalls for 1.5 s: the answer comes within the bound, from this node's counts
            IMap<String, Object> map = member.hazelcast().getMap(TenantQuotas.MAP_NAME);
            CompletableFuture<Object> stall = map.submitToKey("acme", new Stall(1500)).toCompletableFuture();
            Thread.sleep(50);
            long t0 = System.nanoTime();
            TenantLimiter.Slot local = answer(limits.enter(acme));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= BOUND.toMillis() - 5 && ms < BOUND.toMillis() + 500, "answered after " + ms + " ms");
            assertTrue(local.refusal().isEmpty(), "a share of 2 / 1 member: admitted locally");
            assertTrue(limits.alone());
            stall.get(5, TimeUnit.SECONDS);
            // the cluster then granted the stalled call its slot: it is given back, so only `second` holds one
            awaitTrue(() -> quotas.running("acme") == 1, "the late slot given back");
            local.release();
            TenantLimiter.Slot again = answer(limits.enter(acme));
            assertTrue(again.refusal().isEmpty());
            assertFalse(limits.alone(), "the cluster answers again");
            assertEquals(2, quotas.running("acme"));
            again.release();
            second.release();
            awaitTrue(() -> quotas.running("acme") == 0, "all given back");

            Tenants.Tenant rated = new Tenants.Tenant("rated", 0, 3, 0);
            for (int i = 0; i < 3; i++) {
                assertEquals(Optional.empty(), answer(limits.request(rated)), "request " + i + " of a full bucket");
            }
            TenantLimiter.Refusal over = answer(limits.request(rated)).orElseThrow();
            assertEquals("tenant rated is over its limit of 3 requests per second; retry later", over.message());
            assertEquals(1, over.retryAfterSeconds());

            // this node's member stops: answers at once, from local counts
            member.hazelcast().getLifecycleService().terminate();
            t0 = System.nanoTime();
            assertTrue(answer(limits.enter(acme)).refusal().isEmpty());
            assertTrue(answer(limits.enter(acme)).refusal().isEmpty());
            assertTrue(answer(limits.enter(acme)).refusal().isPresent(), "local counts still limit");
            assertTrue(answer(limits.request(new Tenants.Tenant("fresh", 0, 2, 0))).isEmpty());
            ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < 2 * BOUND.toMillis() + 500, "a stopped member answers without waiting: " + ms + " ms");
            assertTrue(limits.alone());
        } finally {
            limits.close();
            quotas.close();
            if (member.hazelcast().getLifecycleService().isRunning()) {
                member.close();
            }
        }
    }

    private static void awaitTrue(BooleanSupplier condition, String what) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > until) {
                fail(what + ": not within 10 s");
            }
            Thread.sleep(10);
        }
    }
}
