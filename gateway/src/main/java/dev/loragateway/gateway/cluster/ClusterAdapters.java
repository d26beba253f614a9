package dev.loragateway.gateway.cluster;

import com.hazelcast.cluster.Member;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.HazelcastInstanceAware;
import com.hazelcast.core.LifecycleEvent;
import dev.loragateway.adapters.AdapterCatalog;
import dev.loragateway.adapters.AdapterConflictException;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.adapters.AdapterQuotaException;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterValidationException;
import dev.loragateway.gateway.http.ApiError;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.cluster.ClusterMember;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Uploaded adapters as cluster data: the {@link AdapterCatalog} of a gateway in a cluster. The
 * cluster's {@link AdapterRecords} (a Hazelcast map with a backup) say which adapters exist; each
 * node's {@link AdapterRegistry} is its disk copy of some of them, and {@link AdapterFiles} moves
 * copies between nodes. System adapters ({@code --lora-modules}) stay per node, as each node's flags
 * give them.
 *
 * <pre>
 * upload   reserve the name in the map (409 taken, 429 over max_adapters: one atomic step, cluster-wide)
 *          → store and validate here → one peer pulls a copy (201 only once it holds it; 503 when no
 *          peer could within the replica timeout, and nothing is kept) → the record turns ready
 * request  the front node looks the name up in the map; the executing node's tiers load it from its
 *          own copy, or first pull one from a holder ({@link #materialize}) and join the holders
 * delete   remove the record (every node answers 404 from then on) → every member drops its copy
 *          and forgets the adapter in its host and device tiers, before the delete returns
 * restart  each node merges its copies into the map ({@link #rejoin}): after a full restart every
 *          adapter is back, and a copy deleted while its node was away is dropped, not revived
 * </pre>
 *
 * Every method blocks (map operations, file transfers): call them from worker threads.
 */
public final class ClusterAdapters implements AdapterCatalog {
    /** How long an upload waits for a second node to hold its files before it answers 503. */
    public static final Duration DEFAULT_REPLICA_TIMEOUT = Duration.ofSeconds(30);
    /** Longest pull of one adapter's files from one node. */
    static final Duration TRANSFER_TIMEOUT = Duration.ofSeconds(60);
    /** How long a delete waits for every member to drop its copy and forget the adapter. */
    static final Duration RECONCILE_WAIT = Duration.ofSeconds(10);
    /** A reservation older than this belongs to an upload that will never finish. */
    static final long PENDING_TTL_MS = TimeUnit.MINUTES.toMillis(10);
    /** Where a member's {@code ClusterAdapters} is found by tasks sent to it ({@link Reconcile}). */
    static final String CONTEXT_KEY = "lora-gateway.adapters";
    private static final String EXECUTOR = "lora-gateway.adapters";
    private static final Logger LOG = LoggerFactory.getLogger(ClusterAdapters.class);

    private final AdapterRegistry local;
    private final ClusterMember member;
    private final HazelcastInstance hz;
    private final AdapterRecords records;
    private final String nodeId;
    private final String address;
    private final AdapterFiles files;
    private final Consumer<AdapterKey> forget;
    private final Duration replicaTimeout;

    /**
     * @param local          this node's copies ({@code --data-dir}) and its system adapters
     * @param member         this node's cluster member
     * @param address        this node's internal listener (where peers pull copies from)
     * @param files          pulls and pushes copies ({@link AdapterFiles}, mounted on that listener)
     * @param forget         drops an adapter from this node's host and device tiers ({@code DeviceTier.invalidate})
     * @param replicaTimeout how long an upload waits for a second copy ({@link #DEFAULT_REPLICA_TIMEOUT})
     */
    public ClusterAdapters(AdapterRegistry local, ClusterMember member, String address, AdapterFiles files,
                           Consumer<AdapterKey> forget, Duration replicaTimeout) {
        this.local = local;
        this.member = member;
        this.hz = member.hazelcast();
        this.records = new AdapterRecords(hz);
        this.nodeId = member.localNodeId();
        this.address = address;
        this.files = files;
        this.forget = forget;
        this.replicaTimeout = replicaTimeout;
        hz.getUserContext().put(CONTEXT_KEY, this);
        // after a split brain heals, the smaller side's map entries give way to the larger side's:
        // this node's copies are merged in again so that no adapter is lost from the records
        hz.getLifecycleService().addLifecycleListener(e -> {
            if (e.getState() == LifecycleEvent.LifecycleState.MERGED) {
                rejoinLater();
            }
        });
        // a member lost before the records' backups were placed on others (it had just joined, or
        // two died at once) takes those records with it: the copies on the survivors' disks put
        // them back (a merge is idempotent: records that survived are unchanged)
        hz.getCluster().addMembershipListener(new com.hazelcast.cluster.MembershipListener() {
            @Override
            public void memberAdded(com.hazelcast.cluster.MembershipEvent event) {
            }

            @Override
            public void memberRemoved(com.hazelcast.cluster.MembershipEvent event) {
                rejoinLater();
            }
        });
    }

    /** {@link #rejoin} on a thread of its own (never on Hazelcast's event thread). */
    private void rejoinLater() {
        Thread t = new Thread(this::rejoinQuietly, "adapters-rejoin");
        t.setDaemon(true);
        t.start();
    }

    private void rejoinQuietly() {
        try {
            rejoin();
        } catch (RuntimeException e) {
            LOG.warn("merging this node's adapter copies into the cluster's records again failed: {}", e.toString());
        }
    }

    // ---- start ----------------------------------------------------------------------------------

    /**
     * Merges this node's copies into the cluster's records (at start, after joining): an adapter the
     * cluster lacks is added with this node as its holder, one it has gains this node as a holder,
     * and a copy deleted while this node was away (or replaced by a newer upload) is dropped here.
     */
    public void rejoin() {
        Map<AdapterRecords.Merge, Integer> counts = new TreeMap<>();
        for (AdapterInfo copy : local.uploaded()) {
            AdapterRecords.Merge m = records.merge(copy.tenant(), AdapterRecord.ready(copy, List.of(nodeId)));
            counts.merge(m, 1, Integer::sum);
            switch (m) {
                case STALE -> {
                    LOG.info("dropping this node's copy of adapter {}: it was deleted or replaced in the cluster while this node was away",
                        copy.key());
                    local.delete(copy.tenant(), copy.name());
                }
                case REPLACED -> reconcileEverywhere(copy.tenant(), copy.name()); // holders of the older upload drop theirs
                case PENDING -> LOG.info("adapter {}: an upload of that name is in progress; this node's copy waits", copy.key());
                default -> { }
            }
        }
        LOG.info("adapters: this node's copies merged into the cluster's records: {}", counts);
    }

    // ---- the catalog ----------------------------------------------------------------------------

    @Override
    public String baseModelId() {
        return local.baseModelId();
    }

    /** Reads are map operations on other members: never on an event loop. */
    @Override
    public boolean remote() {
        return true;
    }

    @Override
    public Optional<AdapterInfo> find(String tenant, String name) {
        Optional<AdapterRecord> r = records.ready(tenant, name);
        return r.isPresent() ? Optional.of(info(tenant, r.get())) : local.get(AdapterKey.system(name));
    }

    @Override
    public List<AdapterInfo> list(String tenant) {
        Map<String, AdapterInfo> own = new LinkedHashMap<>();
        for (AdapterRecord r : records.all(tenant)) {
            own.put(r.name(), info(tenant, r));
        }
        List<AdapterInfo> out = new ArrayList<>(own.values());
        for (AdapterInfo a : local.list(tenant)) {
            if (a.system() && !own.containsKey(a.name())) {
                out.add(a);
            }
        }
        out.sort(Comparator.comparing(AdapterInfo::name));
        return out;
    }

    /** Names the tenant holds in the cluster, uploads in progress included (what its quota counts). */
    @Override
    public int count(String tenant) {
        return records.count(tenant);
    }

    /**
     * Stores an upload as cluster data. The name and the quota are decided first, in one atomic
     * step on the cluster's records; the files are then validated here and copied to one more node
     * when the cluster has others; only then does the adapter exist for requests and lists. Any
     * failure releases the name and removes every copy made.
     *
     * @throws ApiError 503 when no other node could store a copy within the replica timeout
     */
    @Override
    public AdapterInfo register(String tenant, String name, Path configFile, Path tensorsFile, int maxAdapters) {
        local.checkUploadName(name);
        String reservation = UUID.randomUUID().toString();
        Set<String> live = new HashSet<>(member.memberIds());
        live.add(nodeId);
        AdapterRecords.Reservation r = records.reserve(tenant, name, reservation, nodeId, maxAdapters, System.currentTimeMillis(), live,
            PENDING_TTL_MS);
        if (r.outcome() == AdapterRecords.Outcome.EXISTS) {
            throw new AdapterConflictException("adapter '" + name + "' already exists");
        }
        if (r.outcome() == AdapterRecords.Outcome.QUOTA) {
            throw new AdapterQuotaException("tenant " + tenant + " already has " + r.owned() + " adapters, its max_adapters is "
                + maxAdapters + "; delete one before uploading another", maxAdapters);
        }
        AdapterKey key = AdapterKey.of(tenant, name);
        AdapterInfo info = null;
        boolean copied = false;
        boolean done = false;
        try {
            if (local.get(key).isPresent()) { // a copy the cluster does not know (its upload failed half-way): a leftover
                local.delete(tenant, name);
            }
            info = local.register(tenant, name, configFile, tensorsFile, 0);
            List<String> holders = new ArrayList<>(List.of(nodeId));
            copied = true; // from here a peer may hold a copy, even if its answer never arrives
            String peer = replicate(info);
            if (peer != null) {
                holders.add(peer);
            }
            if (!records.complete(tenant, name, reservation, AdapterRecord.ready(info, holders))) {
                throw new ApiError(503, "unavailable", "the upload of adapter '" + name + "' lost its hold on the name (this node"
                    + " was out of the cluster for a while); nothing was kept: upload it again", "name", "adapter_upload_expired");
            }
            done = true;
        } finally {
            if (!done) {
                undo(tenant, name, reservation, info != null, copied);
            }
        }
        reconcileEverywhere(tenant, name); // a stale copy of the name elsewhere goes, and no tier keeps older weights
        return info;
    }

    private void undo(String tenant, String name, String reservation, boolean registered, boolean copied) {
        try {
            records.abort(tenant, name, reservation);
            if (registered) {
                local.delete(tenant, name);
            }
            if (copied) {
                reconcileEverywhere(tenant, name); // the record is gone: a peer that made a copy drops it
            }
        } catch (RuntimeException e) {
            LOG.warn("cleaning up after the failed upload of adapter {}/{}: {}", tenant, name, e.toString());
        }
    }

    /**
     * Has one other node pull a copy of {@code info}; its node id, or null when this node is
     * alone in the cluster. Peers are tried in an order that depends on the adapter (rendezvous
     * hashing), nodes that are not draining first, until one holds it or the replica timeout passes.
     */
    private String replicate(AdapterInfo info) {
        long deadline = System.nanoTime() + replicaTimeout.toNanos();
        String last = "no other node has published its address yet";
        Set<String> warned = new HashSet<>();
        while (true) {
            if (hz.getCluster().getMembers().size() < 2) {
                return null; // alone: an upload is stored as on a single node
            }
            for (NodeState peer : peers(info.key())) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                try {
                    String id = files.replicateTo(peer.address(), info.tenant(), info.name(), info.sha256(), info.created(), address,
                        Duration.ofNanos(left));
                    LOG.info("adapter {} copied to node {}", info.key(), id);
                    return id;
                } catch (UncheckedIOException e) {
                    last = "node " + peer.nodeId() + ": " + e.getCause().getMessage();
                    if (warned.add(peer.nodeId())) { // once per peer: the loop retries every 200 ms
                        LOG.warn("could not copy adapter {} to node {} (retrying until {} s have passed): {}", info.key(), peer.nodeId(),
                            replicaTimeout.toSeconds(), e.getCause().getMessage());
                    }
                }
            }
            if (System.nanoTime() >= deadline) {
                throw new ApiError(503, "unavailable", "adapter '" + info.name() + "' could not be copied to a second node within "
                    + replicaTimeout.toSeconds() + " s (" + last + "); nothing was kept: upload it again", null,
                    "adapter_replica_unavailable");
            }
            sleep(200);
        }
    }

    /** The other live nodes with an address, not draining first, then in rendezvous order for {@code key}. */
    private List<NodeState> peers(AdapterKey key) {
        return member.nodes().stream()
            .filter(n -> !n.nodeId().equals(nodeId) && n.address() != null)
            .sorted(Comparator.comparing(NodeState::draining).thenComparingLong(n -> rendezvous(key, n.nodeId())))
            .toList();
    }

    private static long rendezvous(AdapterKey key, String node) {
        long h = 1125899906842597L;
        for (char c : (key + "\u0000" + node).toCharArray()) {
            h = 31 * h + c;
        }
        h ^= h >>> 33; // a few mixing rounds (the murmur3 finaliser) so that similar names spread
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        return h;
    }

    /**
     * Deletes the tenant's adapter: its record goes first (from then on every node answers 404),
     * then every member drops its copy and forgets it in its tiers; returns once all have answered
     * (or {@link #RECONCILE_WAIT} passed: a member that did not answer drops its copy when it
     * rejoins).
     */
    @Override
    public boolean delete(String tenant, String name) {
        if (records.remove(tenant, name).isEmpty()) {
            return false;
        }
        reconcileEverywhere(tenant, name);
        return true;
    }

    @Override
    public Path newStagingDirectory() {
        return local.newStagingDirectory();
    }

    @Override
    public void discardStaging(Path staging) {
        local.discardStaging(staging);
    }

    private AdapterInfo info(String tenant, AdapterRecord r) {
        Optional<AdapterInfo> copy = local.get(AdapterKey.of(tenant, r.name()));
        return copy.isPresent() && r.sha256().equals(copy.get().sha256()) ? copy.get() : r.info(tenant, null);
    }

    // ---- the tiers' loads -----------------------------------------------------------------------

    /**
     * The adapter under {@code key} with its files here, for the tiers to read (blocks: it runs on
     * the tiers' loader thread). A system adapter is this node's; an uploaded one must be ready in
     * the cluster's records, and when this node has no copy of that content it pulls one from a
     * holder (then from any other node), verifies it and becomes a holder itself. Empty when the
     * adapter no longer exists.
     *
     * @throws AdapterLoadException no node could send a valid copy
     */
    public Optional<AdapterInfo> materialize(AdapterKey key) {
        if (key.system()) {
            return local.get(key);
        }
        Optional<AdapterRecord> rec = records.ready(key.tenant(), key.name());
        if (rec.isEmpty()) {
            return Optional.empty();
        }
        AdapterRecord r = rec.get();
        Optional<AdapterInfo> here = local.get(key);
        if (here.isPresent() && r.sha256().equals(here.get().sha256())) {
            return here;
        }
        List<String> failures = new ArrayList<>();
        for (NodeState source : sources(r)) {
            AdapterInfo copy;
            try {
                copy = files.pull(source.address(), key.tenant(), key.name(), r.sha256(), r.created(), TRANSFER_TIMEOUT);
            } catch (UncheckedIOException | AdapterValidationException | AdapterConflictException e) {
                String why = e instanceof UncheckedIOException u ? u.getCause().getMessage() : e.getMessage();
                failures.add(source.nodeId() + ": " + why);
                LOG.warn("could not fetch adapter {} from node {}: {}", key, source.nodeId(), why);
                continue;
            }
            if (!records.addHolder(key.tenant(), key.name(), r.sha256(), nodeId)) { // deleted or replaced while we fetched
                local.get(key).filter(c -> r.sha256().equals(c.sha256())).ifPresent(c -> local.delete(key.tenant(), key.name()));
                return Optional.empty();
            }
            LOG.info("adapter {} fetched from node {} on first use", key, source.nodeId());
            return Optional.of(copy);
        }
        throw new AdapterLoadException("adapter " + key + " is in the cluster but no node could send a copy: "
            + (failures.isEmpty() ? "no other node is up" : String.join("; ", failures)), null);
    }

    /** Nodes to pull {@code r}'s files from: its live holders first, then every other live node. */
    private List<NodeState> sources(AdapterRecord r) {
        List<NodeState> holders = new ArrayList<>();
        List<NodeState> others = new ArrayList<>();
        for (NodeState n : member.nodes()) {
            if (n.nodeId().equals(nodeId) || n.address() == null) {
                continue;
            }
            (r.holders().contains(n.nodeId()) ? holders : others).add(n);
        }
        holders.sort(Comparator.comparingInt(n -> r.holders().indexOf(n.nodeId())));
        holders.addAll(others);
        return holders;
    }

    // ---- keeping copies and tiers in step with the records ------------------------------------

    /**
     * Brings this node in step with the record of {@code tenant/name}: forgets the adapter in the
     * host and device tiers (a request loads it afresh), and drops this node's copy unless the
     * record is ready with the same content or an upload of the name is in progress.
     */
    void reconcileLocal(String tenant, String name) {
        AdapterKey key = AdapterKey.of(tenant, name);
        Optional<AdapterRecord> rec = records.get(tenant, name);
        forget.accept(key);
        Optional<AdapterInfo> copy = local.get(key);
        if (copy.isPresent()) {
            boolean keep = rec.isPresent() && (!rec.get().ready() || rec.get().sha256().equals(copy.get().sha256()));
            if (!keep) {
                local.delete(tenant, name);
                LOG.info("adapter {}: this node's copy dropped ({})", key, rec.isEmpty() ? "deleted" : "replaced by another upload");
            }
        }
    }

    /** Runs {@link #reconcileLocal} on every member (this one included) and waits for their answers, at most {@link #RECONCILE_WAIT}. */
    private void reconcileEverywhere(String tenant, String name) {
        Map<Member, Future<Boolean>> answers = hz.getExecutorService(EXECUTOR).submitToAllMembers(new Reconcile(tenant, name));
        long deadline = System.nanoTime() + RECONCILE_WAIT.toNanos();
        for (Map.Entry<Member, Future<Boolean>> a : answers.entrySet()) {
            try {
                if (!a.getValue().get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                    LOG.debug("member {} is still starting; it reconciles adapter {}/{} when it merges its copies", a.getKey(), tenant, name);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (Exception e) { // it left, or did not answer in time: it catches up when it (re)joins
                LOG.warn("member {} did not confirm it dropped adapter {}/{}: {}", a.getKey(), tenant, name, e.toString());
            }
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ApiError(503, "unavailable", "interrupted", null, null);
        }
    }

    /** {@link #reconcileLocal} as a task Hazelcast runs on each member; false where no catalog is up yet. */
    static final class Reconcile implements Callable<Boolean>, Serializable, HazelcastInstanceAware {
        private static final long serialVersionUID = 1L;
        private final String tenant;
        private final String name;
        private transient HazelcastInstance hz;

        Reconcile(String tenant, String name) {
            this.tenant = tenant;
            this.name = name;
        }

        @Override
        public void setHazelcastInstance(HazelcastInstance hz) {
            this.hz = hz;
        }

        @Override
        public Boolean call() {
            if (!(hz.getUserContext().get(CONTEXT_KEY) instanceof ClusterAdapters adapters)) {
                return false;
            }
            adapters.reconcileLocal(tenant, name);
            return true;
        }
    }
}
