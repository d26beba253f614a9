package dev.loragateway.scheduler.cluster;

import com.hazelcast.cluster.MembershipEvent;
import com.hazelcast.cluster.MembershipListener;
import com.hazelcast.config.Config;
import com.hazelcast.config.JoinConfig;
import dev.loragateway.scheduler.NodeState;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetAddress;
import java.net.Proxy;
import java.net.ProxySelector;
import java.net.ServerSocket;
import java.net.SocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Real embedded Hazelcast members in this JVM, on 127.0.0.1, joined over TCP like separate
 * processes would be (every member has its own port and its own connections; states cross as
 * serialized bytes). Every wait is bounded.
 */
@Timeout(120)
class ClusterMemberTest {

    /** Every URL any code of this JVM opens during these tests (phone-home, cloud probes, ...). */
    private static final List<URI> OUTSIDE = new CopyOnWriteArrayList<>();
    private static ProxySelector previousProxySelector;

    @TempDir
    Path dir;

    private final List<ClusterMember> started = new ArrayList<>();

    @BeforeAll
    static void recordOutsideConnections() {
        previousProxySelector = ProxySelector.getDefault();
        ProxySelector.setDefault(new ProxySelector() {
            @Override
            public List<Proxy> select(URI uri) {
                OUTSIDE.add(uri);
                return List.of(Proxy.NO_PROXY);
            }

            @Override
            public void connectFailed(URI uri, SocketAddress sa, IOException ioe) {
            }
        });
    }

    @AfterAll
    static void noOutsideConnectionWasAttempted() {
        ProxySelector.setDefault(previousProxySelector);
        assertEquals(List.of(), OUTSIDE, "URLs opened while members ran (phone-home must be off)");
    }

    @AfterEach
    void closeMembers() {
        for (ClusterMember m : started) {
            if (m.hazelcast().getLifecycleService().isRunning()) {
                m.close();
            }
        }
    }

    @Test
    void threeMembersFormOneClusterAndSeeEveryStateQuickly() throws Exception {
        Path secret = Files.writeString(dir.resolve("secret"), "one-secret");
        int[] ports = freePorts(3);
        List<AtomicReference<NodeState>> states = new ArrayList<>();
        List<ClusterMember> members = new ArrayList<>();
        long slowestStartMs = 0;
        for (int i = 0; i < 3; i++) {
            AtomicReference<NodeState> s = new AtomicReference<>(state("n" + i, 0));
            states.add(s);
            long t0 = System.nanoTime();
            members.add(start(options("n" + i, ports[i], ports, secret), s::get, ClusterMember.DEFAULT_TTL));
            slowestStartMs = Math.max(slowestStartMs, (System.nanoTime() - t0) / 1_000_000);
        }
        assertTrue(slowestStartMs < 15_000, "a member took " + slowestStartMs + " ms to start");
        for (ClusterMember m : members) {
            awaitTrue(() -> m.hazelcast().getCluster().getMembers().size() == 3, Duration.ofSeconds(20),
                m.localNodeId() + " sees 3 members");
            awaitTrue(() -> ids(m).equals(List.of("n0", "n1", "n2")), Duration.ofSeconds(2),
                m.localNodeId() + " sees every node's state");
        }

        // a change published at once (admission/finish) reaches every member within 1 s
        AtomicLong changes = new AtomicLong();
        members.get(0).addListener(changes::incrementAndGet);
        NodeState busy = new NodeState("n1", "http://127.0.0.1:9001", "cpu", 5, 2, 8, 40, 64, 16,
            Set.of("t1/a", "t1/b"), Set.of("t2/c"), 12.5, false, System.currentTimeMillis());
        states.get(1).set(busy);
        long t0 = System.nanoTime();
        members.get(1).publishNow();
        for (ClusterMember m : members) {
            awaitTrue(() -> busy.equals(stateOf(m, "n1")), Duration.ofSeconds(1),
                m.localNodeId() + " sees n1's published state (every field, sets included)");
        }
        long seenMs = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(seenMs < 1000, "publishNow took " + seenMs + " ms to reach everyone");
        System.out.printf("cluster: slowest member start %d ms; publishNow seen everywhere after %d ms%n",
            slowestStartMs, seenMs);
        assertTrue(changes.get() > 0, "the view's listener was told");

        // without publishNow the periodic refresh carries it within one period (200 ms) plus replication
        states.get(2).set(state("n2", 3));
        for (ClusterMember m : members) {
            awaitTrue(() -> stateOf(m, "n2") != null && stateOf(m, "n2").running() == 3, Duration.ofMillis(700),
                m.localNodeId() + " sees n2's refreshed state");
        }
    }

    @Test
    void departedMembersLeaveTheViewAtOnceNotAfterTheTtl() throws Exception {
        int[] ports = freePorts(3);
        // a TTL far beyond the test's waits: a disappearance here is the membership listener's doing
        Duration longTtl = Duration.ofSeconds(60);
        List<ClusterMember> members = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            String id = "n" + i;
            members.add(start(options(id, ports[i], ports, null), () -> state(id, 1), longTtl));
        }
        ClusterMember a = members.get(0);
        awaitTrue(() -> ids(a).size() == 3 && ids(members.get(1)).size() == 3, Duration.ofSeconds(20), "3 nodes");
        AtomicLong removedAtNanos = new AtomicLong();
        a.hazelcast().getCluster().addMembershipListener(new MembershipListener() {
            @Override
            public void memberAdded(MembershipEvent e) {
            }

            @Override
            public void memberRemoved(MembershipEvent e) {
                removedAtNanos.set(System.nanoTime());
            }
        });

        // graceful shutdown: gone from a's view within 1 s of the close
        long t0 = System.nanoTime();
        members.get(2).close();
        awaitTrue(() -> ids(a).equals(List.of("n0", "n1")), Duration.ofSeconds(1), "n2 gone after close");
        assertTrue((System.nanoTime() - t0) / 1_000_000 < 1000);
        // and its entry is removed from the map itself, not only hidden
        awaitTrue(() -> !a.hazelcast().getReplicatedMap(NodeStatusBoard.MAP_NAME).containsKey("n2"),
            Duration.ofSeconds(1), "n2's entry removed");

        // hard termination (no goodbye): gone within 1 s of the membership event, and long before the TTL
        removedAtNanos.set(0);
        long killedAt = System.nanoTime();
        members.get(1).hazelcast().getLifecycleService().terminate();
        awaitTrue(() -> removedAtNanos.get() != 0, Duration.ofSeconds(15), "membership event for n1");
        long eventMs = (removedAtNanos.get() - killedAt) / 1_000_000;
        awaitTrue(() -> ids(a).equals(List.of("n0")), Duration.ofSeconds(1), "n1 gone after the event");
        long goneMs = (System.nanoTime() - removedAtNanos.get()) / 1_000_000;
        assertTrue(goneMs < 1000, "n1 left the view " + goneMs + " ms after the event");
        System.out.printf("cluster: terminated member's membership event after %d ms, out of the view %d ms later%n",
            eventMs, goneMs);
        assertTrue(eventMs < longTtl.toMillis() / 4, "the event came " + eventMs + " ms after the kill");
        awaitTrue(() -> !a.hazelcast().getReplicatedMap(NodeStatusBoard.MAP_NAME).containsKey("n1"),
            Duration.ofSeconds(1), "n1's entry removed");
        assertFalse(members.get(1).publishing(), "a terminated member stops its publisher");
        assertTrue(a.publishing());
    }

    @Test
    void aMemberThatStopsPublishingExpiresAfterTheTtl() throws Exception {
        int[] ports = freePorts(2);
        AtomicBoolean hung = new AtomicBoolean();
        ClusterMember a = start(options("n0", ports[0], ports, null), () -> state("n0", 0), Duration.ofSeconds(1));
        ClusterMember b = start(options("n1", ports[1], ports, null), () -> {
            if (hung.get()) {
                throw new IllegalStateException("engine wedged");
            }
            return state("n1", 0);
        }, Duration.ofSeconds(1));
        awaitTrue(() -> ids(a).equals(List.of("n0", "n1")), Duration.ofSeconds(20), "2 nodes");
        hung.set(true);
        long t0 = System.nanoTime();
        awaitTrue(() -> ids(a).equals(List.of("n0")), Duration.ofSeconds(4), "n1 expires");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 600, "expired after " + ms + " ms, before its 1 s TTL could have run out");
        assertEquals(2, b.hazelcast().getCluster().getMembers().size(), "still a member: only its status expired");
        hung.set(false);
        awaitTrue(() -> ids(a).equals(List.of("n0", "n1")), Duration.ofSeconds(1), "n1 is back when it publishes");
    }

    @Test
    void membersOfAnotherNameOrSecretNeverJoin() throws Exception {
        Path secret = Files.writeString(dir.resolve("secret"), "right");
        Path wrong = Files.writeString(dir.resolve("wrong"), "wrong");
        int[] ports = freePorts(4);
        ClusterMember a = start(options("a", ports[0], ports, secret), () -> state("a", 0), ClusterMember.DEFAULT_TTL);
        ClusterMember b = start(options("b", ports[1], ports, secret), () -> state("b", 0), ClusterMember.DEFAULT_TTL);
        awaitTrue(() -> a.hazelcast().getCluster().getMembers().size() == 2, Duration.ofSeconds(20), "a+b");
        ClusterMember otherName = start(new ClusterOptions("other", options("x", ports[2], ports, secret).members(),
            "127.0.0.1", ports[2], secret, "x"), () -> state("x", 0), ClusterMember.DEFAULT_TTL);
        ClusterMember otherSecret = start(options("y", ports[3], ports, wrong), () -> state("y", 0),
            ClusterMember.DEFAULT_TTL);
        long until = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (System.nanoTime() < until) {
            assertEquals(1, otherName.hazelcast().getCluster().getMembers().size(), "other name joined someone");
            assertEquals(1, otherSecret.hazelcast().getCluster().getMembers().size(), "wrong secret joined someone");
            assertEquals(2, a.hazelcast().getCluster().getMembers().size());
            assertEquals(List.of("a", "b"), ids(a));
            assertEquals(List.of("a", "b"), ids(b));
            assertEquals(List.of("y"), ids(otherSecret));
            Thread.sleep(100);
        }
    }

    @Test
    void aSecondMemberWithTheSameNodeIdIsRefused() throws Exception {
        int[] ports = freePorts(2);
        start(options("same", ports[0], ports, null), () -> state("same", 0), ClusterMember.DEFAULT_TTL);
        ClusterOptions twin = new ClusterOptions("lg-test", options("same", ports[1], ports, null).members(),
            "127.0.0.1", ports[1], null, "same");
        IllegalStateException e = assertThrows(IllegalStateException.class,
            () -> ClusterMember.start(twin, () -> state("same", 0)));
        assertTrue(e.getMessage().contains("already used"), e.getMessage());
    }

    @Test
    void aSupplierNamingAnotherNodeFailsStartAndLeavesNoMember() throws Exception {
        int[] ports = freePorts(1);
        ClusterOptions o = options("me", ports[0], ports, null);
        assertThrows(IllegalStateException.class, () -> ClusterMember.start(o, () -> state("someone-else", 0)));
        // the port is free again: the member was shut down
        try (ServerSocket s = new ServerSocket(ports[0], 1, InetAddress.getLoopbackAddress())) {
            assertEquals(ports[0], s.getLocalPort());
        }
    }

    @Test
    void configTurnsOffEveryOutsideDiscoveryAndPhoneHome() {
        int[] ports = {15701, 15702};
        Config c = ClusterMember.config(options("n0", 15701, ports, null), "lg-test");
        assertEquals("false", c.getProperty("hazelcast.phone.home.enabled"));
        assertEquals("slf4j", c.getProperty("hazelcast.logging.type"));
        assertEquals("false", c.getProperty("hazelcast.shutdownhook.enabled"));
        assertEquals("127.0.0.1", c.getProperty("hazelcast.local.localAddress"));
        assertEquals("false", c.getProperty("hazelcast.socket.bind.any"));
        assertEquals("lg-test", c.getClusterName());
        assertEquals(15701, c.getNetworkConfig().getPort());
        assertFalse(c.getNetworkConfig().isPortAutoIncrement());
        JoinConfig join = c.getNetworkConfig().getJoin();
        assertFalse(join.getMulticastConfig().isEnabled());
        assertFalse(join.getAutoDetectionConfig().isEnabled());
        assertFalse(join.getAwsConfig().isEnabled() || join.getGcpConfig().isEnabled()
            || join.getAzureConfig().isEnabled() || join.getKubernetesConfig().isEnabled());
        assertTrue(join.getTcpIpConfig().isEnabled());
        assertEquals(List.of("127.0.0.1:15701", "127.0.0.1:15702"), join.getTcpIpConfig().getMembers());
        assertEquals("n0", c.getMemberAttributeConfig().getAttribute(NodeStatusBoard.NODE_ID_ATTRIBUTE));
        // adapters' metadata survives the loss of one member: one synchronous backup
        assertEquals(1, c.getMapConfig(ClusterMember.ADAPTERS_MAP).getBackupCount());
        assertEquals(0, c.getMapConfig(ClusterMember.ADAPTERS_MAP).getAsyncBackupCount());
    }

    // --- helpers

    private ClusterMember start(ClusterOptions o, java.util.function.Supplier<NodeState> s, Duration ttl) {
        ClusterMember m = ClusterMember.start(o, s, ClusterMember.DEFAULT_REFRESH, ttl);
        started.add(m);
        return m;
    }

    private static ClusterOptions options(String nodeId, int port, int[] ports, Path secret) {
        String members = java.util.Arrays.stream(ports).mapToObj(p -> "127.0.0.1:" + p)
            .collect(Collectors.joining(","));
        return ClusterOptions.parse("lg-test", members, port, "127.0.0.1", secret, nodeId);
    }

    private static NodeState state(String nodeId, int running) {
        return new NodeState(nodeId, "http://127.0.0.1:0", "cpu", running, 0, 8, 64, 64, 16, Set.of(), Set.of(),
            0, false, System.currentTimeMillis());
    }

    private static List<String> ids(ClusterView v) {
        return v.nodes().stream().map(NodeState::nodeId).toList();
    }

    private static NodeState stateOf(ClusterView v, String nodeId) {
        return v.nodes().stream().filter(s -> s.nodeId().equals(nodeId)).findFirst().orElse(null);
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
