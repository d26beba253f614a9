package dev.loragateway.scheduler.cluster;

import com.hazelcast.cluster.Member;
import com.hazelcast.config.Config;
import com.hazelcast.config.InMemoryFormat;
import com.hazelcast.config.JoinConfig;
import com.hazelcast.config.MapConfig;
import com.hazelcast.config.NetworkConfig;
import com.hazelcast.config.ReplicatedMapConfig;
import com.hazelcast.core.Hazelcast;
import com.hazelcast.core.HazelcastInstance;
import dev.loragateway.scheduler.NodeState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * This gateway's embedded Hazelcast 5 member and its node-status publisher: start one from the
 * cluster flags and a supplier of this node's {@link NodeState}; read every node's state through
 * {@link ClusterView}; close it on shutdown. Nothing here runs unless a caller starts it (a gateway
 * without cluster flags never loads Hazelcast).
 *
 * <p>The member is configured in code, nothing read from files or the environment: TCP-IP join to
 * the listed members only; multicast, cloud auto-detection and every discovery plugin off; phone-home
 * off (it would otherwise post to an outside host at start); Hazelcast's logging through SLF4J (the
 * server's logger); bound to the given host and port with no port auto-increment; no JVM shutdown
 * hook (the gateway shuts the member down after it has drained).
 *
 * <p><b>The secret.</b> Hazelcast's open-source edition has no member authentication: a member is
 * admitted when its cluster name matches. So the secret goes into the name: the effective
 * Hazelcast cluster name is {@code NAME + "-" + first 16 hex digits of SHA-256(secret)} (just
 * {@code NAME} without a secret, which {@link ClusterOptions} allows on loopback only). A member with
 * another secret asks to join another cluster and is refused by the join check, never admitted;
 * the secret itself never crosses the wire (64 bits of its hash do, in the join request: enough to
 * keep wrong members apart, not a substitute for a private network or TLS). The secret's bytes are
 * kept for the internal HTTP listener, which checks them on every forwarded request
 * ({@link #secret()}).
 *
 * <p><b>Failure detection.</b> A member that shuts down leaves at once. One killed hard is noticed
 * when its connections fail: its kernel closes them, the survivors' reconnects are refused and the
 * member is removed after a few refused tries (measured: the membership event ~0.3 s after
 * {@code terminate()} on loopback, the status out of the view a few ms later; a start takes ~1.1 s
 * for the first member, whose join wait is 1 s, and 0.2 to 0.7 s for the next). One that hangs with
 * its sockets open is removed after
 * {@value #MAX_NO_HEARTBEAT_SECONDS} s without a heartbeat (Hazelcast's default is 60 s, far too
 * long for requests that wait on it).
 */
public final class ClusterMember implements ClusterView, AutoCloseable {

    /** Node status is republished this often (the issue asks for at most 200 ms). */
    public static final Duration DEFAULT_REFRESH = Duration.ofMillis(200);
    /** Lifetime of a status entry not refreshed: the backstop behind the membership listener. */
    public static final Duration DEFAULT_TTL = Duration.ofSeconds(2);
    static final int MAX_NO_HEARTBEAT_SECONDS = 10;
    /**
     * The map of uploaded adapters' metadata, one entry per tenant (the gateway's
     * {@code ClusterAdapters}): a partitioned map with one synchronous backup, so the loss of any one
     * member loses no adapter and a write returns only once its backup has it.
     */
    public static final String ADAPTERS_MAP = "lora-gateway.adapters";

    private static final Logger LOG = LoggerFactory.getLogger(ClusterMember.class);

    private final ClusterOptions options;
    private final byte[] secret;
    private final HazelcastInstance hz;
    private final NodeStatusBoard board;

    private ClusterMember(ClusterOptions options, byte[] secret, HazelcastInstance hz, NodeStatusBoard board) {
        this.options = options;
        this.secret = secret;
        this.hz = hz;
        this.board = board;
    }

    /** Starts with the default refresh (200 ms) and TTL (2 s). */
    public static ClusterMember start(ClusterOptions options, Supplier<NodeState> localState) {
        return start(options, localState, DEFAULT_REFRESH, DEFAULT_TTL);
    }

    /**
     * Starts the member, joins the listed members (or forms a cluster alone when none answers), and
     * publishes {@code localState.get()} once before returning, then every {@code refresh}. Fails
     * (with the member shut down again) when the secret file cannot be read, the port is taken, the
     * supplier fails or names another node, or another member already uses this node id.
     */
    public static ClusterMember start(ClusterOptions options, Supplier<NodeState> localState, Duration refresh,
                                      Duration ttl) {
        Objects.requireNonNull(localState, "localState");
        if (refresh.isNegative() || refresh.isZero() || refresh.compareTo(DEFAULT_REFRESH) > 0) {
            throw new IllegalArgumentException("node status refresh " + refresh.toMillis()
                + " ms: expected 1.." + DEFAULT_REFRESH.toMillis() + " ms");
        }
        if (ttl.compareTo(refresh.multipliedBy(3)) < 0) {
            throw new IllegalArgumentException("node status TTL " + ttl.toMillis() + " ms is under 3 refresh periods ("
                + refresh.multipliedBy(3).toMillis() + " ms)");
        }
        byte[] secret = options.readSecret();
        String clusterName = effectiveClusterName(options.name(), secret);
        long t0 = System.nanoTime();
        HazelcastInstance hz = Hazelcast.newHazelcastInstance(config(options, clusterName));
        try {
            checkUniqueNodeId(hz, options.nodeId());
            NodeStatusBoard board = new NodeStatusBoard(hz, options.nodeId(), localState, refresh, ttl);
            LOG.info("node {} is a member of cluster '{}' ({} members) at {} after {} ms", options.nodeId(),
                options.name(), hz.getCluster().getMembers().size(), hz.getCluster().getLocalMember().getAddress(),
                (System.nanoTime() - t0) / 1_000_000);
            return new ClusterMember(options, secret, hz, board);
        } catch (RuntimeException e) {
            hz.shutdown();
            throw e;
        }
    }

    /**
     * The Hazelcast cluster name members of {@code name} with {@code secret} use:
     * {@code name-<16 hex of SHA-256(secret)>}, or {@code name} for an empty secret.
     */
    public static String effectiveClusterName(String name, byte[] secret) {
        if (secret.length == 0) {
            return name;
        }
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(secret);
            return name + "-" + HexFormat.of().formatHex(digest, 0, 8);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every Java platform", e);
        }
    }

    /** The member's configuration (package-private so tests can check what it turns off). */
    static Config config(ClusterOptions options, String clusterName) {
        Config config = new Config();
        config.setClusterName(clusterName);
        config.setInstanceName("lora-gateway-" + options.nodeId() + "-" + options.port()); // unique per JVM
        config.setProperty("hazelcast.phone.home.enabled", "false");
        config.setProperty("hazelcast.logging.type", "slf4j");
        config.setProperty("hazelcast.shutdownhook.enabled", "false");
        // one second to gather join requests (default 5): a gateway starts serving sooner
        config.setProperty("hazelcast.wait.seconds.before.join", "1");
        config.setProperty("hazelcast.heartbeat.interval.seconds", "1");
        config.setProperty("hazelcast.max.no.heartbeat.seconds", String.valueOf(MAX_NO_HEARTBEAT_SECONDS));
        boolean wildcard = options.bindHost().equals("0.0.0.0") || options.bindHost().equals("::");
        if (!wildcard) {
            config.setProperty("hazelcast.local.localAddress", options.bindHost());
            config.setProperty("hazelcast.socket.bind.any", "false");
        }
        config.getMemberAttributeConfig().setAttribute(NodeStatusBoard.NODE_ID_ATTRIBUTE, options.nodeId());

        NetworkConfig network = config.getNetworkConfig();
        network.setPort(options.port()).setPortAutoIncrement(false).setPortCount(1);
        network.getRestApiConfig().setEnabled(false);
        network.getMemcacheProtocolConfig().setEnabled(false);
        JoinConfig join = network.getJoin();
        join.getMulticastConfig().setEnabled(false);
        join.getAutoDetectionConfig().setEnabled(false);
        join.getAwsConfig().setEnabled(false);
        join.getGcpConfig().setEnabled(false);
        join.getAzureConfig().setEnabled(false);
        join.getKubernetesConfig().setEnabled(false);
        join.getEurekaConfig().setEnabled(false);
        join.getDiscoveryConfig().getDiscoveryStrategyConfigs().clear();
        join.getTcpIpConfig().setEnabled(true)
            .setMembers(options.members().stream().map(ClusterOptions.Member::toString).toList());

        config.addReplicatedMapConfig(new ReplicatedMapConfig(NodeStatusBoard.MAP_NAME)
            .setInMemoryFormat(InMemoryFormat.OBJECT));
        config.addMapConfig(new MapConfig(ADAPTERS_MAP).setBackupCount(1).setAsyncBackupCount(0).setReadBackupData(false));
        return config;
    }

    private static void checkUniqueNodeId(HazelcastInstance hz, String nodeId) {
        Member self = hz.getCluster().getLocalMember();
        for (Member m : hz.getCluster().getMembers()) {
            if (!m.equals(self) && nodeId.equals(m.getAttribute(NodeStatusBoard.NODE_ID_ATTRIBUTE))) {
                throw new IllegalStateException("--node-id '" + nodeId + "' is already used by the member at "
                    + m.getAddress() + "; give each node its own id");
            }
        }
    }

    /** Republishes this node's state now (call on admission and finish); returns at once. */
    public void publishNow() {
        board.publishNow();
    }

    @Override
    public String localNodeId() {
        return board.localNodeId();
    }

    @Override
    public List<NodeState> nodes() {
        return board.nodes();
    }

    /**
     * The node ids of the cluster's members now, this one included, from Hazelcast's membership
     * (a member that joined counts at once, before it publishes a state).
     */
    @Override
    public java.util.Set<String> memberIds() {
        return board.memberIds();
    }

    @Override
    public void addListener(Runnable onChange) {
        board.addListener(onChange);
    }

    /** True while this node's status is being published (false once closed or the member stopped). */
    public boolean publishing() {
        return board.publishing();
    }

    /** The cluster secret's bytes (empty without one), for the internal listener to check; a copy. */
    public byte[] secret() {
        return secret.clone();
    }

    public ClusterOptions options() {
        return options;
    }

    /** The Hazelcast member, for the other cluster parts (adapter registry, quotas). */
    public HazelcastInstance hazelcast() {
        return hz;
    }

    /** Stops publishing, removes this node's status and leaves the cluster gracefully. */
    @Override
    public void close() {
        board.close();
        if (hz.getLifecycleService().isRunning()) {
            hz.shutdown();
        }
    }
}
