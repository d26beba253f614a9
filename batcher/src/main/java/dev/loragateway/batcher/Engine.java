package dev.loragateway.batcher;

import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.CpuBackend;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One node's engine: a single engine thread (off the HTTP event loops) that runs every admitted
 * sequence in one batch, step by step (iteration-level batching, as Orca and vLLM do). Each step
 * holds the decode rows of all running sequences plus the prompt rows of newly admitted ones,
 * ordered by adapter slot so rows of one adapter form one SGMV segment. A sequence leaves the batch
 * the step it finishes; a waiting one joins the next step.
 *
 * <p>Admission is first come, first served up to {@code maxBatch} running sequences, except that a
 * request whose adapter is not resident yet is skipped (its adapter is loading; it waits without
 * holding back the requests behind it). Requests beyond {@code maxQueued} waiting ones are refused
 * with {@link QueueFullException}.
 */
public final class Engine implements AutoCloseable {
    /**
     * A generation: the prompt, how to sample, the adapter (a key of the device tier, or null for
     * the base model), and where tokens go. The sink runs on the engine thread and must be quick.
     */
    public record Request(int[] prompt, SamplingParams params, Object adapter, Generator.TokenSink sink) {
    }

    private static final Object WAKE = new Object();

    private final LlamaModel model;
    private final ModelConfig cfg;
    private final CpuBackend cpu;
    private final ForwardPass pass;
    private final DeviceTier<Object> adapters;
    private final int maxBatch;
    private final int maxQueued;
    private final LinkedBlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    private final AtomicInteger queued = new AtomicInteger();
    private final AtomicInteger running = new AtomicInteger();
    private final Thread thread;
    private volatile boolean closing;
    private final StepBatch batch = new StepBatch();
    private final float[] logits;
    private long steps;

    /** A sequence in the engine. Touched by the engine thread only, except {@link #future}. */
    private final class Sequence {
        final Request req;
        final CompletableFuture<Generator.Finish> future = new CompletableFuture<>();
        final Sampler sampler;
        KvCache cache;
        int slot = -1;
        boolean pinned;
        boolean prefilled;
        int next;        // the token to feed at the next decode step
        int generated;

        Sequence(Request req) {
            this.req = req;
            this.sampler = new Sampler(req.params());
        }
    }

    private final LinkedList<Sequence> waiting = new LinkedList<>();
    private final List<Sequence> active = new ArrayList<>();

    /**
     * @param adapters the device tier rows' adapters come from (null: base model only)
     * @param maxBatch most sequences running at once ({@code --max-batch})
     * @param maxQueued most requests waiting ({@code --max-queued})
     */
    public Engine(LlamaModel model, CpuBackend cpu, DeviceTier<Object> adapters, int maxBatch, int maxQueued) {
        this.model = model;
        this.cfg = model.config();
        this.cpu = cpu;
        this.adapters = adapters;
        this.pass = new ForwardPass(model, cpu, adapters == null ? null : adapters.pool());
        this.maxBatch = Math.max(1, maxBatch);
        this.maxQueued = Math.max(1, maxQueued);
        this.logits = new float[this.maxBatch * cfg.vocabSize()];
        if (adapters != null) {
            adapters.listener(() -> inbox.offer(WAKE));
        }
        this.thread = new Thread(this::loop, "engine");
        thread.setDaemon(true);
        thread.start();
    }

    /** A base-model-only engine. */
    public Engine(LlamaModel model, CpuBackend cpu, int maxQueued) {
        this(model, cpu, null, 32, maxQueued);
    }

    public LlamaModel model() {
        return model;
    }

    /** Requests waiting to join the batch. */
    public int queued() {
        return queued.get();
    }

    /** Sequences in the running batch. */
    public int running() {
        return running.get();
    }

    /** Forward steps run so far. */
    public long steps() {
        return steps;
    }

    /**
     * Queues a generation. The future completes with the finish reason once the last token went to
     * the sink, or exceptionally (an {@link AdapterLoadException} when its adapter cannot load);
     * cancelling it stops the generation at the next step.
     *
     * @throws QueueFullException when {@code maxQueued} requests already wait
     * @throws IllegalArgumentException for an empty prompt or a token outside the vocabulary
     * @throws IllegalStateException when the engine is closing
     */
    public CompletableFuture<Generator.Finish> submit(Request req) {
        if (req.prompt().length == 0) {
            throw new IllegalArgumentException("the prompt is empty");
        }
        for (int t : req.prompt()) {
            if (t < 0 || t >= cfg.vocabSize()) {
                throw new IllegalArgumentException("token id " + t + " is outside the vocabulary (size " + cfg.vocabSize() + ")");
            }
        }
        if (req.adapter() != null && adapters == null) {
            throw new IllegalArgumentException("this engine serves the base model only");
        }
        if (closing) {
            throw new IllegalStateException("the engine is shutting down");
        }
        Sequence s = new Sequence(req);
        if (req.params().maxTokens() == 0) {
            s.future.complete(Generator.Finish.LENGTH);
            return s.future;
        }
        if (queued.incrementAndGet() > maxQueued) {
            queued.decrementAndGet();
            throw new QueueFullException(maxQueued);
        }
        if (req.adapter() != null) {
            adapters.prefetch(req.adapter());
        }
        inbox.offer(s);
        return s.future;
    }

    /** Too many requests wait already. */
    public static final class QueueFullException extends RuntimeException {
        public QueueFullException(int queued) {
            super("the server is at capacity: " + queued + " requests are already queued; retry later");
        }
    }

    // ---- the engine thread ------------------------------------------------------------------

    private void loop() {
        while (true) {
            try {
                Object o = active.isEmpty() ? inbox.poll(20, TimeUnit.MILLISECONDS) : inbox.poll();
                while (o != null) {
                    if (o instanceof Engine.Sequence s) {
                        waiting.addLast(s);
                    }
                    o = inbox.poll();
                }
            } catch (InterruptedException e) {
                return;
            }
            admit();
            if (active.isEmpty()) {
                if (closing && waiting.isEmpty() && inbox.isEmpty()) {
                    return;
                }
                continue;
            }
            try {
                step();
            } catch (RuntimeException | Error e) {
                for (Sequence s : active) {
                    finish(s, null, e);
                }
                active.clear();
            }
            running.set(active.size());
        }
    }

    private void admit() {
        for (Iterator<Sequence> it = waiting.iterator(); it.hasNext() && active.size() < maxBatch; ) {
            Sequence s = it.next();
            if (s.future.isDone()) { // cancelled while waiting
                it.remove();
                queued.decrementAndGet();
                continue;
            }
            if (s.req.adapter() != null) {
                int slot;
                try {
                    slot = adapters.tryPin(s.req.adapter());
                } catch (AdapterLoadException e) {
                    it.remove();
                    queued.decrementAndGet();
                    s.future.completeExceptionally(e);
                    continue;
                }
                if (slot == DeviceTier.NOT_READY) {
                    continue;
                }
                s.slot = slot;
                s.pinned = true;
            }
            it.remove();
            queued.decrementAndGet();
            s.cache = new KvCache(cfg, s.req.prompt().length + Math.min(s.req.params().maxTokens(), 256));
            active.add(s);
        }
        running.set(active.size());
    }

    private void step() {
        active.sort(Comparator.comparingInt(s -> s.slot));
        batch.clear();
        for (Sequence s : active) {
            if (!s.prefilled) {
                int[] p = s.req.prompt();
                for (int i = 0; i < p.length; i++) {
                    batch.add(s.cache, p[i], i == p.length - 1, s.slot);
                }
            } else {
                batch.add(s.cache, s.next, true, s.slot);
            }
        }
        pass.step(batch, logits);
        steps++;
        int vocab = cfg.vocabSize();
        for (int i = 0; i < active.size(); i++) {
            Sequence s = active.get(i);
            s.prefilled = true;
            if (s.future.isDone()) { // cancelled
                finish(s, null, null);
                continue;
            }
            Generator.Finish end = null;
            try {
                int token = s.sampler.sample(logits, i * vocab, vocab);
                SamplingParams p = s.req.params();
                Sampler.Logprobs lp = p.logprobs() >= 0 ? Sampler.logprobs(logits, i * vocab, vocab, token, p.logprobs()) : null;
                s.generated++;
                s.next = token;
                boolean more = s.req.sink().accept(token, lp);
                if (cfg.isEos(token) || !more) {
                    end = Generator.Finish.STOP;
                } else if (s.generated >= p.maxTokens()) {
                    end = Generator.Finish.LENGTH;
                }
            } catch (RuntimeException e) {
                finish(s, null, e);
                continue;
            }
            if (end != null) {
                finish(s, end, null);
            }
        }
        active.removeIf(s -> s.cache == null);
    }

    /** Ends {@code s}: unpins its adapter, drops its cache, completes its future. */
    private void finish(Sequence s, Generator.Finish end, Throwable failure) {
        if (s.pinned) {
            adapters.unpin(s.req.adapter());
            s.pinned = false;
        }
        s.cache = null;
        if (failure != null) {
            s.future.completeExceptionally(failure);
        } else if (end != null) {
            s.future.complete(end);
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
        cpu.close();
    }
}
