package dev.loragateway.scheduler.cluster;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ClusterOptionsTest {

    @TempDir
    Path dir;

    @Test
    void loopbackClusterNeedsNoSecretAndDefaultsPortAndNodeId() {
        ClusterOptions o = ClusterOptions.parse("prod", "127.0.0.1:5701, localhost:5702,[::1]:5703", null, null,
            null, null);
        assertEquals(List.of(new ClusterOptions.Member("127.0.0.1", 5701), new ClusterOptions.Member("localhost", 5702),
            new ClusterOptions.Member("::1", 5703)), o.members());
        assertEquals(ClusterOptions.DEFAULT_PORT, o.port());
        assertEquals("127.0.0.1", o.bindHost());
        assertEquals("127.0.0.1:5701", o.nodeId());
        assertTrue(o.loopbackOnly());
        assertEquals("[::1]:5703", o.members().get(2).toString());
        assertArrayEquals(new byte[0], o.readSecret());
    }

    @Test
    void nonLoopbackMemberWithoutSecretIsRefusedNamingIt() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "127.0.0.1:5701,10.0.0.7:5701", 5701, "127.0.0.1", null, "a"));
        assertTrue(e.getMessage().contains("--cluster-secret-file is required"), e.getMessage());
        assertTrue(e.getMessage().contains("member 10.0.0.7:5701"), e.getMessage());
        assertFalse(e.getMessage().contains("127.0.0.1:5701"), e.getMessage());
    }

    @Test
    void wildcardBindOrHostNameWithoutSecretIsRefused() {
        IllegalArgumentException any = assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "127.0.0.1:5701", 5701, "0.0.0.0", null, "a"));
        assertTrue(any.getMessage().contains("bind host 0.0.0.0"), any.getMessage());
        // a name is never resolved during validation: it counts as reachable from outside
        IllegalArgumentException named = assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "gw-2.internal:5701", 5701, "127.0.0.1", null, "a"));
        assertTrue(named.getMessage().contains("member gw-2.internal:5701"), named.getMessage());
        assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "127.0.0.1:5701", 5701, "256.0.0.1", null, "a"));
    }

    @Test
    void nonLoopbackClusterWithSecretIsAccepted() throws IOException {
        Path secret = Files.writeString(dir.resolve("secret"), "s3cret\n");
        ClusterOptions o = ClusterOptions.parse("prod", "10.0.0.7:5701,10.0.0.8:5701", 5701, "10.0.0.7", secret,
            "gw-1");
        assertFalse(o.loopbackOnly());
        assertArrayEquals("s3cret".getBytes(StandardCharsets.UTF_8), o.readSecret(), "final newline trimmed");
    }

    @Test
    void portRangeIsRefusedWithAMessageThatSaysListEachMember() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "127.0.0.1:5701-5703", 5701, null, null, null));
        assertTrue(e.getMessage().contains("is a port range"), e.getMessage());
        assertTrue(e.getMessage().contains("127.0.0.1:5701,127.0.0.1:5702"), e.getMessage());
    }

    @Test
    void malformedMembersAreRefusedQuotingThem() {
        for (String bad : List.of("127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":5701", "::1:5701",
            "[::1]5701")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ClusterOptions.parse("prod", bad, 5701, null, null, null), bad);
            assertTrue(e.getMessage().startsWith("--cluster-members"), e.getMessage());
            assertTrue(e.getMessage().contains(bad) || e.getMessage().contains("70000"), e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> ClusterOptions.parse("prod", " , ", 5701, null, null,
            null));
    }

    @Test
    void badNamePortAndNodeIdAreRefused() {
        assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("", "127.0.0.1:5701", null, null, null, null));
        assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("my cluster", "127.0.0.1:5701", null, null, null, null));
        IllegalArgumentException port = assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "127.0.0.1:5701", 0, null, null, null));
        assertTrue(port.getMessage().startsWith("--cluster-port"), port.getMessage());
        assertThrows(IllegalArgumentException.class,
            () -> ClusterOptions.parse("prod", "127.0.0.1:5701", null, null, null, "a/b"));
    }

    @Test
    void unreadableOrEmptySecretFileIsAnErrorNotAnOpenCluster() throws IOException {
        ClusterOptions missing = ClusterOptions.parse("prod", "127.0.0.1:5701", null, null, dir.resolve("nope"), null);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, missing::readSecret);
        assertTrue(e.getMessage().contains("cannot read"), e.getMessage());
        Path empty = Files.writeString(dir.resolve("empty"), " \n");
        IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class,
            ClusterOptions.parse("prod", "127.0.0.1:5701", null, null, empty, null)::readSecret);
        assertTrue(e2.getMessage().contains("is empty"), e2.getMessage());
    }

    @Test
    void effectiveClusterNameDependsOnTheSecretAndHidesIt() {
        byte[] a = "alpha".getBytes(StandardCharsets.UTF_8);
        byte[] b = "bravo".getBytes(StandardCharsets.UTF_8);
        String na = ClusterMember.effectiveClusterName("prod", a);
        assertEquals(na, ClusterMember.effectiveClusterName("prod", a.clone()));
        assertNotEquals(na, ClusterMember.effectiveClusterName("prod", b));
        assertTrue(na.matches("prod-[0-9a-f]{16}"), na);
        assertFalse(na.contains("alpha"));
        assertEquals("prod", ClusterMember.effectiveClusterName("prod", new byte[0]));
    }
}
