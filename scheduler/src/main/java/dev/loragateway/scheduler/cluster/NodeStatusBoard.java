package dev.loragateway.scheduler.cluster;

import com.hazelcast.cluster.Member;
import com.hazelcast.cluster.MembershipEvent;
import com.hazelcast.cluster.MembershipListener;
import com.hazelcast.core.EntryEvent;
import com.hazelcast.core.EntryListener;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.LifecycleEvent;
import com.hazelcast.map.MapEvent;
import com.hazelcast.replicatedmap.ReplicatedMap;
import dev.loragateway.scheduler.NodeState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Supplier;

/**
 * The node-status map and this node's publisher: every {@code refresh} (≤ 200 ms) and on
 * {@link #publishNow()} it puts {@code local.get()} under its node id with a TTL; a membership
 * listener removes a departed member's entry at once, and {@link #nodes()} hides entries of members
 * no longer in the member list even before that removal has replicated.
 *
 * <p>Why a {@link ReplicatedMap} and not an {@code IMap}: placement reads every node's state for
 * every request, and a replicated map holds a full copy on every member, so {@link #nodes()} is a
 * local read; an {@code IMap} would fetch from the partition owners (a network hop per placement)
 * unless fronted by a near cache. The replicated map is eventually consistent (writes propagate
 * asynchronously), which is what a status refreshed 5 times a second needs, and the loss of a
 * member loses nothing that matters: its status is meant to vanish with it. The TTL
 * ({@code ttl}, 2 s by default) is the backstop for an entry whose removal was missed.
 */
final class NodeStatusBoard implements ClusterView {

    static final String MAP_NAME = "lora-gateway.node-status";
    /** Member attribute carrying the node id, so a membership event names the entry to remove. */
    static final String NODE_ID_ATTRIBUTE = "lora-gateway.node-id";

    private static final Logger LOG = LoggerFactory.getLogger(NodeStatusBoard.class);

    private final HazelcastInstance hz;
    private final String localNodeId;
    private final Supplier<NodeState> local;
    private final long ttlMillis;
    private final ReplicatedMap<String, NodeState> map;
    private final List<Runnable> listeners = new CopyOnWriteArrayList<>();
    private final AtomicBoolean publishPending = new AtomicBoolean();
    private final ScheduledExecutorService publisher;

    NodeStatusBoard(HazelcastInstance hz, String localNodeId, Supplier<NodeState> local, Duration refresh,
                    Duration ttl) {
        this.hz = hz;
        this.localNodeId = localNodeId;
        this.local = local;
        this.ttlMillis = ttl.toMillis();
        this.map = hz.getReplicatedMap(MAP_NAME);
        map.addEntryListener(new ChangeListener());
        hz.getCluster().addMembershipListener(new DepartureListener());
        publish(); // synchronously: this node is in the view when start returns; a bad supplier fails start
        this.publisher = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "node-status-publisher-" + localNodeId);
            t.setDaemon(true);
            return t;
        });
        long period = refresh.toMillis();
        publisher.scheduleAtFixedRate(this::publishQuietly, period, period, TimeUnit.MILLISECONDS);
        // a member that stops (terminated, or shut down by Hazelcast itself) stops publishing too
        hz.getLifecycleService().addLifecycleListener(event -> {
            if (event.getState() == LifecycleEvent.LifecycleState.SHUTTING_DOWN
                || event.getState() == LifecycleEvent.LifecycleState.SHUTDOWN) {
                publisher.shutdownNow();
            }
        });
    }

    /** True while the periodic publisher runs (false once closed or the member has stopped). */
    boolean publishing() {
        return !publisher.isShutdown();
    }

    /** Publishes this node's state soon (on the publisher thread); calls made while one waits coalesce. */
    void publishNow() {
        if (publishPending.compareAndSet(false, true)) {
            try {
                publisher.execute(() -> {
                    publishPending.set(false);
                    publishQuietly();
                });
            } catch (java.util.concurrent.RejectedExecutionException closed) {
                publishPending.set(false);
            }
        }
    }

    private void publishQuietly() {
        try {
            publish();
        } catch (RuntimeException e) {
            // a periodic task that throws is never run again: log and keep the schedule
            if (hz.getLifecycleService().isRunning()) {
                LOG.warn("node status of {} not published: {}", localNodeId, e.toString());
            }
        }
    }

    private void publish() {
        NodeState state = local.get();
        if (!localNodeId.equals(state.nodeId())) {
            throw new IllegalStateException("node state names node '" + state.nodeId() + "' but this node is '"
                + localNodeId + "'");
        }
        map.put(localNodeId, state, ttlMillis, TimeUnit.MILLISECONDS);
    }

    @Override
    public String localNodeId() {
        return localNodeId;
    }

    @Override
    public Set<String> memberIds() {
        Set<String> live = new HashSet<>();
        for (Member m : hz.getCluster().getMembers()) {
            String id = m.getAttribute(NODE_ID_ATTRIBUTE);
            if (id != null) {
                live.add(id);
            }
        }
        return live;
    }

    @Override
    public List<NodeState> nodes() {
        Set<String> live = memberIds();
        return map.values().stream()
            .filter(s -> live.contains(s.nodeId()))
            .sorted(Comparator.comparing(NodeState::nodeId))
            .toList();
    }

    @Override
    public void addListener(Runnable onChange) {
        listeners.add(onChange);
    }

    /** Stops publishing and removes this node's entry (a graceful leave: others need not wait). */
    void close() {
        publisher.shutdownNow();
        try {
            if (hz.getLifecycleService().isRunning()) {
                map.remove(localNodeId);
            }
        } catch (RuntimeException e) {
            LOG.debug("node status of {} not removed on close: {}", localNodeId, e.toString());
        }
    }

    private void changed() {
        for (Runnable r : listeners) {
            try {
                r.run();
            } catch (RuntimeException e) {
                LOG.warn("cluster view listener failed: {}", e.toString());
            }
        }
    }

    private final class DepartureListener implements MembershipListener {
        @Override
        public void memberAdded(MembershipEvent event) {
            changed();
        }

        @Override
        public void memberRemoved(MembershipEvent event) {
            String id = event.getMember().getAttribute(NODE_ID_ATTRIBUTE);
            if (id != null && !id.equals(localNodeId)) {
                try {
                    map.remove(id); // every survivor does this; removing twice is harmless
                } catch (RuntimeException e) {
                    LOG.debug("status of departed node {} not removed: {}", id, e.toString());
                }
                LOG.info("node {} left the cluster ({})", id, event.getMember().getAddress());
            }
            changed();
        }
    }

    private final class ChangeListener implements EntryListener<String, NodeState> {
        @Override
        public void entryAdded(EntryEvent<String, NodeState> event) {
            changed();
        }

        @Override
        public void entryUpdated(EntryEvent<String, NodeState> event) {
            changed();
        }

        @Override
        public void entryRemoved(EntryEvent<String, NodeState> event) {
            changed();
        }

        @Override
        public void entryEvicted(EntryEvent<String, NodeState> event) {
            changed();
        }

        @Override
        public void entryExpired(EntryEvent<String, NodeState> event) {
            changed();
        }

        @Override
        public void mapCleared(MapEvent event) {
            changed();
        }

        @Override
        public void mapEvicted(MapEvent event) {
            changed();
        }
    }
}
