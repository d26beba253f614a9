package dev.loragateway.batcher;

import dev.loragateway.batcher.cuda.CudaForwardPass;

import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cuda.CudaOps;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One node's engine: a single engine thread, off the HTTP event loops, running every admitted
 * sequence in one batch step by step (continuous batching at the iteration level, as Orca and
 * vLLM do). A step holds one row per running decode plus prompt chunks of prefilling sequences up
 * to {@code maxStepTokens} rows (chunked prefill: a long prompt does not stall everyone's
 * decoding), ordered by adapter slot so each adapter's rows form one SGMV segment.
 *
 * <p>Keys and values live in a paged {@link KvBlockPool}. A request is admitted when its prompt's
 * blocks are free; when the pool runs dry mid-generation, the newest running sequence is preempted:
 * its blocks are freed and it waits at the head of the queue to be recomputed (prompt plus tokens
 * so far) once blocks free up. The oldest sequence always runs, so every request finishes.
 *
 * <p>Waiting requests are admitted fairly across tenants ({@link FairQueue}: deficit round-robin
 * over tokens), skipping requests whose adapter is still being paged in. {@code n > 1} choices of
 * one prompt ({@link #submitForks}) prefill once and fork, sharing the prompt's blocks.
 */
public final class Engine implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Engine.class);

    /**
     * A generation: the prompt, how to sample, the adapter (a key of the device tier, or null for
     * the base model), the tenant it is charged to, and where tokens go. The sink runs on the engine
     * thread and must be quick.
     */
    public record Request(int[] prompt, SamplingParams params, Object adapter, String tenant, Generator.TokenSink sink) {
        /** A request of the default tenant. */
        public Request(int[] prompt, SamplingParams params, Object adapter, Generator.TokenSink sink) {
            this(prompt, params, adapter, DEFAULT_TENANT, sink);
        }
    }

    /** One choice of a forked request: its sampling and its sink. */
    public record Choice(SamplingParams params, Generator.TokenSink sink) {
    }

    /**
     * @param maxBatch      most sequences running at once ({@code --max-batch})
     * @param maxQueued     most sequences waiting ({@code --max-queued}): a request's prompts × n count together
     * @param kvCacheBytes  KV pool size ({@code --kv-cache-mb}); 0: room for {@code maxBatch}
     *                      sequences of the model's full context, at most a quarter of the heap
     * @param blockSize     positions per KV block
     * @param maxStepTokens rows per step: all decodes, then prefill chunks up to this
     * @param meter         where metrics go (a no-op meter costs nothing)
     * @param tracer        where spans go ({@link EngineSpans}; a no-op tracer costs nothing)
     */
    public record Options(int maxBatch, int maxQueued, long kvCacheBytes, int blockSize, int maxStepTokens, Meter meter,
                          Tracer tracer, CudaOps cuda) {
        public static Options defaults() {
            return new Options(32, 1024, 0, 16, 512, OpenTelemetry.noop().getMeter("lora-gateway"),
                OpenTelemetry.noop().getTracer("lora-gateway"), null);
        }

        /**
         * Run the steps on this CUDA device ({@link CudaForwardPass}) instead of the CPU; the KV cache
         * then lives on the device ({@code kvCacheBytes} of it; 0: room for {@code maxBatch} sequences
         * of the model's length, at most a third of the device memory free now).
         */
        public Options withCuda(CudaOps ops) {
            return new Options(maxBatch, maxQueued, kvCacheBytes, blockSize, maxStepTokens, meter, tracer, ops);
        }

        public Options withBatch(int maxBatch, int maxQueued) {
            return new Options(maxBatch, maxQueued, kvCacheBytes, blockSize, maxStepTokens, meter, tracer, cuda);
        }

        public Options withKvCache(long bytes, int blockSize) {
            return new Options(maxBatch, maxQueued, bytes, blockSize, maxStepTokens, meter, tracer, cuda);
        }

        public Options withMaxStepTokens(int tokens) {
            return new Options(maxBatch, maxQueued, kvCacheBytes, blockSize, tokens, meter, tracer, cuda);
        }

        public Options withMeter(Meter meter) {
            return new Options(maxBatch, maxQueued, kvCacheBytes, blockSize, maxStepTokens, meter, tracer, cuda);
        }

        public Options withTracer(Tracer tracer) {
            return new Options(maxBatch, maxQueued, kvCacheBytes, blockSize, maxStepTokens, meter, tracer, cuda);
        }
    }

    public static final String DEFAULT_TENANT = "default";
    /** Tokens of credit per tenant turn. */
    static final long QUANTUM = 256;
    private static final Object WAKE = new Object();

    private final LlamaModel model;
    private final ModelConfig cfg;
    private final CpuBackend cpu;
    private final StepForward pass;
    private final DeviceTier<Object> adapters;
    private final Options opts;
    private final KvBlockPool kv;
    private final EngineMetrics metrics;
    private final EngineSpans spans;
    private final LinkedBlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    private final AtomicInteger queued = new AtomicInteger();
    private final Thread thread;
    private volatile boolean closing;
    private final StepBatch batch = new StepBatch();
    private final float[] logits;
    private final FairQueue waiting = new FairQueue(QUANTUM);
    private final List<Sequence> preempted = new ArrayList<>(); // oldest first; admitted before new requests
    private final List<Sequence> active = new ArrayList<>();
    private final Scheduler scheduler;
    private long nextOrder;
    private volatile int runningNow;
    private volatile int preemptedNow;
    private volatile int kvUsed;
    private volatile long steps;
    private volatile long preemptions;
    /** When the loop last finished a step, or last found nothing to do (the watchdog's clock). */
    private volatile long lastProgress = System.nanoTime();
    /** When the step now running started, or 0 between steps. */
    private volatile long stepStarted;
    /** Why the loop ended when it ended abnormally, else null. */
    private volatile Throwable died;
    /** Failures of single steps or sequences the loop survived. */
    private volatile long faults;

    public Engine(LlamaModel model, CpuBackend cpu, DeviceTier<Object> adapters, Options opts) {
        this.model = model;
        this.cfg = model.config();
        this.cpu = cpu;
        this.adapters = adapters;
        this.opts = new Options(Math.max(1, opts.maxBatch()), Math.max(1, opts.maxQueued()), opts.kvCacheBytes(),
            Math.max(1, opts.blockSize()), Math.max(1, opts.maxStepTokens()), opts.meter(), opts.tracer(), opts.cuda());
        long wanted = KvBlockPool.bytesPerBlock(cfg, this.opts.blockSize())
            * ((long) this.opts.maxBatch() * ((cfg.maxPositionEmbeddings() + this.opts.blockSize() - 1) / this.opts.blockSize()));
        if (opts.cuda() == null) {
            this.pass = new ForwardPass(model, cpu, adapters == null ? null : adapters.pool());
            long bytes = opts.kvCacheBytes() > 0 ? opts.kvCacheBytes() : Math.min(Runtime.getRuntime().maxMemory() / 4, wanted);
            this.kv = KvBlockPool.ofBytes(cfg, bytes, this.opts.blockSize());
        } else {
            long free = opts.cuda().context().pool().limitBytes() - opts.cuda().context().pool().usedBytes();
            // the device tier's byte budget (float32 bytes of the resident adapters) plus a quarter for
            // fragmentation, at most a quarter of what the device pool may still take (no overflow for huge budgets)
            long budget = adapters == null ? 0 : adapters.byteBudget();
            long loraBytes = adapters == null ? 0
                : budget >= free / 4 ? free / 4 : Math.min(free / 4, budget + budget / 4 + 256L * adapters.pool().slots());
            CudaForwardPass cp = new CudaForwardPass(model, opts.cuda(), adapters == null ? null : adapters.pool(), loraBytes,
                opts.kvCacheBytes() > 0 ? opts.kvCacheBytes() : wanted, opts.kvCacheBytes() <= 0, this.opts.blockSize());
            this.pass = cp;
            this.kv = cp.kvPool();
        }
        this.logits = new float[this.opts.maxBatch() * cfg.vocabSize()];
        this.metrics = new EngineMetrics(opts.meter(), () -> queued.get() + preemptedNow, () -> runningNow, () -> kvUsed,
            kv::total);
        this.spans = new EngineSpans(this.opts.tracer());
        this.scheduler = new Scheduler();
        if (adapters != null) {
            adapters.listener(() -> inbox.offer(WAKE));
        }
        this.thread = new Thread(this::loop, "engine");
        thread.setDaemon(true);
        thread.start();
    }

    public Engine(LlamaModel model, CpuBackend cpu, DeviceTier<Object> adapters, int maxBatch, int maxQueued) {
        this(model, cpu, adapters, Options.defaults().withBatch(maxBatch, maxQueued));
    }

    /** A base-model-only engine. */
    public Engine(LlamaModel model, CpuBackend cpu, int maxQueued) {
        this(model, cpu, null, 32, maxQueued);
    }

    public LlamaModel model() {
        return model;
    }

    public Options options() {
        return opts;
    }

    /** Sequences of new requests waiting to join the batch (what {@code maxQueued} bounds). */
    public int queued() {
        return queued.get();
    }

    /** Sequences in the running batch. */
    public int running() {
        return runningNow;
    }

    /** Preempted sequences waiting to be recomputed. */
    public int preemptedWaiting() {
        return preemptedNow;
    }

    /** Forward steps run so far. */
    public long steps() {
        return steps;
    }

    /** Sequences preempted so far. */
    public long preemptions() {
        return preemptions;
    }

    /** KV blocks in the pool. */
    public int kvBlocksTotal() {
        return kv.total();
    }

    /** KV blocks held by sequences (as of the last step). */
    public int kvBlocksUsed() {
        return kvUsed;
    }

    /** Positions per KV block. */
    public int kvBlockSize() {
        return kv.blockSize();
    }

    /**
     * Queues a generation. The future completes with the finish reason once the last token went to
     * the sink, or exceptionally (an {@link AdapterLoadException} when its adapter cannot load);
     * cancelling it stops the generation at the next step and frees its blocks and adapter pin.
     *
     * @throws QueueFullException when {@code maxQueued} sequences already wait
     * @throws IllegalArgumentException for an empty prompt, a token outside the vocabulary, or a
     *     request whose prompt plus {@code max_tokens} cannot fit in the whole KV pool
     * @throws IllegalStateException when the engine is closing
     */
    public CompletableFuture<Generator.Finish> submit(Request req) {
        return submitForks(req.prompt(), req.adapter(), req.tenant(), List.of(new Choice(req.params(), req.sink()))).get(0);
    }

    /**
     * Queues {@code choices.size()} generations of one prompt that share its prefill: the prompt
     * is computed once, then each choice forks off with the prompt's KV blocks shared (copied on
     * write). Futures come in choice order; each may be cancelled on its own. Each choice gets a
     * span ({@link EngineSpans}) under the caller's current OpenTelemetry context.
     */
    public List<CompletableFuture<Generator.Finish>> submitForks(int[] prompt, Object adapter, String tenant, List<Choice> choices) {
        return submitAll(List.of(new Prompt(prompt, choices)), adapter, tenant).get(0);
    }

    /** One prompt of a request and its choices ({@code n} of them), as {@link #submitForks} takes them. */
    public record Prompt(int[] tokens, List<Choice> choices) {
    }

    /**
     * Queues every prompt of one request (each as {@link #submitForks}), all or none: the request's
     * sequences (prompts × choices, those with {@code max_tokens} > 0) count against
     * {@code maxQueued} together, so a request is never half queued. Futures come per prompt, in
     * choice order.
     *
     * @throws RequestTooLargeException when the request alone has more sequences than
     *     {@code maxQueued}: it could never be queued
     * @throws QueueFullException when it would fit an empty queue but not the sequences waiting now
     * @throws IllegalArgumentException for a prompt {@link #submit} refuses
     */
    public List<List<CompletableFuture<Generator.Finish>>> submitAll(List<Prompt> prompts, Object adapter, String tenant) {
        if (prompts.isEmpty()) {
            throw new IllegalArgumentException("no prompts to generate");
        }
        int weight = 0; // sequences that will wait in the queue
        for (Prompt p : prompts) {
            if (p.choices().isEmpty()) {
                throw new IllegalArgumentException("no choices to generate");
            }
            for (Choice c : p.choices()) {
                weight += c.params().maxTokens() > 0 ? 1 : 0;
            }
        }
        if (weight > opts.maxQueued()) { // before anything is built: it could never wait in the queue
            throw new RequestTooLargeException(weight, prompts.size(), prompts.get(0).choices().size(), opts.maxQueued());
        }
        for (Prompt p : prompts) {
            if (p.choices().size() > opts.maxBatch()) { // it would never be admitted, and would block admission for everyone behind it
                throw new IllegalArgumentException("n = " + p.choices().size() + " choices of one prompt run in one batch, but a batch holds at most "
                    + opts.maxBatch() + " sequences (--max-batch)");
            }
            validate(p.tokens(), adapter);
            for (Choice c : p.choices()) {
                long need = kv.blocksFor((long) p.tokens().length + c.params().maxTokens());
                if (need > kv.total()) {
                    throw new IllegalArgumentException("the prompt (" + p.tokens().length + " tokens) plus max_tokens ("
                        + c.params().maxTokens() + ") needs " + need + " KV-cache blocks of " + kv.blockSize()
                        + " positions, but the whole pool has " + kv.total() + " (raise --kv-cache-mb or lower max_tokens)");
                }
            }
        }
        if (closing) {
            throw new UnavailableException("the engine is shutting down");
        }
        if (died != null || !thread.isAlive()) {
            throw new UnavailableException("the engine has stopped: " + died);
        }
        String t = tenant == null ? DEFAULT_TENANT : tenant;
        List<List<CompletableFuture<Generator.Finish>>> futures = new ArrayList<>();
        List<Sequence> leads = new ArrayList<>();
        for (Prompt p : prompts) {
            List<Sequence> forks = new ArrayList<>();
            for (int i = 1; i < p.choices().size(); i++) {
                Choice c = p.choices().get(i);
                forks.add(new Sequence(new Request(p.tokens(), c.params(), adapter, t, c.sink()), t, null));
            }
            Choice first = p.choices().get(0);
            Sequence lead = new Sequence(new Request(p.tokens(), first.params(), adapter, t, first.sink()), t,
                forks.isEmpty() ? null : forks);
            List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
            for (Sequence s : allOf(lead)) {
                fs.add(s.future);
                if (s.req.params().maxTokens() > 0) {
                    lead.queueWeight++;
                }
            }
            futures.add(fs);
            if (lead.queueWeight > 0) {
                leads.add(lead);
            }
        }
        reserveQueue(weight);
        for (int p = 0; p < prompts.size(); p++) { // choices with nothing to generate are done at once
            List<Choice> choices = prompts.get(p).choices();
            for (int i = 0; i < choices.size(); i++) {
                if (choices.get(i).params().maxTokens() == 0) {
                    futures.get(p).get(i).complete(Generator.Finish.LENGTH);
                }
            }
        }
        if (leads.isEmpty()) {
            return futures;
        }
        if (adapter != null) {
            adapters.prefetch(adapter);
        }
        Context parent = Context.current();
        for (Sequence lead : leads) {
            for (Sequence s : allOf(lead)) {
                if (!s.future.isDone()) {
                    spans.start(s, parent);
                }
            }
        }
        leads.forEach(inbox::offer);
        return futures;
    }

    /** Takes {@code weight} (at most {@code maxQueued}) places of the queue for one request, all at once, or throws. */
    private void reserveQueue(int weight) {
        while (weight > 0) {
            int now = queued.get();
            if (now + weight > opts.maxQueued()) {
                throw new QueueFullException(now, weight, opts.maxQueued());
            }
            if (queued.compareAndSet(now, now + weight)) {
                return;
            }
        }
    }

    private void validate(int[] prompt, Object adapter) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt is empty");
        }
        for (int t : prompt) {
            if (t < 0 || t >= cfg.vocabSize()) {
                throw new IllegalArgumentException("token id " + t + " is outside the vocabulary (size " + cfg.vocabSize() + ")");
            }
        }
        if (adapter != null && adapters == null) {
            throw new IllegalArgumentException("this engine serves the base model only");
        }
    }

    static List<Sequence> allOf(Sequence lead) {
        List<Sequence> all = new ArrayList<>();
        all.add(lead);
        if (lead.forks != null) {
            all.addAll(lead.forks);
        }
        return all;
    }

    /** The engine takes no work: it is shutting down, or its loop has stopped. */
    public static final class UnavailableException extends IllegalStateException {
        public UnavailableException(String message) {
            super(message);
        }
    }

    /**
     * Why this engine cannot serve now, or null when it can: its loop has ended (it was closed, or
     * died), or work waits and no step has finished for {@code stallNanos} (a step that hangs, or
     * waiting work that never gets admitted).
     */
    public String unhealthy(long stallNanos) {
        if (died != null) {
            return "the engine loop died: " + died;
        }
        if (!thread.isAlive()) {
            return "the engine loop has stopped";
        }
        long now = System.nanoTime();
        long started = stepStarted;
        if (started != 0 && now - started > stallNanos) {
            return String.format("an engine step has been running for %.1f s (%d sequences in it)", (now - started) / 1e9, runningNow);
        }
        long idle = now - lastProgress;
        boolean work = queued.get() > 0 || runningNow > 0 || preemptedNow > 0;
        if (work && idle > stallNanos) {
            return String.format("the engine has finished no step for %.1f s while %d requests wait and %d sequences run",
                idle / 1e9, queued.get() + preemptedNow, runningNow);
        }
        return null;
    }

    /** Failures of one step or one sequence that the loop survived (each failed only what it concerned). */
    public long faults() {
        return faults;
    }

    /** The request would fit an empty queue, but not next to the sequences waiting now: retry later (429). */
    public static final class QueueFullException extends RuntimeException {
        public QueueFullException(int queued, int needed, int maxQueued) {
            super("the server is at capacity: " + queued + " sequences are already queued and this request needs " + needed
                + " more, over the limit of " + maxQueued + " (--max-queued); retry later");
        }
    }

    /** The request alone has more sequences than the whole queue holds: it can never be queued (400). */
    public static final class RequestTooLargeException extends IllegalArgumentException {
        public RequestTooLargeException(int sequences, int prompts, int n, int maxQueued) {
            super("this request needs " + sequences + " sequences (" + prompts + (prompts == 1 ? " prompt" : " prompts") + " × n = "
                + n + "), more than the " + maxQueued + " that may wait in the queue (--max-queued); send fewer prompts or a smaller n");
        }
    }

    // ---- the engine thread ------------------------------------------------------------------

    /**
     * The engine thread. Whatever one step or one sequence throws fails only the requests it
     * concerns ({@link #survive}); the loop itself ends only on close or interrupt, and if it ever
     * ends otherwise, every request it holds fails at once instead of hanging.
     */
    private void loop() {
        try {
            while (iterate()) {
                // one admission pass and one step per iteration
            }
        } catch (Throwable t) {
            died = t;
            LOG.error("the engine loop died; failing every request it held", t);
        } finally {
            if (died != null || !closing) {
                failEverything(died != null ? died : new UnavailableException("the engine loop stopped"));
            }
        }
    }

    /** One admission pass and one step; false once closed and idle, or interrupted. */
    private boolean iterate() {
        try {
            Object o = active.isEmpty() ? inbox.poll(20, TimeUnit.MILLISECONDS) : inbox.poll();
            while (o != null) {
                if (o instanceof Sequence s) {
                    waiting.add(s);
                }
                o = inbox.poll();
            }
        } catch (InterruptedException e) {
            return false;
        }
        try {
            scheduler.admit();
            if (active.isEmpty()) {
                if (waiting.size() == 0 && preempted.isEmpty()) {
                    lastProgress = System.nanoTime(); // idle is not stalled
                }
                publish();
                return !(closing && waiting.size() == 0 && preempted.isEmpty() && inbox.isEmpty());
            }
            publish();
            stepStarted = System.nanoTime();
            scheduler.step();
            lastProgress = System.nanoTime();
        } catch (RuntimeException | Error e) {
            survive(e);
        } finally {
            stepStarted = 0;
        }
        publish();
        return true;
    }

    /**
     * A step failed as a whole (the forward pass, or the planning around it): the sequences of the
     * running batch fail with it; waiting and preempted ones go on. Releasing a failed sequence's
     * blocks or pin must not throw the loop out either.
     */
    private void survive(Throwable e) {
        faults++;
        LOG.error("an engine step failed; failing the {} sequences of its batch", active.size(), e);
        for (Sequence s : new ArrayList<>(active)) {
            finishQuietly(s, e);
        }
        active.clear();
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

    /** The loop has ended abnormally: nothing it holds may wait forever. */
    private void failEverything(Throwable why) {
        List<Sequence> all = new ArrayList<>(active);
        all.addAll(preempted);
        all.addAll(waiting.drain());
        for (Object o; (o = inbox.poll()) != null; ) {
            if (o instanceof Sequence s) {
                all.add(s);
            }
        }
        for (Sequence s : all) {
            for (Sequence m : allOf(s)) {
                m.future.completeExceptionally(why);
            }
        }
        active.clear();
        preempted.clear();
        queued.set(0);
        publish();
    }

    private void publish() {
        runningNow = active.size();
        preemptedNow = preempted.size();
        kvUsed = kv.used();
    }

    /** Admission, step planning (budget, blocks, preemption) and the step itself. */
    private final class Scheduler implements FairQueue.Gate {
        /** A sequence's rows in this step. */
        private record Plan(Sequence s, int rows) {
        }

        private final List<Plan> planned = new ArrayList<>();

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
            s.cache = new KvCache(kv);
            s.cache.ensureCapacity(s.len);
            active.add(s);
            long now = System.nanoTime();
            for (Sequence m : allOf(s)) { // forks run from their lead's admission on
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
                for (Sequence m : allOf(s)) {
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

        /** Plans and runs one step. */
        void step() {
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
            for (Plan plan : planned) {
                Sequence s = plan.s();
                int from = s.computed();
                int to = from + plan.rows();
                for (int p = from; p < to; p++) {
                    batch.add(s.cache, s.tokens[p], p == s.len - 1, s.slot);
                }
                if (to == s.len) {
                    outputs.add(s);
                }
            }
            pass.step(batch, logits);
            steps++;
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
            List<Sequence> members = allOf(lead);
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
                int token = s.sampler.sample(logits, k * vocab, vocab);
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
                if (cfg.isEos(token) || !more) {
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
    }

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

    /** Stops taking work, finishes what is running and queued, then frees the kernels' threads. */
    @Override
    public void close() {
        closing = true;
        inbox.offer(WAKE);
        try {
            thread.join(TimeUnit.MINUTES.toMillis(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pass.close();
        cpu.close();
    }
}
