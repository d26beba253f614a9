package dev.loragateway.scheduler.cluster.quota;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.cluster.ClusterMember;
import dev.loragateway.scheduler.cluster.ClusterOptions;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Three real Hazelcast members in this JVM, joined over TCP on 127.0.0.1 (every operation crosses
 * as serialized bytes to the tenant's partition owner): the limits hold for the cluster, not per
 * member, and a member that is killed gives its slots back. Each test uses its own tenant.
 */
@Timeout(120)
class TenantQuotasTest {
    @TempDir
    static Path dir;
    static final List<ClusterMember> MEMBERS = new ArrayList<>();
    static final List<TenantQuotas> QUOTAS = new ArrayList<>();
    static Path secret;
    static int[] ports;
    static String members;

    @BeforeAll
    static void start() throws Exception {
        secret = Files.writeString(dir.resolve("secret"), "quota-secret");
        ports = freePorts(4);
        members = java.util.Arrays.stream(ports).mapToObj(p -> "127.0.0.1:" + p).collect(Collectors.joining(","));
        for (int i = 0; i < 3; i++) {
            MEMBERS.add(member(i));
        }
        for (ClusterMember m : MEMBERS) {
            awaitTrue(() -> m.hazelcast().getCluster().getMembers().size() == 3, Duration.ofSeconds(30), "3 members");
            QUOTAS.add(new TenantQuotas(m.hazelcast()));
        }
    }

    private static ClusterMember member(int i) {
        String id = "q" + i;
        return ClusterMember.start(ClusterOptions.parse("lg-quota", members, ports[i], "127.0.0.1", secret, id),
            () -> new NodeState(id, "http://127.0.0.1:0", "cpu", 0, 0, 8, 64, 64, 16, Set.of(), Set.of(), 0, false,
                System.currentTimeMillis()));
    }

    @AfterAll
    static void stop() {
        QUOTAS.forEach(TenantQuotas::close);
        for (ClusterMember m : MEMBERS) {
            if (m.hazelcast().getLifecycleService().isRunning()) {
                m.close();
            }
        }
    }

    private static <T> T get(CompletableFuture<T> f) throws Exception {
        return f.get(10, TimeUnit.SECONDS);
    }

    @Test
    void theConcurrencyLimitIsOneCountOverEveryMember() throws Exception {
        for (int i = 0; i < 3; i++) {
            assertEquals(i, get(QUOTAS.get(i).enter("conc", 3)), "slot " + i + " taken on member " + i);
        }
        for (TenantQuotas q : QUOTAS) {
            assertEquals(3, get(q.enter("conc", 3)), "a 4th slot is refused on every member");
            assertEquals(3, q.running("conc"));
        }
        get(QUOTAS.get(1).leave("conc"));
        assertEquals(2, get(QUOTAS.get(2).enter("conc", 3)), "a slot given back on one member is taken on another");
        assertEquals(3, get(QUOTAS.get(0).enter("conc", 3)));
        get(QUOTAS.get(2).leave("conc"));
        get(QUOTAS.get(2).leave("conc"));
        get(QUOTAS.get(2).leave("conc")); // one more than it holds: nothing
        get(QUOTAS.get(0).leave("conc"));
        assertEquals(0, QUOTAS.get(1).running("conc"));
    }

    @Test
    void concurrentEntersFromEveryMemberNeverPassTheLimit() throws Exception {
        List<CompletableFuture<Integer>> all = new ArrayList<>();
        for (int k = 0; k < 30; k++) {
            all.add(QUOTAS.get(k % 3).enter("race", 7));
        }
        int admitted = 0;
        for (CompletableFuture<Integer> f : all) {
            if (get(f) < 7) {
                admitted++;
            }
        }
        assertEquals(7, admitted, "30 racing requests against a limit of 7");
        assertEquals(7, QUOTAS.get(0).running("race"));
    }

    @Test
    void theRequestRateIsOneBucketForTheCluster() throws Exception {
        double rate = 20;
        long t0 = System.nanoTime();
        int admitted = 0;
        int k = 0;
        while (System.nanoTime() - t0 < TimeUnit.MILLISECONDS.toNanos(1500)) {
            double wait = get(QUOTAS.get(k++ % 3).takeRequest("rate", rate));
            if (wait == 0) {
                admitted++;
            } else {
                assertTrue(wait > 0 && wait <= 1 / rate + 1e-9, "seconds to wait for the next token: " + wait);
            }
            Thread.sleep(2);
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        double expected = rate + rate * seconds; // a full bucket (one second's worth), then the refill
        assertTrue(Math.abs(admitted - expected) <= 0.1 * expected,
            admitted + " admitted over " + seconds + " s at " + rate + "/s on 3 members; expected " + expected + " (3 separate buckets: "
                + 3 * expected + ")");
    }

    @Test
    void aKilledMembersSlotsAreGivenBack() throws Exception {
        ClusterMember extra = member(3); // a fourth member, so that the others' tests keep their three
        try {
            awaitTrue(() -> QUOTAS.get(0).members() == 4, Duration.ofSeconds(30), "the fourth member joins");
            // partitions settled (each with its backup), so that killing it loses no count but its own
            awaitTrue(() -> extra.hazelcast().getPartitionService().isClusterSafe(), Duration.ofSeconds(30), "migrations done");
            TenantQuotas doomed = new TenantQuotas(extra.hazelcast());
            assertEquals(0, get(doomed.enter("left", 4)));
            assertEquals(1, get(doomed.enter("left", 4)));
            assertEquals(2, get(QUOTAS.get(0).enter("left", 4)));
            assertEquals(3, QUOTAS.get(1).running("left"));
            extra.hazelcast().getLifecycleService().terminate(); // no goodbye: as a killed process
            awaitTrue(() -> QUOTAS.get(0).members() == 3, Duration.ofSeconds(20), "the others see it leave");
            awaitTrue(() -> QUOTAS.get(1).running("left") == 1, Duration.ofSeconds(10), "its two slots dropped");
            assertEquals(1, get(QUOTAS.get(1).enter("left", 2)), "a slot of the dead member is free again");
            doomed.close();
        } finally {
            if (extra.hazelcast().getLifecycleService().isRunning()) {
                extra.close();
            }
        }
    }

    private static int[] freePorts(int n) throws IOException {
        return dev.loragateway.scheduler.cluster.LocalPorts.free(n);
    }

    private static void awaitTrue(BooleanSupplier condition, Duration limit, String what) throws InterruptedException {
        long until = System.nanoTime() + limit.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > until) {
                fail(what + ": not within " + limit.toMillis() + " ms");
            }
            Thread.sleep(10);
        }
    }
}
