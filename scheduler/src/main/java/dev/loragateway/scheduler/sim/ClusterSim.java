package dev.loragateway.scheduler.sim;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;
import dev.loragateway.scheduler.placement.Decision;
import dev.loragateway.scheduler.placement.Placement;
import dev.loragateway.scheduler.placement.Placements;
import dev.loragateway.scheduler.workload.TraceRequest;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * A discrete-event simulation of a cluster of {@link SimNode}s under a request trace, placed by
 * the scheduler's own {@link Placement} over {@link NodeState}s built from the simulated engines.
 *
 * <p>What it models of the real cluster: every request enters through a front node and is placed
 * at its arrival with the nodes' states at that instant (the real ones are at most one publish
 * old, and a front node counts what it placed since, so the difference is small); a request no
 * node has room for waits at the cluster in arrival order and is placed again whenever a request
 * finishes anywhere (the real front node waits in per-tenant fair order: with tenants of similar
 * load the two agree); a sequence a node would preempt goes to another node with room instead
 * (migration, reason {@code kv}), as every request of a cluster of more than one node is treated
 * as forwarded. The front node's hop (a few ms on a LAN) is not charged.
 *
 * <p>Speed: placement sees only the nodes that can win ({@link Candidates}), a node's
 * {@code NodeState} is rebuilt only when it changed since the last placement that read it, and
 * per-node numbers live in primitive arrays.
 */
public final class ClusterSim {
    /**
     * @param nodes       nodes in the cluster
     * @param policy      placement policy name
     * @param profile     step-time model and node capacities ({@link Profile#node})
     * @param migrate     move a sequence off a node whose KV pool ran dry when another has room
     * @param sloTtftP99  seconds (NaN: none)
     * @param sloTpotP99  seconds (NaN: none)
     */
    public record Options(int nodes, String policy, Profile profile, boolean migrate, double sloTtftP99, double sloTpotP99) {
        public Options {
            if (nodes < 1) {
                throw new IllegalArgumentException("--nodes must be >= 1, got " + nodes);
            }
            if (nodes > (1 << 22)) {
                throw new IllegalArgumentException("--nodes must be <= " + (1 << 22) + ", got " + nodes);
            }
            Placements.byName(policy); // names the allowed ones when unknown
        }
    }

    private static final long STEP = 0;
    private static final long LOAD = 1;
    private static final long WAKE = 2;

    private final Options opts;
    private final NodeConfig cfg;
    private final SimNode[] nodes;
    private final Placement placement;
    private final String[] ids;
    private final Map<String, Integer> indexOf = new HashMap<>();
    private final NodeState[] states;
    private final boolean[] stale;
    private final int[] load;
    private final int[] freeKv;
    private final boolean[] busy;
    private final int[] picks;
    private final Map<String, Integer> adapterIds = new HashMap<>();
    private final List<String> adapterKeys = new ArrayList<>();
    private final List<BitSet> residentOn = new ArrayList<>();
    private final List<BitSet> warmOn = new ArrayList<>();
    private final Map<Integer, long[]> weights = new HashMap<>();
    /** Per node: adapter keys in its device slots and host tier, and immutable copies for its NodeState (null when changed). */
    private final List<Set<String>> residentKeys = new ArrayList<>();
    private final List<Set<String>> warmKeys = new ArrayList<>();
    private final Set<String>[] residentView;
    private final Set<String>[] warmView;
    private final EventHeap heap = new EventHeap();
    private final ArrayDeque<SimRequest> clusterQueue = new ArrayDeque<>();
    private double now;
    private int lastPick = -1;
    private boolean roomFreed;

    private int busyCount;
    private int busyPeak;
    private double busyArea;
    private double lastBusyChange;
    private Timeline timeline;

    private float[] ttft;
    private float[] e2e;
    private float[] tpot;
    private int completed;
    private int withTpot;
    private long outputTokens;
    private double firstArrival = Double.NaN;
    private double lastFinish;
    private long migrated;

    public ClusterSim(Options opts) {
        this.opts = opts;
        this.cfg = opts.profile().node();
        int n = opts.nodes();
        this.nodes = new SimNode[n];
        this.placement = Placements.byName(opts.policy());
        this.ids = new String[n];
        this.states = new NodeState[n];
        this.stale = new boolean[n];
        this.load = new int[n];
        this.freeKv = new int[n];
        this.busy = new boolean[n];
        this.picks = new int[n + 3 * (cfg.maxBatch() + 1)];
        @SuppressWarnings("unchecked")
        Set<String>[] rv = new Set[n];
        @SuppressWarnings("unchecked")
        Set<String>[] wv = new Set[n];
        this.residentView = rv;
        this.warmView = wv;
        int width = Math.max(4, Integer.toString(n - 1).length());
        for (int i = 0; i < n; i++) {
            nodes[i] = new SimNode(i, cfg, opts.profile(), this);
            ids[i] = String.format("node-%0" + width + "d", i);
            indexOf.put(ids[i], i);
            stale[i] = true;
            freeKv[i] = cfg.kvBlocks();
            residentKeys.add(new HashSet<>());
            warmKeys.add(new HashSet<>());
        }
    }

    /** Node {@code i}'s id: {@code node-0000}, ... (ids sort as indexes). */
    String id(int i) {
        return ids[i];
    }

    double now() {
        return now;
    }

    /**
     * The fewest nodes, 1 to {@code maxNodes}, for which {@code meetsSlo} holds, by bisection (assumes
     * more nodes never hurt); −1 when even {@code maxNodes} does not meet it. {@code meetsSlo} runs
     * one simulation per call, e.g. {@code n -> new ClusterSim(opts with n nodes).run(...).sloMet()}.
     */
    public static int fewestNodes(int maxNodes, java.util.function.IntPredicate meetsSlo) {
        if (maxNodes < 1 || !meetsSlo.test(maxNodes)) {
            return -1;
        }
        int lo = 1;
        int hi = maxNodes;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (meetsSlo.test(mid)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return hi;
    }

    /**
     * Runs the first {@code requests} requests of {@code trace} (arrival times ascending) to the end.
     *
     * @param expectedSeconds a guess of the trace's length, for the busy-over-time buckets (they widen as needed)
     */
    public SimResult run(Iterator<TraceRequest> trace, int requests, double expectedSeconds) {
        long started = System.nanoTime();
        ttft = new float[requests];
        e2e = new float[requests];
        tpot = new float[requests];
        timeline = new Timeline(Math.max(expectedSeconds, 1e-3) * 1.25 / Timeline.BUCKETS);
        int taken = 0;
        int refused = 0;
        TraceRequest next = requests > 0 && trace.hasNext() ? trace.next() : null;
        while (true) {
            if (next != null && (heap.isEmpty() || next.arrivalSeconds() <= heap.peekTime())) {
                now = Math.max(now, next.arrivalSeconds());
                if (Double.isNaN(firstArrival)) {
                    firstArrival = now;
                }
                if (!arrive(next, taken)) {
                    refused++;
                }
                taken++;
                next = taken < requests && trace.hasNext() ? trace.next() : null;
            } else if (!heap.isEmpty()) {
                double t = heap.peekTime();
                long e = heap.peekEvent();
                heap.poll();
                now = t;
                dispatch(e);
            } else {
                break;
            }
            if (roomFreed) {
                roomFreed = false;
                drainClusterQueue();
            }
        }
        touchBusy(now); // close the last interval
        return result(taken, refused, (System.nanoTime() - started) / 1e9);
    }

    // ---- arrivals and placement -----------------------------------------------------------------

    private boolean arrive(TraceRequest t, int id) {
        int adapter = -1;
        String key = null;
        if (t.adapter() != null) {
            key = t.tenant() + "/" + t.adapter();
            adapter = adapterIds.computeIfAbsent(key, k -> {
                adapterKeys.add(k);
                residentOn.add(new BitSet());
                warmOn.add(new BitSet());
                return adapterKeys.size() - 1;
            });
        }
        SimRequest r = new SimRequest(id, t.tenant(), adapter, key, t.promptTokens(), t.outputTokens(), t.arrivalSeconds());
        if (cfg.blocksFor(r.len + r.remaining()) > cfg.kvBlocks()) {
            return false; // no node could ever hold it (Placements.couldEverTake): the engine would refuse it
        }
        int at = place(r, -1);
        if (at >= 0) {
            nodes[at].enqueue(r, now);
            touch(at);
        } else {
            clusterQueue.addLast(r);
        }
        return true;
    }

    private void drainClusterQueue() {
        while (!clusterQueue.isEmpty()) {
            SimRequest r = clusterQueue.peekFirst();
            int at = place(r, -1);
            if (at < 0) {
                return;
            }
            clusterQueue.pollFirst();
            nodes[at].enqueue(r, now);
            touch(at);
        }
    }

    /** The node the real policy picks for {@code r} (never {@code exclude}), or −1 when none has room. */
    int place(SimRequest r, int exclude) {
        int kvNeed = cfg.blocksFor(r.len + r.remaining());
        BitSet res = r.adapter < 0 ? null : residentOn.get(r.adapter);
        BitSet warm = r.adapter < 0 ? null : warmOn.get(r.adapter);
        long[] w = r.adapter >= 0 && opts.policy().equals("adapter-affinity") ? weights(r.adapter) : null;
        int count = Candidates.select(opts.policy(), nodes.length, load, freeKv, cfg.maxBatch(), kvNeed, res, warm,
            lastPick, w, exclude, picks);
        if (count == 0) {
            return -1;
        }
        List<NodeState> passed = new ArrayList<>(count);
        for (int c = 0; c < count; c++) {
            passed.add(state(picks[c]));
        }
        Optional<Decision> d = placement.place(new PlacementRequest(r.tenant, r.adapterKey, r.len, r.remaining(), 1), passed);
        if (d.isEmpty()) {
            return -1;
        }
        int at = indexOf.get(d.get().nodeId());
        lastPick = at;
        return at;
    }

    private long[] weights(int adapter) {
        long[] w = weights.get(adapter);
        if (w == null) {
            w = new long[nodes.length];
            String key = adapterKeys.get(adapter);
            for (int i = 0; i < w.length; i++) {
                w[i] = Placements.rendezvousWeight(key, ids[i]);
            }
            if ((long) weights.size() * nodes.length < 50_000_000L) { // cache up to 400 MB of weights
                weights.put(adapter, w);
            }
        }
        return w;
    }

    private NodeState state(int i) {
        if (stale[i] || states[i] == null) {
            SimNode n = nodes[i];
            states[i] = new NodeState(ids[i], "sim://" + ids[i], "sim", n.running(), n.queued(), cfg.maxBatch(),
                n.publishedFreeKv(), cfg.kvBlocks(), cfg.blockSize(), view(residentView, residentKeys, i), view(warmView, warmKeys, i),
                0, false, 0);
            stale[i] = false;
        }
        return states[i];
    }

    /** The node's keys as an immutable set, copied only after they changed (NodeState keeps an immutable set as it is). */
    private static Set<String> view(Set<String>[] views, List<Set<String>> keys, int node) {
        if (views[node] == null) {
            views[node] = Set.copyOf(keys.get(node));
        }
        return views[node];
    }

    // ---- events ---------------------------------------------------------------------------------

    void scheduleStepEnd(int node, double at, long version) {
        heap.add(at, STEP << 60 | (long) node << 36 | (version & ((1L << 36) - 1)));
    }

    void scheduleLoadDone(int node, int adapter, double at) {
        heap.add(at, LOAD << 60 | (long) node << 36 | adapter);
    }

    void scheduleWake(int node, double at) {
        heap.add(at, WAKE << 60 | (long) node << 36);
    }

    private void dispatch(long e) {
        int kind = (int) (e >>> 60);
        int node = (int) ((e >>> 36) & ((1L << 24) - 1));
        long value = e & ((1L << 36) - 1);
        SimNode n = nodes[node];
        if (kind == STEP) {
            if (!n.stepping || (n.version & ((1L << 36) - 1)) != value) {
                return; // a segment cut short since: a newer end is scheduled
            }
            n.endStep(now);
        } else if (kind == LOAD) {
            n.loadDone((int) value, now);
        } else {
            n.wake(now);
        }
        touch(node);
    }

    /** Node {@code i} changed: its published numbers, its cached state, and whether it is busy. */
    private void touch(int i) {
        SimNode n = nodes[i];
        int l = n.running() + n.queued();
        if (l < load[i]) {
            roomFreed = true;
        }
        load[i] = l;
        freeKv[i] = n.publishedFreeKv();
        stale[i] = true;
        boolean b = n.busy();
        if (b != busy[i]) {
            touchBusy(now);
            busy[i] = b;
            busyCount += b ? 1 : -1;
            busyPeak = Math.max(busyPeak, busyCount);
            timeline.add(now, now, busyCount);
        }
    }

    private void touchBusy(double t) {
        if (t > lastBusyChange) {
            timeline.add(lastBusyChange, t, busyCount);
            busyArea += busyCount * (t - lastBusyChange);
            lastBusyChange = t;
        }
    }

    // ---- callbacks from nodes -------------------------------------------------------------------

    void resident(int node, int adapter, boolean on) {
        residentOn.get(adapter).set(node, on);
        if (on) {
            residentKeys.get(node).add(adapterKeys.get(adapter));
        } else {
            residentKeys.get(node).remove(adapterKeys.get(adapter));
        }
        residentView[node] = null;
        stale[node] = true;
    }

    void warm(int node, int adapter, boolean on) {
        warmOn.get(adapter).set(node, on);
        if (on) {
            warmKeys.get(node).add(adapterKeys.get(adapter));
        } else {
            warmKeys.get(node).remove(adapterKeys.get(adapter));
        }
        warmView[node] = null;
        stale[node] = true;
    }

    /** Node {@code from} would preempt {@code r}: true when another node with room took it. */
    boolean moveAway(SimRequest r, int from) {
        if (!opts.migrate() || nodes.length == 1) {
            return false;
        }
        touch(from);
        int at = place(r, from);
        if (at < 0) {
            return false;
        }
        migrated++;
        nodes[at].enqueue(r, now);
        touch(at);
        return true;
    }

    void finished(SimRequest r, double at) {
        ttft[completed] = (float) (r.firstToken - r.arrival);
        e2e[completed] = (float) (at - r.arrival);
        if (r.generated > 1) {
            tpot[withTpot++] = (float) ((r.lastToken - r.firstToken) / (r.generated - 1));
        }
        completed++;
        outputTokens += r.generated;
        lastFinish = Math.max(lastFinish, at);
        roomFreed = true;
    }

    // ---- the result -----------------------------------------------------------------------------

    private SimResult result(int requests, int refused, double wall) {
        double start = Double.isNaN(firstArrival) ? 0 : firstArrival;
        double seconds = Math.max(lastFinish - start, 1e-9);
        long host = 0;
        long disk = 0;
        long preempt = 0;
        long steps = 0;
        for (SimNode n : nodes) {
            host += n.hostLoads;
            disk += n.diskLoads;
            preempt += n.preemptions;
            steps += n.steps;
        }
        double t50 = pct(ttft, completed, 50);
        double t99 = pct(ttft, completed, 99);
        double tp99 = pct(tpot, withTpot, 99);
        boolean met = completed == requests - refused && completed > 0
            && (Double.isNaN(opts.sloTtftP99()) || t99 <= opts.sloTtftP99())
            && (Double.isNaN(opts.sloTpotP99()) || !(tp99 > opts.sloTpotP99()));
        double busyMean = lastBusyChange > start ? busyArea / (lastBusyChange - start) : 0;
        return new SimResult(opts.policy(), nodes.length, requests, completed, refused, seconds, completed / seconds,
            outputTokens / seconds, t50, t99, pct(e2e, completed, 50), pct(e2e, completed, 99), tp99, busyMean, busyPeak,
            met, met ? busyPeak : -1, host, disk, migrated, preempt, steps, wall, timeline.width(),
            timeline.means());
    }

    /** Nearest-rank percentile of the first {@code n} values (sorts them); NaN when empty. */
    static double pct(float[] v, int n, double p) {
        if (n == 0) {
            return Double.NaN;
        }
        Arrays.sort(v, 0, n);
        int rank = (int) Math.ceil(p / 100.0 * n);
        return v[Math.max(0, Math.min(n - 1, rank - 1))];
    }
}
