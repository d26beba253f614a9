package dev.loragateway.scheduler.sim;

import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.FairQueue;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One node's engine, simulated: the rules of {@code StepPlanner} and {@code DeviceTier} with time
 * taken from a {@link Profile} instead of a forward pass.
 *
 * <ul>
 *   <li>Admission between steps: preempted sequences first (oldest first), then new requests in
 *       the engine's own {@link FairQueue} (per-tenant deficit round-robin over tokens, quantum
 *       {@link Engine#QUANTUM}), skipping requests whose adapter is not in a slot yet; a request is
 *       admitted when the batch has a place and its prompt's blocks plus a 1 % watermark are free.</li>
 *   <li>A step: one row per running decode, then prompt chunks, oldest first, up to
 *       {@code maxStepTokens − decodes} rows (at least one block's worth); a row that completes its
 *       sequence's positions samples a token. Blocks are taken as rows need them; when the pool
 *       runs dry the newest sequence is preempted (blocks freed, recomputed later from prompt plus
 *       tokens made) or, in a cluster, moved to another node with room (reason {@code kv}).</li>
 *   <li>Adapters: device slots with pins and least-recently-used eviction of unpinned ones; a
 *       missing adapter is loaded on one loader (host tier hit: {@code hostLoadMs}, else
 *       {@code diskLoadMs}, after which the host tier holds it, least recently used leaving first);
 *       a loaded adapter waits for a slot while every slot is pinned.</li>
 * </ul>
 *
 * <p>Speed: steps that hold only decodes repeat identically until a sequence finishes, so they run
 * as one segment of k steps (one event), cut short at the next step boundary when work arrives
 * (with a profile's attention term each step of a segment takes the segment's mean step time). A
 * segment takes the KV blocks of all its steps when it starts (so it never runs dry halfway) but
 * publishes the free blocks of its first step, as the real node's state, published at most 200 ms
 * earlier, would show them.
 */
final class SimNode {
    private enum Tier { LOADING, WAITING, RESIDENT }

    private static final class Slot {
        Tier state = Tier.LOADING;
        int pins;
        long lastUse;
    }

    final int index;
    final NodeConfig cfg;
    private final Profile profile;
    private final ClusterSim sim;

    final List<SimRequest> active = new ArrayList<>();      // by admission order
    final List<SimRequest> preempted = new ArrayList<>();   // by admission order
    final FairQueue<SimRequest> waiting;
    private final FairQueue.Gate<SimRequest> gate;
    private final List<SimRequest> planned = new ArrayList<>();
    int kvFree;
    /** Whole-life KV blocks of the new requests waiting here: a front node counts them against the node. */
    int waitingBlocks;
    /** Blocks the running segment took ahead for its later steps (published as free: the real pool takes them step by step). */
    private int takenAhead;
    private long nextOrder;

    boolean stepping;
    boolean wakePending;
    private double segStart;
    private double dt;
    private int k;
    private boolean decodeSegment;
    long version;

    private final Map<Integer, Slot> slots = new HashMap<>();
    private int resident;
    private final ArrayDeque<Integer> waitingForSlot = new ArrayDeque<>();
    private double loaderFreeAt;
    private long clock;
    private final LinkedHashMap<Integer, Boolean> host = new LinkedHashMap<>(16, 0.75f, true);

    long steps;
    long preemptions;
    long hostLoads;
    long diskLoads;

    SimNode(int index, NodeConfig cfg, Profile profile, ClusterSim sim) {
        this.index = index;
        this.cfg = cfg;
        this.profile = profile;
        this.sim = sim;
        this.kvFree = cfg.kvBlocks();
        this.waiting = new FairQueue<>(Engine.QUANTUM, r -> r.tenant, SimRequest::cost, r -> false);
        this.gate = new FairQueue.Gate<>() {
            @Override
            public boolean ready(SimRequest r) {
                return SimNode.this.ready(r);
            }

            @Override
            public void release(SimRequest r) {
                unpin(r);
            }

            @Override
            public void dropped(SimRequest r) {
                unpin(r);
            }
        };
    }

    int running() {
        return active.size();
    }

    int queued() {
        return waiting.size() + preempted.size();
    }

    boolean busy() {
        return !active.isEmpty() || waiting.size() > 0 || !preempted.isEmpty();
    }

    /** Free KV blocks as a front node sees them: the pool's, less what requests placed here and not yet admitted will take. */
    int publishedFreeKv() {
        return Math.max(0, kvFree + takenAhead - waitingBlocks);
    }

    boolean isResident(int adapter) {
        Slot s = slots.get(adapter);
        return s != null && s.state == Tier.RESIDENT;
    }

    /** A placed request joins this node's queue; the engine sees it at its next step boundary. */
    void enqueue(SimRequest r, double now) {
        r.node = index;
        r.computed = 0;
        r.blocks = 0;
        r.rows = 0;
        waiting.add(r);
        waitingBlocks += cfg.blocksFor(r.len + r.remaining());
        if (r.adapter >= 0 && !isResident(r.adapter) && !slots.containsKey(r.adapter)) {
            startLoad(r.adapter, now); // the engine's first tryPin starts the load; starting it here is the same instant
        }
        interrupt(now);
    }

    /** Something changed that the engine would see at its next step boundary: end the running segment there. */
    void interrupt(double now) {
        if (!stepping) {
            if (!wakePending) {
                wakePending = true;
                sim.scheduleWake(index, now);
            }
            return;
        }
        if (k > 1) {
            int done = (int) Math.floor((now - segStart) / dt) + 1; // the step under way finishes
            if (done < k) {
                k = Math.max(done, 1);
                sim.scheduleStepEnd(index, segStart + k * dt, ++version);
            }
        }
    }

    void wake(double now) {
        wakePending = false;
        if (!stepping) {
            beginStep(now);
        }
    }

    // ---- admission ------------------------------------------------------------------------------

    private boolean ready(SimRequest r) {
        if (r.adapter < 0 || r.pinned) {
            return true;
        }
        Slot s = slots.get(r.adapter);
        if (s == null) {
            startLoad(r.adapter, sim.now());
            return false;
        }
        if (s.state != Tier.RESIDENT) {
            return false;
        }
        s.pins++;
        s.lastUse = ++clock;
        r.pinned = true;
        return true;
    }

    private boolean fits(SimRequest r) {
        if (active.size() + 1 > cfg.maxBatch()) {
            return false;
        }
        int watermark = active.isEmpty() ? 0 : Math.max(1, cfg.kvBlocks() / 100);
        return cfg.blocksFor(r.len) + watermark <= kvFree;
    }

    private void admit() {
        while (!preempted.isEmpty()) {
            SimRequest r = preempted.get(0);
            if (!ready(r)) {
                break;
            }
            if (!fits(r)) {
                unpin(r);
                return;
            }
            preempted.remove(0);
            start(r);
        }
        while (true) {
            SimRequest r = waiting.peek(gate);
            if (r == null) {
                return;
            }
            if (!fits(r)) {
                unpin(r);
                return;
            }
            waiting.take(r);
            waitingBlocks -= cfg.blocksFor(r.len + r.remaining());
            r.order = nextOrder++;
            start(r);
        }
    }

    private void start(SimRequest r) {
        r.blocks = cfg.blocksFor(r.len);
        kvFree -= r.blocks;
        int at = active.size();
        while (at > 0 && active.get(at - 1).order > r.order) {
            at--;
        }
        active.add(at, r);
    }

    // ---- steps ----------------------------------------------------------------------------------

    /** Admission, then the next step (or segment of decode steps), or idle when nothing runs. */
    void beginStep(double now) {
        for (int attempt = 0; attempt < 3; attempt++) {
            admit();
            if (active.isEmpty()) {
                stepping = false;
                return;
            }
            if (plan(now)) {
                return;
            }
        }
        stepping = false; // nothing could be planned: every sequence was moved or preempted
    }

    private boolean plan(double now) {
        planned.clear();
        int decodes = 0;
        for (SimRequest r : active) {
            if (r.len - r.computed == 1) {
                decodes++;
            }
        }
        int budget = Math.max(cfg.maxStepTokens() - decodes, cfg.blockSize());
        for (SimRequest r : new ArrayList<>(active)) {
            if (!active.contains(r)) {
                continue; // moved or preempted below for an older one
            }
            int todo = r.len - r.computed;
            int rows = todo == 1 ? 1 : Math.min(todo, budget);
            if (rows == 0) {
                continue;
            }
            if (!makeRoom(r, r.computed + rows)) {
                continue;
            }
            if (todo > 1) {
                budget -= rows;
            }
            r.rows = rows;
            planned.add(r);
        }
        if (planned.isEmpty()) {
            return false;
        }
        int promptTokens = 0;
        int decodeRows = 0;
        long attended = 0;
        for (SimRequest r : planned) { // counted after planning: a sequence planned early may have been evicted since
            if (r.len - r.computed == 1) {
                decodeRows++;
            } else {
                promptTokens += r.rows;
            }
            attended += (2L * r.computed + 1 + r.rows) * r.rows / 2; // rows at positions computed.. attend to p + 1 each
        }
        int adapters = distinctAdapters();
        k = 1;
        decodeSegment = promptTokens == 0;
        if (decodeSegment) {
            k = segmentLength();
        }
        // the steps of a segment take their mean time: each decode row attends to one more position per step
        dt = (profile.stepMillis(decodeRows, promptTokens, adapters, attended)
            + profile.attendedMs() * decodeRows * (k - 1) / 2.0) / 1000.0;
        segStart = now;
        stepping = true;
        sim.scheduleStepEnd(index, now + k * dt, ++version);
        return true;
    }

    /** Decode steps that repeat unchanged: until the first sequence finishes, as far as the free blocks reach. */
    private int segmentLength() {
        int steps = Integer.MAX_VALUE;
        for (SimRequest r : planned) {
            steps = Math.min(steps, r.remaining());
        }
        while (steps > 1 && extraBlocks(steps) > kvFree) {
            steps = (steps + 1) / 2 == steps ? steps - 1 : (steps + 1) / 2;
        }
        steps = Math.max(steps, 1);
        for (SimRequest r : planned) { // the blocks of every step now: step j needs len + j − 1 positions
            int need = cfg.blocksFor(r.len + steps - 1);
            if (need > r.blocks) {
                kvFree -= need - r.blocks;
                takenAhead += need - r.blocks;
                r.blocks = need;
            }
        }
        return steps;
    }

    private int extraBlocks(int steps) {
        int extra = 0;
        for (SimRequest r : planned) {
            extra += Math.max(0, cfg.blocksFor(r.len + steps - 1) - r.blocks);
        }
        return extra;
    }

    private int distinctAdapters() {
        int n = 0;
        for (int i = 0; i < planned.size(); i++) {
            int a = planned.get(i).adapter;
            if (a < 0) {
                continue;
            }
            boolean seen = false;
            for (int j = 0; j < i && !seen; j++) {
                seen = planned.get(j).adapter == a;
            }
            if (!seen) {
                n++;
            }
        }
        return n;
    }

    /** Blocks for {@code needed} positions of {@code r}, evicting the newest while short; false when {@code r} itself went. */
    private boolean makeRoom(SimRequest r, int needed) {
        int want = cfg.blocksFor(needed);
        while (want - r.blocks > kvFree) {
            SimRequest victim = active.get(active.size() - 1); // the newest
            evict(victim);
            if (victim == r) {
                return false;
            }
        }
        if (want > r.blocks) {
            kvFree -= want - r.blocks;
            r.blocks = want;
        }
        return true;
    }

    private void evict(SimRequest v) {
        active.remove(v);
        planned.remove(v);
        kvFree += v.blocks;
        v.blocks = 0;
        v.computed = 0;
        v.rows = 0;
        unpin(v);
        if (sim.moveAway(v, index)) {
            return; // another node has room: it recomputes there
        }
        int at = 0;
        while (at < preempted.size() && preempted.get(at).order < v.order) {
            at++;
        }
        preempted.add(at, v);
        preemptions++;
    }

    /** The running step (or segment) has ended at {@code now}: its tokens are made, finished sequences leave. */
    void endStep(double now) {
        steps += k;
        takenAhead = 0;
        for (SimRequest r : planned) {
            if (decodeSegment) {
                if (r.generated == 0) {
                    r.firstToken = segStart + dt;
                }
                r.computed += k;
                r.generated += k;
                r.len += k;
                r.lastToken = now;
                int keep = cfg.blocksFor(r.computed); // a cut segment gives back the blocks of steps it did not run
                if (keep < r.blocks) {
                    kvFree += r.blocks - keep;
                    r.blocks = keep;
                }
            } else {
                r.computed += r.rows;
                if (r.computed == r.len) {
                    r.generated++;
                    r.len++;
                    if (r.generated == 1) {
                        r.firstToken = now;
                    }
                    r.lastToken = now;
                }
            }
            r.rows = 0;
            if (r.generated >= r.target) {
                finish(r, now);
            }
        }
        planned.clear();
        stepping = false;
        beginStep(now);
    }

    private void finish(SimRequest r, double now) {
        active.remove(r);
        kvFree += r.blocks;
        r.blocks = 0;
        unpin(r);
        sim.finished(r, now);
    }

    // ---- adapter tiers --------------------------------------------------------------------------

    private void startLoad(int adapter, double now) {
        Slot s = new Slot();
        slots.put(adapter, s);
        double cost;
        if (host.get(adapter) != null) { // get: touches its LRU place
            hostLoads++;
            cost = profile.hostLoadMs();
        } else {
            diskLoads++;
            cost = profile.diskLoadMs();
            host.put(adapter, Boolean.TRUE);
            sim.warm(index, adapter, true);
            if (host.size() > cfg.hostAdapters()) {
                Iterator<Integer> eldest = host.keySet().iterator();
                int gone = eldest.next();
                eldest.remove();
                sim.warm(index, gone, false);
            }
        }
        double at = Math.max(now, loaderFreeAt) + cost / 1000.0; // one loader thread per node
        loaderFreeAt = at;
        sim.scheduleLoadDone(index, adapter, at);
    }

    /** The loader has fetched {@code adapter}: it takes a slot (evicting the least recently used unpinned one) or waits for one. */
    void loadDone(int adapter, double now) {
        Slot s = slots.get(adapter);
        if (s == null || s.state != Tier.LOADING) {
            return;
        }
        s.state = Tier.WAITING;
        waitingForSlot.addLast(adapter);
        placeWaiting();
        if (waiting.size() > 0 || !preempted.isEmpty()) {
            interrupt(now);
        }
    }

    private void placeWaiting() {
        while (!waitingForSlot.isEmpty()) {
            int a = waitingForSlot.peekFirst();
            if (resident >= cfg.adapterSlots() && !evictOne()) {
                return; // every slot is pinned
            }
            waitingForSlot.pollFirst();
            Slot s = slots.get(a);
            s.state = Tier.RESIDENT;
            s.lastUse = ++clock;
            resident++;
            sim.resident(index, a, true);
        }
    }

    private boolean evictOne() {
        int victim = -1;
        Slot vs = null;
        for (Map.Entry<Integer, Slot> e : slots.entrySet()) {
            Slot c = e.getValue();
            if (c.state == Tier.RESIDENT && c.pins == 0 && (vs == null || c.lastUse < vs.lastUse)) {
                victim = e.getKey();
                vs = c;
            }
        }
        if (vs == null) {
            return false;
        }
        slots.remove(victim);
        resident--;
        sim.resident(index, victim, false);
        return true;
    }

    private void unpin(SimRequest r) {
        if (r.pinned) {
            r.pinned = false;
            Slot s = slots.get(r.adapter);
            s.pins--;
            if (s.pins == 0 && !waitingForSlot.isEmpty()) {
                placeWaiting();
            }
        }
    }
}
