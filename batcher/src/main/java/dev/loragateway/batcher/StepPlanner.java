package dev.loragateway.batcher;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.adapters.DeviceTier;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@link Engine}'s batch, step by step: it admits waiting sequences (preempted ones first, then
 * new requests in {@link FairQueue} order) while the batch has room and the KV pool has blocks,
 * plans each step's rows (every decode, then prompt chunks up to {@code maxStepTokens}), preempts
 * the newest sequences when the pool runs dry, runs the step, and samples, forks and finishes the
 * sequences whose logits it computed.
 *
 * <p>Engine thread only, except {@link #steps}, {@link #preemptions} and {@link #faults} (volatile,
 * read by anyone). A fault that concerns one sequence fails that sequence only and is counted;
 * {@link #failStep} fails the running batch when a step fails as a whole.
 */
final class StepPlanner implements FairQueue.Gate<Sequence> {
    private static final Logger LOG = LoggerFactory.getLogger(StepPlanner.class);

    /** A sequence's rows in this step. */
    private record Plan(Sequence s, int rows) {
    }

    private final ModelConfig cfg;
    private final StepForward pass;
    private final KvBlockPool kv;
    private final DeviceTier<AdapterKey> adapters;
    private final Engine.Options opts;
    private final EngineMetrics metrics;
    private final EngineSpans spans;
    /** The engine's count of queued sequences ({@code maxQueued}): given back as sequences leave the queue. */
    private final AtomicInteger queued;
    private final StepBatch batch = new StepBatch();
    private final float[] logits;
    private final FairQueue<Sequence> waiting = FairQueue.ofSequences(Engine.QUANTUM);
    private final List<Sequence> preempted = new ArrayList<>(); // oldest first; admitted before new requests
    private final List<Sequence> active = new ArrayList<>();
    private final List<Plan> planned = new ArrayList<>();
    private long nextOrder;
    private volatile long steps;
    private volatile long preemptions;
    /** Sequences given away instead of preempted ({@link Generator.MovableSink}). */
    private volatile long moved;
    private volatile long faults;
    /** Prefix caching: prompt tokens looked up at admission, and those found cached. */
    private volatile long prefixQueries;
    private volatile long prefixHits;
    /** What the last step held (engine thread only; read by {@link Engine} after {@link #step}). */
    private Engine.StepShape lastShape;

    StepPlanner(StepForward pass, KvBlockPool kv, DeviceTier<AdapterKey> adapters, Engine.Options opts, EngineMetrics metrics,
                EngineSpans spans, AtomicInteger queued) {
        this.cfg = pass.model().config();
        this.pass = pass;
        this.kv = kv;
        this.adapters = adapters;
        this.opts = opts;
        this.metrics = metrics;
        this.spans = spans;
        this.queued = queued;
        this.logits = new float[opts.maxBatch() * cfg.vocabSize()];
    }

    /** A new request's lead sequence joins the fair queue. */
    void enqueue(Sequence lead) {
        waiting.add(lead);
    }

    /** Whether sequences run in the batch. */
    boolean running() {
        return !active.isEmpty();
    }

    int runningCount() {
        return active.size();
    }

    int preemptedCount() {
        return preempted.size();
    }

    /** Adds the adapters of the running batch to {@code out} (the base model is none). */
    void runningAdapters(Set<AdapterKey> out) {
        for (Sequence s : active) {
            if (s.req.adapter() != null) {
                out.add(s.req.adapter());
            }
        }
    }

    /** Adds the adapters of the waiting sequences to {@code out}: preempted ones and new requests (the base model is none). */
    void waitingAdapters(Set<AdapterKey> out) {
        for (Sequence s : preempted) {
            if (s.req.adapter() != null) {
                out.add(s.req.adapter());
            }
        }
        waiting.forEach(s -> {
            if (s.req.adapter() != null) {
                out.add(s.req.adapter());
            }
        });
    }

    /** Whether sequences wait to be admitted: new requests, or preempted ones to be recomputed. */
    boolean waiting() {
        return waiting.size() > 0 || !preempted.isEmpty();
    }

    long steps() {
        return steps;
    }

    long preemptions() {
        return preemptions;
    }

    /** Sequences that left for another node when the KV pool ran dry, instead of being preempted. */
    long moved() {
        return moved;
    }

    /** What the step just run held; null when the last call of {@link #step} ran no forward pass. */
    Engine.StepShape lastShape() {
        return lastShape;
    }

    /** Failures of one step or one sequence that were survived (each failed only what it concerned). */
    long faults() {
        return faults;
    }

    long prefixQueries() {
        return prefixQueries;
    }

    long prefixHits() {
        return prefixHits;
    }

    // ---- admission ----------------------------------------------------------------------------

    private int width() {
        int w = 0;
        for (Sequence s : active) {
            w += s.width();
        }
        return w;
    }

    /** Preempted sequences first (oldest first), then new requests in fair order, while they fit. */
    void admit() {
        dropCancelled();
        while (!preempted.isEmpty()) {
            Sequence s = preempted.get(0);
            if (!ready(s)) {
                break;
            }
            if (!fits(s)) {
                release(s);
                return;
            }
            preempted.remove(0);
            start(s);
        }
        while (true) {
            Sequence s = waiting.peek(this);
            if (s == null) {
                return;
            }
            if (!fits(s)) {
                release(s);
                return;
            }
            waiting.take(s);
            queued.addAndGet(-s.queueWeight);
            s.order = nextOrder++;
            start(s);
        }
    }

    private void dropCancelled() {
        for (int i = active.size() - 1; i >= 0; i--) {
            Sequence s = active.get(i);
            if (s.abandoned()) {
                finish(s, null, null);
            }
        }
        for (int i = preempted.size() - 1; i >= 0; i--) {
            Sequence s = preempted.get(i);
            if (s.abandoned()) {
                preempted.remove(i);
                failForks(s, null);
            }
        }
    }

    private boolean fits(Sequence s) {
        if (width() + s.width() > opts.maxBatch()) {
            return false;
        }
        int need = kv.blocksFor(s.len);
        int watermark = active.isEmpty() ? 0 : Math.max(1, kv.total() / 100);
        return need + watermark <= kv.free();
    }

    private void start(Sequence s) {
        if (kv.prefix() != null) {
            AdapterKey a = s.req.adapter();
            String salt = PrefixIndex.salt(s.tenant, a, a == null ? 0 : adapters.contentEpoch(a));
            s.cache = KvCache.matching(kv, salt, s.tokens, s.len);
            prefixQueries += s.len;
            prefixHits += s.cache.length();
            metrics.prefixLookup(s.len, s.cache.length());
        } else {
            s.cache = new KvCache(kv);
        }
        s.cache.ensureCapacity(s.len);
        active.add(s);
        long now = System.nanoTime();
        for (Sequence m : s.withForks()) { // forks run from their lead's admission on
            if (!m.admitted) {
                m.admitted = true;
                spans.admitted(m, now - m.submitted);
            }
        }
    }

    @Override
    public boolean ready(Sequence s) {
        if (s.req.adapter() == null || s.pinned) {
            return true;
        }
        int slot;
        try {
            slot = adapters.tryPin(s.req.adapter());
        } catch (RuntimeException e) { // AdapterLoadException, or a fault of the tier: this request only
            if (!(e instanceof AdapterLoadException)) {
                faults++;
                LOG.error("pinning adapter {} failed", s.req.adapter(), e);
            }
            for (Sequence m : s.withForks()) {
                m.future.completeExceptionally(e);
            }
            return false; // abandoned now: dropped on the next pass
        }
        if (slot == DeviceTier.NOT_READY) {
            return false;
        }
        s.slot = slot;
        s.pinned = true;
        return true;
    }

    @Override
    public void release(Sequence s) {
        unpin(s);
    }

    @Override
    public void dropped(Sequence s) {
        queued.addAndGet(-s.queueWeight);
        unpin(s);
    }

    // ---- the step -----------------------------------------------------------------------------

    /** Plans and runs one step. */
    void step() {
        lastShape = null; // until a forward pass runs
        active.sort(Comparator.comparingLong(s -> s.order));
        planned.clear();
        int decodes = 0;
        for (Sequence s : active) {
            if (s.len - s.computed() == 1) {
                decodes++;
            }
        }
        int prefillBudget = Math.max(opts.maxStepTokens() - decodes, kv.blockSize());
        for (Sequence s : new ArrayList<>(active)) { // oldest first
            if (s.cache == null) {
                continue; // preempted below for an older one
            }
            int todo = s.len - s.computed();
            int rows = todo == 1 ? 1 : Math.min(todo, prefillBudget);
            if (rows == 0) {
                continue;
            }
            if (!makeRoom(s, s.computed() + rows)) {
                continue; // s itself was preempted
            }
            if (todo > 1) {
                prefillBudget -= rows;
            }
            planned.add(new Plan(s, rows));
        }
        if (planned.isEmpty()) {
            return;
        }
        planned.sort(Comparator.comparingInt(p -> p.s().slot)); // stable: rows of one adapter together
        batch.clear();
        List<Sequence> outputs = new ArrayList<>();
        int decodeRows = 0;
        int promptTokens = 0;
        int distinct = 0;
        long attended = 0;
        int lastSlot = -1;
        for (Plan plan : planned) {
            Sequence s = plan.s();
            int from = s.computed();
            int to = from + plan.rows();
            if (s.len - from == 1) { // the simulator's decode row: the one position left is the newest token
                decodeRows++;
            } else {
                promptTokens += plan.rows();
            }
            if (s.slot >= 0 && s.slot != lastSlot) { // sorted by slot: each adapter's rows are one run
                distinct++;
                lastSlot = s.slot;
            }
            attended += (long) (from + 1 + to) * (to - from) / 2; // row at position p attends to p + 1 positions
            for (int p = from; p < to; p++) {
                batch.add(s.cache, s.tokens[p], p == s.len - 1, s.slot);
            }
            if (to == s.len) {
                outputs.add(s);
            }
        }
        pass.step(batch, logits);
        steps++;
        for (Plan plan : planned) { // full blocks just computed become matchable (prefix caching)
            plan.s().cache.register(plan.s().tokens);
        }
        lastShape = new Engine.StepShape(decodeRows, promptTokens, distinct, attended);
        metrics.step(planned.size(), batch.size());
        for (int k = 0; k < outputs.size(); k++) {
            Sequence s = outputs.get(k);
            if (s.forks != null) {
                fork(s, k);
            } else if (!s.future.isDone()) {
                sample(s, k);
            } else {
                finish(s, null, null);
            }
        }
    }

    /**
     * Takes the blocks {@code s} needs for positions below {@code needed}, preempting the newest
     * running sequences while the pool is short; false when {@code s} is itself the newest and
     * was preempted.
     */
    private boolean makeRoom(Sequence s, int needed) {
        while (s.cache.blocksNeeded(needed) > kv.free()) {
            Sequence victim = null;
            for (Sequence v : active) {
                if (v.cache != null && (victim == null || v.order > victim.order)) {
                    victim = v;
                }
            }
            preempt(victim);
            if (victim == s) {
                return false;
            }
        }
        s.cache.ensureCapacity(needed);
        return true;
    }

    private void preempt(Sequence s) {
        if (s.forks == null && s.req.sink() instanceof Generator.MovableSink m && m.moveAway()) {
            // its owner resumes it on a node with room: nothing of it waits here
            planned.removeIf(p -> p.s() == s);
            moved++;
            finish(s, null, new java.util.concurrent.CancellationException("moved to another node: the KV pool ran dry"));
            return;
        }
        s.cache.release();
        s.cache = null;
        unpin(s);
        active.remove(s);
        planned.removeIf(p -> p.s() == s);
        int at = 0;
        while (at < preempted.size() && preempted.get(at).order < s.order) {
            at++;
        }
        preempted.add(at, s);
        preemptions++;
        metrics.preempted();
        spans.preempted(s, ++s.preemptions);
    }

    /** The prompt of {@code lead} is computed: every live member samples from its logits. */
    private void fork(Sequence lead, int k) {
        List<Sequence> members = lead.withForks();
        lead.forks = null;
        for (Sequence m : members) {
            if (m == lead || m.future.isDone()) {
                continue;
            }
            try {
                if (m.req.adapter() != null) {
                    // the lead's pin, shared: tryPin would refuse an adapter deleted meanwhile (issue 12, item 1)
                    m.slot = adapters.pinAgain(m.req.adapter());
                    m.pinned = true;
                }
                m.cache = lead.cache.fork();
            } catch (RuntimeException e) {
                finishQuietly(m, e);
                continue;
            }
            m.order = lead.order;
            active.add(m);
            sample(m, k);
        }
        if (lead.future.isDone()) {
            finish(lead, null, null);
        } else {
            sample(lead, k);
        }
    }

    private void sample(Sequence s, int k) {
        int vocab = cfg.vocabSize();
        Generator.Finish end = null;
        try {
            // at the position s.len it takes, from its history (penalties, min_tokens)
            int token = s.sampler.sample(logits, k * vocab, vocab, s.tokens, s.len, s.req.prompt().length);
            SamplingParams p = s.req.params();
            Sampler.Logprobs lp = p.logprobs() >= 0 ? Sampler.logprobs(logits, k * vocab, vocab, token, p.logprobs()) : null;
            s.generated++;
            s.append(token);
            long now = System.nanoTime();
            if (s.generated == 1) {
                s.firstToken = now;
                metrics.firstToken(s.tenant, now - s.submitted);
                spans.firstToken(s, now - s.submitted);
            }
            s.lastToken = now;
            boolean more = s.req.sink().accept(token, lp);
            if (p.ends(token, cfg) || !more) {
                end = Generator.Finish.STOP;
            } else if (s.generated >= p.maxTokens()) {
                end = Generator.Finish.LENGTH;
            }
        } catch (RuntimeException e) {
            finishQuietly(s, e);
            return;
        }
        if (end != null) {
            finish(s, end, null);
        }
    }

    // ---- the end of sequences -----------------------------------------------------------------

    private void unpin(Sequence s) {
        if (s.pinned) {
            adapters.unpin(s.req.adapter());
            s.pinned = false;
            s.slot = -1;
        }
    }

    /** Ends {@code s}: frees its blocks and pin, completes its future (forks not yet made fail too). */
    private void finish(Sequence s, Generator.Finish end, Throwable failure) {
        try {
            unpin(s);
        } catch (RuntimeException e) { // a pin-accounting bug: logged and counted, never the loop's end
            faults++;
            s.pinned = false;
            LOG.error("releasing the adapter pin of a finished sequence failed", e);
        }
        try {
            if (s.cache != null) {
                s.cache.release();
            }
        } catch (RuntimeException e) {
            faults++;
            LOG.error("releasing the KV blocks of a finished sequence failed", e);
        }
        s.cache = null;
        active.remove(s);
        if (s.generated > 0) {
            metrics.finished(s.tenant, s.generated, s.lastToken - s.firstToken);
        }
        spans.end(s, end, failure);
        if (failure != null) {
            s.future.completeExceptionally(failure);
        } else if (end != null) {
            s.future.complete(end);
        }
        failForks(s, failure);
    }

    /** {@link #finish} for a failure; if even freeing it throws, its future still fails. */
    private void finishQuietly(Sequence s, Throwable failure) {
        try {
            finish(s, null, failure);
        } catch (RuntimeException | Error again) {
            faults++;
            LOG.error("freeing a failed sequence failed too", again);
            s.cache = null;
            s.pinned = false;
            active.remove(s);
            s.future.completeExceptionally(failure);
            for (Sequence f : s.forks == null ? List.<Sequence>of() : s.forks) {
                f.future.completeExceptionally(failure);
            }
            s.forks = null;
        }
    }

    private static void failForks(Sequence s, Throwable failure) {
        if (s.forks != null) {
            for (Sequence f : s.forks) {
                if (failure != null) {
                    f.future.completeExceptionally(failure);
                } else {
                    f.future.cancel(false);
                }
            }
            s.forks = null;
        }
    }

    /**
     * A step failed as a whole (the forward pass, or the planning around it): the sequences of the
     * running batch fail with it; waiting and preempted ones go on. Releasing a failed sequence's
     * blocks or pin must not throw the loop out either.
     */
    void failStep(Throwable e) {
        faults++;
        LOG.error("an engine step failed; failing the {} sequences of its batch", active.size(), e);
        for (Sequence s : new ArrayList<>(active)) {
            finishQuietly(s, e);
        }
        active.clear();
    }

    /** Takes out every sequence held, running, preempted or waiting (the loop has ended: the caller fails them). */
    List<Sequence> drain() {
        List<Sequence> all = new ArrayList<>(active);
        all.addAll(preempted);
        all.addAll(waiting.drain());
        active.clear();
        preempted.clear();
        return all;
    }
}
