package dev.loragateway.batcher;

import dev.loragateway.adapters.AdapterKey;
import io.opentelemetry.api.trace.Span;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A sequence in the {@link Engine}: its tokens so far (prompt, then generated), where its keys and
 * values live, its adapter pin and its sampler. The KV cache holds the first {@code cache.length()}
 * tokens; the rest are fed at the next steps (a prefill in chunks, then one token per decode).
 * After a preemption the cache is gone and every token is fed again (recomputation).
 *
 * <p>Touched by the engine thread only, except {@link #future} (cancelled by callers).
 */
final class Sequence {
    final Engine.Request req;
    final String tenant;
    final CompletableFuture<Generator.Finish> future = new CompletableFuture<>();
    final Sampler sampler;
    final long submitted = System.nanoTime();
    /** Fair-admission cost: prompt tokens plus the most it may generate, for it and its forks. */
    final long cost;
    int[] tokens;
    int len;
    KvCache cache;
    int slot = -1;
    boolean pinned;
    /** Admission order: the largest is the newest, the first to be preempted. */
    long order;
    int generated;
    long firstToken;
    long lastToken;
    /** Whether it has joined the running batch yet; its preemptions so far. */
    boolean admitted;
    int preemptions;
    /** Its {@link EngineSpans} span, set before it is queued. */
    Span span = Span.getInvalid();
    /** Sequences to fork off this one's prompt once it is computed ({@code n > 1}), or null. */
    List<Sequence> forks;
    /**
     * Places of the engine's queue bound ({@code --max-queued}) this lead holds while it waits: it
     * and its forks, those with tokens to generate. Set at submit, given back when it leaves the queue.
     */
    int queueWeight;

    /** @param eos the model's end-of-sequence tokens (masked until {@code min_tokens}) */
    Sequence(Engine.Request req, String tenant, List<Sequence> forks, int[] eos) {
        this.req = req;
        this.tenant = tenant;
        this.sampler = new Sampler(req.params(), eos);
        this.forks = forks;
        int[] p = req.prompt();
        this.tokens = Arrays.copyOf(p, p.length + Math.min(Math.max(req.params().maxTokens(), 1), 64));
        this.len = p.length;
        this.cost = (long) p.length + (long) req.params().maxTokens() * width();
    }

    /**
     * The sequences of one prompt's choices: the first choice leads, the others fork off it once the
     * prompt is computed. The lead holds a place of the queue for each that has tokens to generate.
     */
    static Sequence lead(int[] prompt, List<Engine.Choice> choices, AdapterKey adapter, String tenant, int[] eos) {
        List<Sequence> forks = new ArrayList<>();
        for (Engine.Choice c : choices.subList(1, choices.size())) {
            forks.add(new Sequence(new Engine.Request(prompt, c.params(), adapter, tenant, c.sink()), tenant, null, eos));
        }
        Engine.Choice first = choices.get(0);
        Sequence lead = new Sequence(new Engine.Request(prompt, first.params(), adapter, tenant, first.sink()), tenant,
            forks.isEmpty() ? null : forks, eos);
        for (Sequence s : lead.withForks()) {
            if (s.req.params().maxTokens() > 0) {
                lead.queueWeight++;
            }
        }
        return lead;
    }

    /** This sequence and the forks still to come off it ({@code n > 1}). */
    List<Sequence> withForks() {
        List<Sequence> all = new ArrayList<>();
        all.add(this);
        if (forks != null) {
            all.addAll(forks);
        }
        return all;
    }

    /** Running sequences this one stands for: itself and the forks still to come. */
    int width() {
        return 1 + (forks == null ? 0 : forks.size());
    }

    /** Tokens already in the KV cache. */
    int computed() {
        return cache == null ? 0 : cache.length();
    }

    void append(int token) {
        if (len == tokens.length) {
            tokens = Arrays.copyOf(tokens, tokens.length * 2);
        }
        tokens[len++] = token;
    }

    /** Nobody waits for this sequence or its forks any more (all were cancelled or finished). */
    boolean abandoned() {
        if (!future.isDone()) {
            return false;
        }
        if (forks != null) {
            for (Sequence f : forks) {
                if (!f.future.isDone()) {
                    return false;
                }
            }
        }
        return true;
    }
}
