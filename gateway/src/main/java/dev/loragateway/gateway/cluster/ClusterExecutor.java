package dev.loragateway.gateway.cluster;

import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.FairQueue;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;
import dev.loragateway.scheduler.cluster.ClusterView;
import dev.loragateway.scheduler.placement.Decision;
import dev.loragateway.scheduler.placement.Placement;
import dev.loragateway.scheduler.placement.Placements;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where a request runs in a cluster: asks {@link Placement} over the {@link ClusterView} for each
 * request and runs it on this node's executor or forwards it to the chosen node's
 * {@link RemoteExecutor}; and when a forwarded choice's node is lost or gives it back, resumes it
 * on another node so that the client's answer goes on as if nothing happened.
 *
 * <pre>
 *   Work(tenant, adapter, prompts [p0 (n=2), p1 (n=2)])
 *     → PlacementRequest(tenant, adapter.toString(), longest prompt, max maxTokens, sequences 4)
 *     → placement.place(req, view.nodes())
 *         this node, no node published yet, or no node has room → local.submit(work)
 *         another node → remotes.apply(node.address()).submit(work)   (unreachable: placed again without it)
 * </pre>
 *
 * <p><b>Migration.</b> Each forwarded choice runs through a {@link Relay} that keeps the token ids
 * its sink has received. When the executing node is lost (the stream breaks, or the member leaves
 * the cluster) or gives the choice back ({@link Moved}: draining, KV pool dry), the relay resumes
 * it as a request of its own: prompt + received tokens as the prompt, {@code max_tokens} minus
 * the received count, the same seed, placed again without that node. The engine recomputes the
 * KV of those tokens and continues; since the sampler's randomness at a position depends only on
 * (seed, position), the resumed choice samples exactly what it would have sampled where it was,
 * and its sink sees the next token after the last one it received: no gap, no repeat. Each
 * request counts once per node it is moved off, by reason, in {@link #migrated()}.
 *
 * <p><b>Waiting for room.</b> When no node has room for a request now (but one could hold it once
 * emptied), it waits here, per tenant in deficit round-robin order as in the engine's own queue
 * ({@link FairQueue}), and goes to the first node that has room when any node's state changes:
 * it never queues behind one busy node while another could run it. Beyond {@code maxWaiting}
 * sequences waiting, a request is refused with {@link Engine.QueueFullException} (429). A
 * request no node could ever hold runs here, where the engine admits it as far as it can or
 * refuses it.
 */
public final class ClusterExecutor implements InferenceExecutor, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(ClusterExecutor.class);
    /** Moves one choice may make before it fails (a cluster losing node after node). */
    static final int MAX_MOVES = 8;
    /** Sequences that may wait at a front node for room in the cluster, unless told otherwise. */
    static final int DEFAULT_MAX_WAITING = 1024;
    /** How long a placement counts against a node whose state has not been republished since. */
    static final long PLACED_TTL_MILLIS = 2_000;

    /** A request placed on a node at {@code atMillis} (this node's clock, as the states' {@code updatedMillis}). */
    private record Placed(long atMillis, int sequences, int kvBlocks) {
    }

    private final InferenceExecutor local;
    private final ClusterView view;
    private final Placement placement;
    private final Function<String, ? extends InferenceExecutor> remotes;
    private final LongAdder forwarded = new LongAdder();
    private final Map<String, LongAdder> migrated = new ConcurrentHashMap<>();
    /** Relays running on each other node now, by node id: failed over when that member leaves. */
    private final Map<String, Set<Relay>> onNode = new ConcurrentHashMap<>();
    /** Resumes choices off the threads that learn of a failure (a remote stream's event loop, Hazelcast's event thread). */
    private final ExecutorService resumer = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "cluster-resume");
        t.setDaemon(true);
        return t;
    });
    private volatile Set<String> members;
    /**
     * What this front node placed on each node since that node's last published state: placement
     * reads states published up to 200 ms ago, so a burst of requests would all see the same
     * load and pile onto one node. Each entry counts until a state newer than it arrives (or
     * {@link #PLACED_TTL_MILLIS}, a backstop for a state that never comes).
     */
    private final Map<String, java.util.Deque<Placed>> placed = new ConcurrentHashMap<>();
    /** Requests no node has room for now, per tenant, in deficit round-robin order (as the engine's queue). */
    private final FairQueue<Relayed> waiting = new FairQueue<>(Engine.QUANTUM,
        r -> r.request.work.tenant() == null ? "" : r.request.work.tenant(), Relayed::cost, Relayed::abandoned);
    private int waitingSequences;
    private final int maxWaiting;
    private final ExecutorService dispatcher = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "cluster-dispatch");
        t.setDaemon(true);
        return t;
    });
    private final java.util.concurrent.atomic.AtomicBoolean dispatchScheduled = new java.util.concurrent.atomic.AtomicBoolean();

    /**
     * @param local     this node's executor
     * @param view      the cluster's node states (this node's included)
     * @param placement the {@code --placement} policy
     * @param remotes   the executor for a node's internal listener address ({@link RemoteExecutors})
     */
    public ClusterExecutor(InferenceExecutor local, ClusterView view, Placement placement,
                           Function<String, ? extends InferenceExecutor> remotes) {
        this(local, view, placement, remotes, DEFAULT_MAX_WAITING);
    }

    /**
     * @param maxWaiting sequences that may wait here for room in the cluster (beyond them: 429,
     *                   {@link Engine.QueueFullException}); {@code serve} passes {@code --max-queued}
     */
    public ClusterExecutor(InferenceExecutor local, ClusterView view, Placement placement,
                           Function<String, ? extends InferenceExecutor> remotes, int maxWaiting) {
        this.maxWaiting = maxWaiting;
        this.local = local;
        this.view = view;
        this.placement = placement;
        this.remotes = remotes;
        this.members = view.memberIds();
        view.addListener(this::membersChanged);
    }

    @Override
    public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
        List<NodeState> nodes = nodesNow();
        if (nodes.isEmpty()) {
            LOG.debug("request {} runs on {}: no node state published yet", work.requestId(), view.localNodeId());
            return local.submit(work);
        }
        Set<String> refused = new java.util.HashSet<>();
        while (true) {
            PlacementRequest req = request(work);
            Optional<Decision> decision = placement.place(req, without(nodes, refused));
            if (decision.isEmpty()) {
                if (refused.isEmpty() && nodes.stream().anyMatch(n -> Placements.couldEverTake(req, n))) {
                    LOG.debug("request {} waits at {}: no node has room now", work.requestId(), view.localNodeId());
                    return enqueue(work, req);
                }
                // no node could ever hold it (its engine admits it as far as it can, or refuses it), or the others failed
                LOG.debug("request {} runs on {}: no node takes it", work.requestId(), view.localNodeId());
                return local.submit(work);
            }
            Decision d = decision.get();
            if (d.nodeId().equals(view.localNodeId())) {
                LOG.debug("request {} runs on {} ({})", work.requestId(), d.nodeId(), d.reason());
                Placed p = placedOn(d, req.sequences());
                try {
                    return local.submit(work);
                } catch (RuntimeException | Error e) {
                    unplace(d, p);
                    throw e;
                }
            }
            Placed p = placedOn(d, req.sequences());
            try {
                List<List<CompletableFuture<Generator.Finish>>> futures = forward(work, d.node());
                LOG.debug("request {} forwarded to {} at {} ({})", work.requestId(), d.nodeId(), d.node().address(), d.reason());
                return futures;
            } catch (Engine.UnavailableException e) { // unreachable or draining: the next best node
                unplace(d, p);
                LOG.info("request {}: node {} unavailable ({}); placing it again without it", work.requestId(), d.nodeId(), e.getMessage());
                refused.add(d.nodeId());
            } catch (RuntimeException | Error e) {
                unplace(d, p);
                throw e;
            }
        }
    }

    /** Runs {@code work} on {@code node} with a relay per choice; throws what its admission throws. */
    private List<List<CompletableFuture<Generator.Finish>>> forward(Work work, NodeState node) {
        Relayed r = new Relayed(work, request(work));
        r.run(node);
        return r.proxies;
    }

    /**
     * A request with a {@link Relay} per choice: {@link #proxies} are the caller's futures, and
     * {@link #work} is the request with the relays' sinks, to run on whichever node takes it.
     */
    private final class Relayed {
        final Request request;
        final PlacementRequest placement;
        final List<Relay> relays = new ArrayList<>();
        final List<List<CompletableFuture<Generator.Finish>>> proxies = new ArrayList<>();
        final Work work;

        Relayed(Work original, PlacementRequest placement) {
            this.request = new Request(original);
            this.placement = placement;
            List<Prompt> prompts = new ArrayList<>();
            for (Prompt p : original.prompts()) {
                List<Choice> choices = new ArrayList<>();
                List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
                for (Choice c : p.choices()) {
                    Relay r = new Relay(request, p.tokens(), c);
                    relays.add(r);
                    choices.add(new Choice(c.params(), r.sink(0)));
                    fs.add(r.proxy);
                }
                prompts.add(new Prompt(p.tokens(), choices));
                proxies.add(fs);
            }
            work = new Work(original.requestId(), original.tenant(), original.adapter(), prompts, original.trace());
        }

        /** Runs it on {@code node} (null or this node: here); throws what that node's admission throws. */
        void run(NodeState node) {
            String target = node == null || node.nodeId().equals(view.localNodeId()) ? null : node.nodeId();
            List<List<CompletableFuture<Generator.Finish>>> futures = target == null ? local.submit(work)
                : remotes.apply(node.address()).submit(work);
            if (target != null) {
                forwarded.increment();
            }
            int i = 0;
            for (List<CompletableFuture<Generator.Finish>> fs : futures) {
                for (CompletableFuture<Generator.Finish> f : fs) {
                    relays.get(i++).attach(f, target);
                }
            }
        }

        /** Every choice's future is done (cancelled while it waited): nothing to run. */
        boolean abandoned() {
            return relays.stream().allMatch(r -> r.proxy.isDone());
        }

        long cost() {
            return (long) placement.sequences() * placement.positions();
        }

        void fail(Throwable t) {
            relays.forEach(r -> r.proxy.completeExceptionally(t));
        }
    }

    // ---- the cluster-wide wait for room ----------------------------------------------------------

    /** Holds {@code work} here until some node has room for it; throws when the wait is full. */
    private List<List<CompletableFuture<Generator.Finish>>> enqueue(Work work, PlacementRequest req) {
        Relayed r = new Relayed(work, req);
        synchronized (waiting) {
            if (waitingSequences + req.sequences() > maxWaiting) {
                throw new Engine.QueueFullException(waitingSequences, req.sequences(), maxWaiting);
            }
            waiting.add(r);
            waitingSequences += req.sequences();
        }
        r.relays.forEach(x -> x.proxy.whenComplete((f, t) -> {
            if (x.proxy.isCancelled()) {
                scheduleDispatch(); // drop it from the wait now, not at the next state change
            }
        }));
        scheduleDispatch(); // a node may have made room since placement looked
        return r.proxies;
    }

    /** Runs {@link #dispatch} on the dispatcher thread, once for any number of calls made meanwhile. */
    private void scheduleDispatch() {
        if (dispatchScheduled.compareAndSet(false, true)) {
            try {
                dispatcher.execute(() -> {
                    dispatchScheduled.set(false);
                    dispatch();
                });
            } catch (java.util.concurrent.RejectedExecutionException e) {
                dispatchScheduled.set(false); // closed
            }
        }
    }

    /**
     * Sends waiting requests, in fair order, to nodes with room, until none fits. The node states
     * are read once and charged with what this pass sends (their published states catch up a
     * moment later), so one freed slot takes one request, not all of them.
     */
    private void dispatch() {
        Map<String, NodeState> nodes = new java.util.LinkedHashMap<>();
        nodesNow().forEach(n -> nodes.put(n.nodeId(), n));
        while (true) {
            Decision[] chosen = new Decision[1];
            Relayed next;
            synchronized (waiting) {
                next = waiting.peek(new FairQueue.Gate<>() {
                    @Override
                    public boolean ready(Relayed r) {
                        Optional<Decision> d = placement.place(r.placement, List.copyOf(nodes.values()));
                        chosen[0] = d.orElse(null);
                        return d.isPresent();
                    }

                    @Override
                    public void release(Relayed r) {
                    }

                    @Override
                    public void dropped(Relayed r) {
                        waitingSequences -= r.placement.sequences();
                    }
                });
                if (next == null) {
                    return;
                }
                waiting.take(next);
                waitingSequences -= next.placement.sequences();
            }
            Decision d = chosen[0];
            NodeState n = d.node();
            nodes.put(n.nodeId(), charged(n, next.placement.sequences(), d.kvBlocks()));
            Placed p = placedOn(d, next.placement.sequences());
            try {
                next.run(n);
                LOG.debug("request {} leaves the wait for room for {} ({})", next.request.work.requestId(), n.nodeId(), d.reason());
            } catch (Engine.QueueFullException | Engine.UnavailableException e) {
                unplace(d, p);
                // the node's state was behind: back in line, and the next state change tries again
                synchronized (waiting) {
                    waiting.add(next);
                    waitingSequences += next.placement.sequences();
                }
                return;
            } catch (RuntimeException e) {
                unplace(d, p);
                next.fail(e);
            }
        }
    }

    /** Requests waiting at this node for room anywhere in the cluster. */
    public int waiting() {
        synchronized (waiting) {
            return waiting.size();
        }
    }

    /** The nodes' published states, each charged with what this node placed there since it was published. */
    private List<NodeState> nodesNow() {
        List<NodeState> nodes = view.nodes();
        if (placed.isEmpty()) {
            return nodes;
        }
        long now = System.currentTimeMillis();
        List<NodeState> out = new ArrayList<>(nodes.size());
        for (NodeState n : nodes) {
            java.util.Deque<Placed> q = placed.get(n.nodeId());
            int sequences = 0;
            int kv = 0;
            if (q != null) {
                synchronized (q) {
                    q.removeIf(p -> p.atMillis() <= n.updatedMillis() || now - p.atMillis() > PLACED_TTL_MILLIS);
                    for (Placed p : q) {
                        sequences += p.sequences();
                        kv += p.kvBlocks();
                    }
                }
            }
            out.add(sequences == 0 ? n : charged(n, sequences, kv));
        }
        return out;
    }

    /**
     * Counts {@code sequences} against the decided node from now, before the request is sent: the
     * node's next published state (newer than this entry) includes it, and drops the entry.
     */
    private Placed placedOn(Decision d, int sequences) {
        Placed p = new Placed(System.currentTimeMillis(), sequences, d.kvBlocks());
        java.util.Deque<Placed> q = placed.computeIfAbsent(d.nodeId(), k -> new java.util.ArrayDeque<>());
        synchronized (q) {
            q.addLast(p);
        }
        return p;
    }

    /** The request {@code p} counted was refused there: it no longer counts. */
    private void unplace(Decision d, Placed p) {
        java.util.Deque<Placed> q = placed.get(d.nodeId());
        if (q != null && p != null) {
            synchronized (q) {
                q.remove(p);
            }
        }
    }

    /** {@code n} with {@code sequences} more in its batch and {@code kvBlocks} fewer free. */
    private static NodeState charged(NodeState n, int sequences, int kvBlocks) {
        return new NodeState(n.nodeId(), n.address(), n.backend(), n.running() + sequences, n.queued(), n.maxBatch(),
            Math.max(0, n.freeKvBlocks() - kvBlocks), n.totalKvBlocks(), n.kvBlockSize(), n.residentAdapters(), n.warmAdapters(),
            n.stepMillis(), n.draining(), n.updatedMillis());
    }

    /** What placement knows of {@code work}: its longest prompt, its largest {@code max_tokens}, all its choices. */
    static PlacementRequest request(Work work) {
        int longest = 0;
        int maxTokens = 0;
        int sequences = 0;
        for (Prompt p : work.prompts()) {
            longest = Math.max(longest, p.tokens().length);
            for (Choice c : p.choices()) {
                maxTokens = Math.max(maxTokens, c.params().maxTokens());
                sequences++;
            }
        }
        return new PlacementRequest(work.tenant(), work.adapter() == null ? null : work.adapter().toString(), longest, maxTokens,
            sequences);
    }

    private static List<NodeState> without(List<NodeState> nodes, Set<String> ids) {
        return ids.isEmpty() ? nodes : nodes.stream().filter(n -> !ids.contains(n.nodeId())).toList();
    }

    /** A member left: every choice running there resumes elsewhere now, not when its connection times out. */
    private void membersChanged() {
        scheduleDispatch(); // any change may have made room for a waiting request
        Set<String> now = view.memberIds();
        Set<String> before = members;
        members = now;
        for (String id : before) {
            if (!now.contains(id)) {
                Set<Relay> lost = onNode.remove(id);
                if (lost != null && !lost.isEmpty()) {
                    LOG.warn("node {} left with {} forwarded choice(s) running: resuming them elsewhere", id, lost.size());
                    for (Relay r : lost) {
                        r.lost(id, new Engine.UnavailableException("node " + id + " left the cluster"));
                    }
                }
            }
        }
    }

    /** Requests this node sent to another node (admitted there). */
    public long forwarded() {
        return forwarded.sum();
    }

    /** Requests moved off a node, by reason ({@code node_lost}, {@code drain}, {@code kv}). */
    public Map<String, Long> migrated() {
        Map<String, Long> m = new TreeMap<>();
        migrated.forEach((k, v) -> m.put(k, v.sum()));
        return m;
    }

    @Override
    public ModelConfig config() {
        return local.config();
    }

    @Override
    public String unhealthy(long stallNanos) {
        return local.unhealthy(stallNanos);
    }

    @Override
    public void close() {
        dispatcher.shutdownNow();
        resumer.shutdownNow();
        List<Relayed> left;
        synchronized (waiting) {
            left = waiting.drain();
            waitingSequences = 0;
        }
        left.forEach(r -> r.fail(new Engine.UnavailableException("the server is stopping")));
    }

    /** One forwarded request, for counting its moves (once per node it leaves, whatever its choice count). */
    private static final class Request {
        final Work work;
        private final Set<String> movedOff = ConcurrentHashMap.newKeySet();

        Request(Work work) {
            this.work = work;
        }
    }

    /**
     * One forwarded choice: the client's future ({@link #proxy}), the attempt running now, and the
     * tokens received so far (what a resumed attempt starts from). Each attempt's sink carries the
     * attempt's epoch: once an attempt is given up, a late token from it is refused, so the
     * client's sink sees each position once.
     */
    private final class Relay {
        final Request request;
        final int[] prompt;
        final Choice choice;
        final CompletableFuture<Generator.Finish> proxy = new CompletableFuture<>();
        private int[] received = new int[16];
        private int count;
        private int epoch;
        private CompletableFuture<Generator.Finish> current;
        private String node;
        private int moves;

        Relay(Request request, int[] prompt, Choice choice) {
            this.request = request;
            this.prompt = prompt;
            this.choice = choice;
            proxy.whenComplete((f, t) -> {
                CompletableFuture<Generator.Finish> c;
                synchronized (this) {
                    c = current;
                }
                if (proxy.isCancelled() && c != null) {
                    c.cancel(false);
                }
            });
        }

        /** The sink of the attempt of {@code attemptEpoch}: keeps each token, then hands it to the client's. */
        Generator.TokenSink sink(int attemptEpoch) {
            return (token, lp) -> {
                synchronized (this) {
                    if (attemptEpoch != epoch) {
                        return false; // an attempt given up: its position is the resumed attempt's now
                    }
                    if (count == received.length) {
                        received = Arrays.copyOf(received, count * 2);
                    }
                    received[count++] = token;
                    return choice.sink().accept(token, lp);
                }
            };
        }

        /** Gives up {@code attempt} if it is still the current one; true for the one caller that does. */
        private synchronized boolean claim(CompletableFuture<Generator.Finish> attempt) {
            if (current != attempt) {
                return false;
            }
            current = null;
            epoch++;
            return true;
        }

        /** Follows {@code attempt}, running on node {@code nodeId} (null: this node). */
        void attach(CompletableFuture<Generator.Finish> attempt, String nodeId) {
            synchronized (this) {
                current = attempt;
                node = nodeId;
            }
            if (nodeId != null) {
                onNode.computeIfAbsent(nodeId, k -> ConcurrentHashMap.newKeySet()).add(this);
            }
            if (proxy.isCancelled()) {
                attempt.cancel(false);
            }
            attempt.whenComplete((finish, failure) -> {
                if (nodeId != null) {
                    Set<Relay> s = onNode.get(nodeId);
                    if (s != null) {
                        s.remove(this);
                    }
                }
                if (!claim(attempt) || proxy.isDone()) {
                    return; // given up already (its node was declared lost), or the client's future is done
                }
                if (failure == null) {
                    proxy.complete(finish);
                    return;
                }
                Throwable cause = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
                if (cause instanceof Moved m) {
                    resume(nodeId, m.reason(), m);
                } else if (cause instanceof Engine.UnavailableException && nodeId != null) {
                    resume(nodeId, Moved.NODE_LOST, cause);
                } else {
                    proxy.completeExceptionally(cause);
                }
            });
        }

        /** Node {@code nodeId} left the cluster while this choice ran there. */
        void lost(String nodeId, RuntimeException why) {
            CompletableFuture<Generator.Finish> c;
            synchronized (this) {
                c = current;
                if (c == null || !nodeId.equals(node) || !claim(c)) {
                    return;
                }
            }
            c.completeExceptionally(why); // its stream's late lines are ignored
            if (!proxy.isDone()) {
                resume(nodeId, Moved.NODE_LOST, why);
            }
        }

        private void resume(String from, String reason, Throwable why) {
            if (request.movedOff.add(from)) {
                migrated.computeIfAbsent(reason, k -> new LongAdder()).increment();
            }
            try {
                resumer.execute(() -> resumeNow(from, reason, why));
            } catch (java.util.concurrent.RejectedExecutionException e) {
                proxy.completeExceptionally(new Engine.UnavailableException("the server is stopping"));
            }
        }

        private void resumeNow(String from, String reason, Throwable why) {
            int n;
            int[] tokens;
            int attemptEpoch;
            synchronized (this) {
                n = count;
                tokens = Arrays.copyOf(prompt, prompt.length + n);
                System.arraycopy(received, 0, tokens, prompt.length, n);
                attemptEpoch = epoch;
            }
            SamplingParams params = choice.params();
            if (n > 0 && params.ends(tokens[tokens.length - 1], local.config())) {
                proxy.complete(Generator.Finish.STOP);
                return;
            }
            if (n >= params.maxTokens()) {
                proxy.complete(Generator.Finish.LENGTH);
                return;
            }
            if (++moves > MAX_MOVES) {
                proxy.completeExceptionally(new Engine.UnavailableException("request " + request.work.requestId()
                    + " was moved " + MAX_MOVES + " times and gave up: " + why.getMessage()));
                return;
            }
            Work w = request.work;
            Work resumed = new Work(w.requestId(), w.tenant(), w.adapter(),
                List.of(new Prompt(tokens, List.of(new Choice(params.resumedAfter(n), sink(attemptEpoch))))),
                w.trace());
            Set<String> excluded = new java.util.HashSet<>(Set.of(from));
            while (!proxy.isDone()) {
                Optional<Decision> d = placement.place(request(resumed), without(nodesNow(), excluded));
                String target = d.isEmpty() || d.get().nodeId().equals(view.localNodeId()) ? null : d.get().nodeId();
                Placed p = d.map(x -> placedOn(x, 1)).orElse(null);
                try {
                    CompletableFuture<Generator.Finish> f = target == null ? local.submit(resumed).get(0).get(0)
                        : remotes.apply(d.get().node().address()).submit(resumed).get(0).get(0);
                    LOG.info("request {}: a choice moved off {} ({}) after {} token(s) resumes on {}", w.requestId(), from, reason, n,
                        target == null ? view.localNodeId() : target);
                    attach(f, target);
                    return;
                } catch (RuntimeException e) {
                    d.ifPresent(x -> unplace(x, p));
                    if (!(e instanceof Engine.UnavailableException) && !(e instanceof Engine.QueueFullException)) {
                        proxy.completeExceptionally(e);
                        return;
                    }
                    if (target == null) { // this node cannot take it either
                        proxy.completeExceptionally(e);
                        return;
                    }
                    excluded.add(target);
                }
            }
        }
    }
}
