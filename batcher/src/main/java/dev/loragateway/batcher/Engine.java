package dev.loragateway.batcher;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
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
 *
 * <p>This class takes requests, runs the loop and watches its health; {@link StepPlanner} admits,
 * plans and runs each step; a {@link ForwardBackend} (CPU or CUDA) computes it.
 */
public final class Engine implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Engine.class);

    /**
     * A generation: the prompt, how to sample, the adapter (a key of the device tier, or null for
     * the base model), the tenant it is charged to, and where tokens go. The sink runs on the engine
     * thread and must be quick.
     */
    public record Request(int[] prompt, SamplingParams params, AdapterKey adapter, String tenant, Generator.TokenSink sink) {
        /** A request of the default tenant. */
        public Request(int[] prompt, SamplingParams params, AdapterKey adapter, Generator.TokenSink sink) {
            this(prompt, params, adapter, DEFAULT_TENANT, sink);
        }
    }

    /**
     * What one step held, counted as the cluster simulator's step-time model counts it
     * ({@code bench profile} fits that model to these).
     *
     * @param decodeRows   rows of sequences with one position left to compute (a decode)
     * @param promptTokens the other rows: prompt chunks being prefilled (or recomputed)
     * @param adapters     distinct adapters among the rows (the base model is none)
     * @param attended     positions attended over all rows (a row at position p attends to p + 1):
     *                     the attention work, which grows with the context
     */
    public record StepShape(int decodeRows, int promptTokens, int adapters, long attended) {
    }

    /** Hears of every step: what it held and how long it took. */
    @FunctionalInterface
    public interface StepListener {
        /**
         * Runs on the engine thread after each step; it must return at once.
         *
         * @param nanos the step's wall time: admission before it, planning, the forward pass, sampling
         */
        void step(StepShape shape, long nanos);
    }

    /**
     * Which adapters the engine's sequences use, as the engine thread last published it: those of
     * the running batch, and those of the sequences waiting (new requests in the fair queue and
     * preempted ones; a request still on its way from {@link #submit} to the engine thread is not
     * among them yet). The base model is no adapter. Read with {@link #adapterUse()}.
     *
     * @param running    adapters of the running batch
     * @param waiting    adapters of waiting sequences (an adapter may be in both)
     * @param sinceMillis wall-clock time (epoch ms) at which the engine thread first saw these two sets
     */
    public record AdapterUse(Set<AdapterKey> running, Set<AdapterKey> waiting, long sinceMillis) {
        public AdapterUse {
            running = Set.copyOf(running);
            waiting = Set.copyOf(waiting);
        }
    }

    /** One choice of a forked request: its sampling and its sink. */
    public record Choice(SamplingParams params, Generator.TokenSink sink) {
    }

    /** One prompt of a request and its choices ({@code n} of them), as {@link #submitForks} takes them. */
    public record Prompt(int[] tokens, List<Choice> choices) {
    }

    /**
     * How an engine runs; build with {@link #builder()} ({@link #defaults()}: every default). Sizes
     * below 1 count as 1 ({@code maxModelLen} below 0 as 0).
     *
     * @param maxBatch      most sequences running at once ({@code --max-batch})
     * @param maxQueued     most sequences waiting ({@code --max-queued}): a request's prompts × n count together
     * @param kvCacheBytes  KV pool size ({@code --kv-cache-mb}); 0: sized by {@link #kvBytes}
     * @param blockSize     positions per KV block
     * @param maxStepTokens rows per step: all decodes, then prefill chunks up to this
     * @param maxModelLen   positions one sequence may reach ({@code --max-model-len}), for sizing the KV pool
     *                      when {@code kvCacheBytes} is 0; 0: the model's {@code max_position_embeddings}
     * @param meter         where metrics go ({@link EngineMetrics}; a no-op meter costs nothing)
     * @param tracer        where spans go ({@link EngineSpans}; a no-op tracer costs nothing)
     * @param prefixCaching automatic prefix caching ({@link PrefixIndex}): full KV blocks are kept, keyed by
     *                      (tenant, adapter, tokens), and a prompt that starts with cached blocks of its own
     *                      tenant and adapter reuses them instead of recomputing them
     */
    public record Options(int maxBatch, int maxQueued, long kvCacheBytes, int blockSize, int maxStepTokens, int maxModelLen,
                          Meter meter, Tracer tracer, boolean prefixCaching) {
        public Options {
            maxBatch = Math.max(1, maxBatch);
            maxQueued = Math.max(1, maxQueued);
            blockSize = Math.max(1, blockSize);
            maxStepTokens = Math.max(1, maxStepTokens);
            maxModelLen = Math.max(0, maxModelLen);
        }

        /** Batches of 32, 1024 queued, a KV pool sized by {@link #kvBytes}, blocks of 16, steps of 512 rows, no telemetry, no prefix caching. */
        public static Options defaults() {
            return builder().build();
        }

        public static Builder builder() {
            return new Builder();
        }

        /**
         * The KV pool's size in bytes, the one rule every backend sizes by: {@code kvCacheBytes}
         * when set; else room for {@code maxBatch} sequences of {@code maxModelLen} positions (the
         * model's {@code max_position_embeddings} when 0), at most {@code cap} (the backend's share
         * of its memory: a quarter of the heap, or 80% of the device memory left once the weights
         * are placed).
         */
        public long kvBytes(ModelConfig cfg, long cap) {
            if (kvCacheBytes > 0) {
                return kvCacheBytes;
            }
            long length = maxModelLen > 0 ? maxModelLen : cfg.maxPositionEmbeddings();
            long blocksPerSequence = (length + blockSize - 1) / blockSize;
            return Math.min(cap, KvBlockPool.bytesPerBlock(cfg, blockSize) * (maxBatch * blocksPerSequence));
        }

        /** {@link Options} by name: each setter sets the component of its name; unset ones keep {@link #defaults()}. */
        public static final class Builder {
            private int maxBatch = 32;
            private int maxQueued = 1024;
            private long kvCacheBytes;
            private int blockSize = 16;
            private int maxStepTokens = 512;
            private int maxModelLen;
            private Meter meter = OpenTelemetry.noop().getMeter("lora-gateway");
            private Tracer tracer = OpenTelemetry.noop().getTracer("lora-gateway");
            private boolean prefixCaching;

            private Builder() {
            }

            public Builder maxBatch(int maxBatch) {
                this.maxBatch = maxBatch;
                return this;
            }

            public Builder maxQueued(int maxQueued) {
                this.maxQueued = maxQueued;
                return this;
            }

            public Builder kvCacheBytes(long bytes) {
                this.kvCacheBytes = bytes;
                return this;
            }

            public Builder blockSize(int positions) {
                this.blockSize = positions;
                return this;
            }

            public Builder maxStepTokens(int tokens) {
                this.maxStepTokens = tokens;
                return this;
            }

            public Builder maxModelLen(int positions) {
                this.maxModelLen = positions;
                return this;
            }

            public Builder meter(Meter meter) {
                this.meter = meter;
                return this;
            }

            public Builder tracer(Tracer tracer) {
                this.tracer = tracer;
                return this;
            }

            public Builder prefixCaching(boolean on) {
                this.prefixCaching = on;
                return this;
            }

            public Options build() {
                return new Options(maxBatch, maxQueued, kvCacheBytes, blockSize, maxStepTokens, maxModelLen, meter, tracer, prefixCaching);
            }
        }
    }

    public static final String DEFAULT_TENANT = "default";
    /** Tokens of credit per tenant turn. */
    public static final long QUANTUM = 256;
    private static final Object WAKE = new Object();

    private final LlamaModel model;
    private final ModelConfig cfg;
    private final ForwardBackend backend;
    private final StepForward pass;
    private final KvBlockPool kv;
    private final DeviceTier<AdapterKey> adapters;
    private final Options opts;
    private final EngineSpans spans;
    private final StepPlanner planner;
    private final LinkedBlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    private final AtomicInteger queued = new AtomicInteger();
    private final Thread thread;
    private volatile boolean closing;
    private volatile int runningNow;
    private volatile int preemptedNow;
    private volatile int kvUsed;
    private volatile int kvCached;
    private volatile AdapterUse adapterUse = new AdapterUse(Set.of(), Set.of(), System.currentTimeMillis());
    /** Engine thread only: the sets {@link #publish} fills each time, so that it allocates only when they changed. */
    private final Set<AdapterKey> runningScratch = new HashSet<>();
    private final Set<AdapterKey> waitingScratch = new HashSet<>();
    /** When the loop last finished a step, or last found nothing to do (the watchdog's clock). */
    private volatile long lastProgress = System.nanoTime();
    /** A moving average (1/8 weight per step) of a step's time, ns; 0 before the first step. */
    private volatile long stepNanosAverage;
    private volatile Runnable onAdmitOrFinish;
    /** Off (null) unless a bench listens: then one call per step. */
    private volatile StepListener onStep;
    /** When the step now running started, or 0 between steps. */
    private volatile long stepStarted;
    /** Why the loop ended when it ended abnormally, else null. */
    private volatile Throwable died;

    /**
     * An engine whose steps run on {@code backend}, which it closes when it closes.
     *
     * @param adapters the device tier requests' adapters are pinned in, or null for the base model only
     */
    public Engine(LlamaModel model, ForwardBackend backend, DeviceTier<AdapterKey> adapters, Options opts) {
        this.model = model;
        this.cfg = model.config();
        this.backend = backend;
        this.adapters = adapters;
        this.opts = opts;
        ForwardBackend.Forward forward = backend.open(model, adapters, opts);
        this.pass = forward.pass();
        this.kv = forward.kv();
        if (opts.prefixCaching()) {
            kv.enablePrefixCaching();
        }
        EngineMetrics metrics = new EngineMetrics(opts.meter(), () -> queued.get() + preemptedNow, () -> runningNow, () -> kvUsed,
            kv::total);
        this.spans = new EngineSpans(opts.tracer());
        this.planner = new StepPlanner(pass, kv, adapters, opts, metrics, spans, queued);
        if (adapters != null) {
            adapters.listener(() -> inbox.offer(WAKE));
        }
        this.thread = new Thread(this::loop, "engine");
        thread.setDaemon(true);
        thread.start();
    }

    /** An engine on the CPU ({@link CpuForwardBackend}); it closes {@code cpu} when it closes. */
    public Engine(LlamaModel model, CpuBackend cpu, DeviceTier<AdapterKey> adapters, Options opts) {
        this(model, new CpuForwardBackend(cpu), adapters, opts);
    }

    public Engine(LlamaModel model, CpuBackend cpu, DeviceTier<AdapterKey> adapters, int maxBatch, int maxQueued) {
        this(model, cpu, adapters, Options.builder().maxBatch(maxBatch).maxQueued(maxQueued).build());
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

    /**
     * The adapters of the running and of the waiting sequences, as of the engine thread's last
     * look (each admission pass and each step): a consistent pair, cheap to read from any thread.
     */
    public AdapterUse adapterUse() {
        return adapterUse;
    }

    /** Forward steps run so far. */
    public long steps() {
        return planner.steps();
    }

    /** Sequences preempted so far. */
    public long preemptions() {
        return planner.preemptions();
    }

    /** Sequences that left for another node when the KV pool ran dry ({@link Generator.MovableSink}) instead of being preempted. */
    public long movedAway() {
        return planner.moved();
    }

    /** The recent average time of one step in ms (0 before the first): what a node publishes to the cluster. */
    public double stepMillis() {
        return stepNanosAverage / 1e6;
    }

    /** Whether automatic prefix caching is on. */
    public boolean prefixCaching() {
        return kv.prefix() != null;
    }

    /** Prompt tokens looked up in the prefix cache so far (each admission of a sequence, recomputations included). */
    public long prefixCacheQueries() {
        return planner.prefixQueries();
    }

    /** Of {@link #prefixCacheQueries}, the tokens found cached (not computed again). */
    public long prefixCacheHits() {
        return planner.prefixHits();
    }

    /** KV blocks that hold cached content no sequence uses (counted as free: taken, least recently used first, when needed). */
    public int kvBlocksCached() {
        return kvCached;
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
    public List<CompletableFuture<Generator.Finish>> submitForks(int[] prompt, AdapterKey adapter, String tenant,
                                                              List<Choice> choices) {
        return submitAll(List.of(new Prompt(prompt, choices)), adapter, tenant).get(0);
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
    public List<List<CompletableFuture<Generator.Finish>>> submitAll(List<Prompt> prompts, AdapterKey adapter, String tenant) {
        int weight = check(prompts, adapter); // sequences that will wait in the queue
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
            Sequence lead = Sequence.lead(p.tokens(), p.choices(), adapter, t, cfg.eosTokenIds());
            List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
            lead.withForks().forEach(s -> fs.add(s.future));
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
            for (Sequence s : lead.withForks()) {
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

    /** Refuses a request the engine could never run, before anything is built; returns its queue weight. */
    private int check(List<Prompt> prompts, AdapterKey adapter) {
        if (prompts.isEmpty()) {
            throw new IllegalArgumentException("no prompts to generate");
        }
        int weight = 0;
        for (Prompt p : prompts) {
            if (p.choices().isEmpty()) {
                throw new IllegalArgumentException("no choices to generate");
            }
            for (Choice c : p.choices()) {
                weight += c.params().maxTokens() > 0 ? 1 : 0;
            }
        }
        if (weight > opts.maxQueued()) { // it could never wait in the queue
            throw new RequestTooLargeException(weight, prompts.size(), prompts.get(0).choices().size(), opts.maxQueued());
        }
        for (Prompt p : prompts) {
            if (p.choices().size() > opts.maxBatch()) { // it would never be admitted, and would block admission for everyone behind it
                throw new IllegalArgumentException("n = " + p.choices().size() + " choices of one prompt run in one batch, but a batch holds at most "
                    + opts.maxBatch() + " sequences (--max-batch)");
            }
            validate(p.tokens(), adapter);
            for (Choice c : p.choices()) {
                c.params().controls().checkVocabulary(cfg.vocabSize());
                long need = kv.blocksFor((long) p.tokens().length + c.params().maxTokens());
                if (need > kv.total()) {
                    throw new IllegalArgumentException("the prompt (" + p.tokens().length + " tokens) plus max_tokens ("
                        + c.params().maxTokens() + ") needs " + need + " KV-cache blocks of " + kv.blockSize()
                        + " positions, but the whole pool has " + kv.total() + " (raise --kv-cache-mb or lower max_tokens)");
                }
            }
        }
        return weight;
    }

    private void validate(int[] prompt, AdapterKey adapter) {
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
        return planner.faults();
    }

    /** The engine takes no work: it is shutting down, or its loop has stopped. */
    public static final class UnavailableException extends IllegalStateException {
        public UnavailableException(String message) {
            super(message);
        }
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
     * concerns ({@link StepPlanner#failStep}); the loop itself ends only on close or interrupt, and
     * if it ever ends otherwise, every request it holds fails at once instead of hanging.
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
            Object o = planner.running() ? inbox.poll() : inbox.poll(20, TimeUnit.MILLISECONDS);
            while (o != null) {
                if (o instanceof Sequence s) {
                    planner.enqueue(s);
                }
                o = inbox.poll();
            }
        } catch (InterruptedException e) {
            return false;
        }
        long admitStarted = System.nanoTime();
        try {
            planner.admit();
            if (!planner.running()) {
                if (!planner.waiting()) {
                    lastProgress = System.nanoTime(); // idle is not stalled
                }
                publish();
                return !(closing && !planner.waiting() && inbox.isEmpty());
            }
            publish();
            stepStarted = System.nanoTime();
            planner.step();
            lastProgress = System.nanoTime();
            long took = lastProgress - stepStarted;
            stepNanosAverage = stepNanosAverage == 0 ? took : (stepNanosAverage * 7 + took) / 8;
            StepListener listener = onStep;
            if (listener != null && planner.lastShape() != null) {
                listener.step(planner.lastShape(), lastProgress - admitStarted);
            }
        } catch (RuntimeException | Error e) {
            planner.failStep(e);
        } finally {
            stepStarted = 0;
        }
        publish();
        return true;
    }

    /** The loop has ended abnormally: nothing it holds may wait forever. */
    private void failEverything(Throwable why) {
        List<Sequence> all = planner.drain();
        for (Object o; (o = inbox.poll()) != null; ) {
            if (o instanceof Sequence s) {
                all.add(s);
            }
        }
        for (Sequence s : all) {
            for (Sequence m : s.withForks()) {
                m.future.completeExceptionally(why);
            }
        }
        queued.set(0);
        publish();
    }

    /** What other threads read of the engine thread's state. */
    private void publish() {
        int running = planner.runningCount();
        boolean changed = running != runningNow;
        runningNow = running;
        preemptedNow = planner.preemptedCount();
        kvUsed = kv.used();
        kvCached = kv.cachedFree();
        runningScratch.clear();
        waitingScratch.clear();
        planner.runningAdapters(runningScratch);
        planner.waitingAdapters(waitingScratch);
        AdapterUse was = adapterUse;
        if (!was.running().equals(runningScratch) || !was.waiting().equals(waitingScratch)) {
            adapterUse = new AdapterUse(runningScratch, waitingScratch, System.currentTimeMillis());
        }
        Runnable listener = onAdmitOrFinish;
        if (changed && listener != null) {
            try {
                listener.run();
            } catch (RuntimeException e) {
                LOG.warn("engine state listener failed", e);
            }
        }
    }

    /**
     * Runs {@code listener} on the engine thread whenever the running batch grows or shrinks (a
     * sequence admitted or finished): a cluster member publishes its state then. It must return at
     * once (queue work elsewhere) and never call back into the engine's submit.
     */
    public void onAdmitOrFinish(Runnable listener) {
        this.onAdmitOrFinish = listener;
    }

    /**
     * Runs {@code listener} on the engine thread after every step with what the step held and its
     * wall time ({@code bench profile} fits the simulator's step-time model to them); null turns it
     * off. Off by default: the engine then only keeps the last step's counts.
     */
    public void onStep(StepListener listener) {
        this.onStep = listener;
    }

    /** Stops taking work, finishes what is running and queued, then frees the pass and the backend. */
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
        backend.close();
    }
}
