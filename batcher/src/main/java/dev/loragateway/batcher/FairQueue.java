package dev.loragateway.batcher;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;

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
 * the round. Engine thread only.
 */
final class FairQueue {
    /** Decides whether a request can run now; {@code ready} may take resources that {@code release} returns. */
    interface Gate {
        boolean ready(Sequence s);

        void release(Sequence s);

        /** A request that was cancelled while waiting, now dropped. */
        void dropped(Sequence s);
    }

    private static final class Tenant {
        final String id;
        final ArrayDeque<Sequence> queue = new ArrayDeque<>();
        long deficit;
        boolean inTurn;

        Tenant(String id) {
            this.id = id;
        }
    }

    private final long quantum;
    private final Map<String, Tenant> tenants = new HashMap<>();
    private final ArrayDeque<Tenant> round = new ArrayDeque<>();
    private int size;

    FairQueue(long quantum) {
        this.quantum = Math.max(1, quantum);
    }

    int size() {
        return size;
    }

    void add(Sequence s) {
        Tenant t = tenants.computeIfAbsent(s.tenant, Tenant::new);
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
    Sequence peek(Gate gate) {
        int fruitless = 0; // consecutive tenants without a ready request
        while (!round.isEmpty() && fruitless <= round.size()) {
            Tenant t = round.peekFirst();
            Sequence ready = null;
            for (Iterator<Sequence> it = t.queue.iterator(); it.hasNext(); ) {
                Sequence s = it.next();
                if (s.abandoned()) {
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
            if (ready.cost <= t.deficit) {
                return ready;
            }
            gate.release(ready);
            endTurn(t);
        }
        return null;
    }

    /** Removes {@code s} (just returned by {@link #peek}) and charges its tenant. */
    void take(Sequence s) {
        Tenant t = tenants.get(s.tenant);
        if (t == null || !t.queue.remove(s)) {
            throw new IllegalStateException("request of tenant " + s.tenant + " is not waiting");
        }
        size--;
        t.deficit -= s.cost;
        if (t.queue.isEmpty()) {
            leave(t);
        }
    }

    /** Removes and returns every waiting request (the engine is failing them). */
    java.util.List<Sequence> drain() {
        java.util.List<Sequence> all = new java.util.ArrayList<>();
        for (Tenant t : round) {
            all.addAll(t.queue);
        }
        round.clear();
        tenants.clear();
        size = 0;
        return all;
    }

    private void endTurn(Tenant t) {
        t.inTurn = false;
        round.pollFirst();
        round.addLast(t);
    }

    private void leave(Tenant t) {
        round.remove(t);
        tenants.remove(t.id);
        t.deficit = 0;
        t.inTurn = false;
    }
}
