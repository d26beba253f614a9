package dev.loragateway.batcher;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.Predicate;
import java.util.function.ToLongFunction;

/**
 * Waiting requests, one FIFO per tenant, served by deficit round-robin over tokens (Shreedhar and
 * Varghese): tenants with waiting requests take turns; a turn adds {@code quantum} tokens of credit
 * and admits the tenant's requests while their cost (prompt plus {@code max_tokens}) fits in the
 * credit. A tenant that floods the queue so gets the same token share as one that sends a few
 * requests, and its backlog waits behind nobody else's.
 *
 * <p>Within a tenant, requests go in order, except that one whose adapter is not resident yet is
 * passed over ({@link Gate#ready} says no) until it is: it waits without holding back the rest.
 * A turn continues across calls to {@link #peek}, so admitting one request per step still follows
 * the round. One thread at a time (the engine's; a cluster front node's queue under its lock).
 *
 * @param <T> a waiting request: the engine's lead {@link Sequence}, or a front node's request
 */
public final class FairQueue<T> {
    /** Decides whether a request can run now; {@code ready} may take resources that {@code release} returns. */
    public interface Gate<T> {
        boolean ready(T s);

        void release(T s);

        /** A request that was cancelled while waiting, now dropped. */
        void dropped(T s);
    }

    private static final class Tenant<T> {
        final String id;
        final ArrayDeque<T> queue = new ArrayDeque<>();
        long deficit;
        boolean inTurn;

        Tenant(String id) {
            this.id = id;
        }
    }

    private final long quantum;
    private final Function<T, String> tenantOf;
    private final ToLongFunction<T> costOf;
    private final Predicate<T> abandoned;
    private final Map<String, Tenant<T>> tenants = new HashMap<>();
    private final ArrayDeque<Tenant<T>> round = new ArrayDeque<>();
    private int size;

    /**
     * @param quantum   credit per turn, in cost units (tokens)
     * @param tenantOf  a request's tenant
     * @param costOf    a request's cost (prompt plus {@code max_tokens}, for it and its choices)
     * @param abandoned whether a request was cancelled while waiting (it is dropped when met)
     */
    public FairQueue(long quantum, Function<T, String> tenantOf, ToLongFunction<T> costOf, Predicate<T> abandoned) {
        this.quantum = Math.max(1, quantum);
        this.tenantOf = tenantOf;
        this.costOf = costOf;
        this.abandoned = abandoned;
    }

    /** The engine's queue of lead sequences. */
    static FairQueue<Sequence> ofSequences(long quantum) {
        return new FairQueue<>(quantum, s -> s.tenant, s -> s.cost, Sequence::abandoned);
    }

    public int size() {
        return size;
    }

    public void add(T s) {
        Tenant<T> t = tenants.computeIfAbsent(tenantOf.apply(s), Tenant::new);
        if (t.queue.isEmpty()) {
            round.addLast(t);
        }
        t.queue.addLast(s);
        size++;
    }

    /**
     * The request to admit next, already passed by {@code gate.ready} (the caller then either
     * {@link #take}s it or calls {@code gate.release}); null when no waiting request is ready.
     */
    public T peek(Gate<T> gate) {
        int fruitless = 0; // consecutive tenants without a ready request
        while (!round.isEmpty() && fruitless <= round.size()) {
            Tenant<T> t = round.peekFirst();
            T ready = null;
            for (Iterator<T> it = t.queue.iterator(); it.hasNext(); ) {
                T s = it.next();
                if (abandoned.test(s)) {
                    it.remove();
                    size--;
                    gate.dropped(s);
                } else if (gate.ready(s)) {
                    ready = s;
                    break;
                }
            }
            if (t.queue.isEmpty()) {
                leave(t);
                continue;
            }
            if (ready == null) { // all its requests wait for adapters: its turn passes without credit
                fruitless++;
                endTurn(t);
                continue;
            }
            fruitless = 0;
            if (!t.inTurn) {
                t.inTurn = true;
                t.deficit += quantum;
            }
            if (costOf.applyAsLong(ready) <= t.deficit) {
                return ready;
            }
            gate.release(ready);
            endTurn(t);
        }
        return null;
    }

    /** Removes {@code s} (just returned by {@link #peek}) and charges its tenant. */
    public void take(T s) {
        Tenant<T> t = tenants.get(tenantOf.apply(s));
        if (t == null || !t.queue.remove(s)) {
            throw new IllegalStateException("request of tenant " + tenantOf.apply(s) + " is not waiting");
        }
        size--;
        t.deficit -= costOf.applyAsLong(s);
        if (t.queue.isEmpty()) {
            leave(t);
        }
    }

    /** Calls {@code action} with every waiting request, tenant by tenant in round order (a read: nothing changes). */
    public void forEach(Consumer<? super T> action) {
        for (Tenant<T> t : round) {
            t.queue.forEach(action);
        }
    }

    /** Removes and returns every waiting request (the engine is failing them). */
    public java.util.List<T> drain() {
        java.util.List<T> all = new java.util.ArrayList<>();
        for (Tenant<T> t : round) {
            all.addAll(t.queue);
        }
        round.clear();
        tenants.clear();
        size = 0;
        return all;
    }

    private void endTurn(Tenant<T> t) {
        t.inTurn = false;
        round.pollFirst();
        round.addLast(t);
    }

    private void leave(Tenant<T> t) {
        round.remove(t);
        tenants.remove(t.id);
        t.deficit = 0;
        t.inTurn = false;
    }
}
