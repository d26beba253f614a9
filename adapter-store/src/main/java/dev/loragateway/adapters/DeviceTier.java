package dev.loragateway.adapters;

import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Executor;

/**
 * The hot tier: adapters resident in the slots of a {@link LoraSlotPool}, bounded by a slot count
 * ({@code --gpu-adapter-slots}) and a byte budget. The engine pins an adapter for as long as a
 * running sequence uses it; only unpinned adapters are evicted (least recently pinned first).
 *
 * <p>Nothing here blocks the engine: {@link #tryPin} returns a slot when the adapter is resident,
 * and otherwise starts (or keeps waiting for) its load on the loader executor and returns
 * {@link #NOT_READY}; the request waits in the queue while others run. A load that finds every
 * slot pinned waits until a pin is released. The listener hears of every load that finishes or
 * fails, so the engine can retry at once.
 *
 * <p>Lifecycle of an entry: LOADING (host fetch) → WAITING (no room yet) → WRITING (slot reserved,
 * weights being packed) → RESIDENT; or FAILED, reported once to the next {@link #tryPin}.
 *
 * @param <K> the adapter key
 */
public final class DeviceTier<K> {
    /** {@link #tryPin}'s answer while the adapter is not resident yet. */
    public static final int NOT_READY = -1;

    private enum State { LOADING, WAITING, WRITING, RESIDENT, FAILED }

    private static final class Entry {
        State state = State.LOADING;
        LoraAdapter adapter;   // set once fetched from the host tier (null again once resident)
        int slot = -1;
        long bytes;
        int pins;
        long lastUse;
        long startNanos;
        boolean retired;       // invalidated while pinned: freed at the last unpin
        RuntimeException failure;
        long epoch;            // the key's content epoch when this entry was started
    }

    private final LoraSlotPool pool;
    private final long byteBudget;
    private final HostTier<K> host;
    private final Executor loader;
    private final Map<K, Entry> entries = new HashMap<>();
    /** Content epochs: how often each key was invalidated (deleted or replaced). */
    private final Map<K, Long> epochs = new HashMap<>();
    private final K[] slotOwner;
    private final ArrayDeque<K> waiting = new ArrayDeque<>();
    private final TierStats stats = new TierStats("device");
    private long usedBytes;
    private long clock;
    private volatile Runnable listener = () -> { };

    /**
     * @param pool the slots ({@code pool.slots()} is the slot limit)
     * @param byteBudget most bytes resident at once
     * @param host where adapters come from
     * @param loader runs fetches and slot writes off the engine thread
     */
    @SuppressWarnings("unchecked")
    public DeviceTier(LoraSlotPool pool, long byteBudget, HostTier<K> host, Executor loader) {
        this.pool = pool;
        this.byteBudget = byteBudget;
        this.host = host;
        this.loader = loader;
        this.slotOwner = (K[]) new Object[pool.slots()];
    }

    /** Called (on the loader thread) whenever an adapter became resident or failed. */
    public void listener(Runnable r) {
        this.listener = r;
    }

    public LoraSlotPool pool() {
        return pool;
    }

    /**
     * Pins {@code key} and returns its slot when resident; otherwise makes sure it is on its way and
     * returns {@link #NOT_READY}.
     *
     * @throws AdapterLoadException when its load failed (reported once; the next call retries)
     */
    public synchronized int tryPin(K key) {
        Entry e = entries.get(key);
        if (e == null || e.retired) {
            if (e == null) {
                start(key);
            }
            return NOT_READY;
        }
        switch (e.state) {
            case RESIDENT -> {
                e.pins++;
                e.lastUse = ++clock;
                stats.hit();
                return e.slot;
            }
            case FAILED -> {
                entries.remove(key);
                throw e.failure;
            }
            default -> {
                return NOT_READY;
            }
        }
    }

    /**
     * Takes one more pin on {@code key}, which the caller already holds pinned: a fork of a running
     * sequence ({@code n > 1}) shares its lead's slot. It works on a retired entry too (the adapter
     * was deleted or replaced while the lead ran), so the fork finishes on the very weights its lead
     * ran on, and the entry is freed only when the last of them unpins.
     *
     * @return the slot the caller's pin holds
     * @throws IllegalStateException when {@code key} is not pinned (the caller holds no pin to share)
     */
    public synchronized int pinAgain(K key) {
        Entry e = entries.get(key);
        if (e == null || e.pins == 0 || e.state != State.RESIDENT) {
            throw new IllegalStateException("pinAgain of " + key + " which is not pinned");
        }
        e.pins++;
        e.lastUse = ++clock;
        return e.slot;
    }

    /** Releases one pin taken by {@link #tryPin} or {@link #pinAgain}. */
    public synchronized void unpin(K key) {
        Entry e = entries.get(key);
        if (e == null || e.pins == 0) {
            throw new IllegalStateException("unpin of " + key + " which is not pinned");
        }
        e.pins--;
        if (e.pins == 0) {
            if (e.retired) {
                free(key, e);
            }
            placeWaiting();
        }
    }

    /** Starts moving {@code key} toward the device (a request for it was queued). */
    public synchronized void prefetch(K key) {
        if (!entries.containsKey(key)) {
            start(key);
        }
    }

    /**
     * Forgets {@code key} (its adapter was deleted or replaced): freed now when unpinned, else at
     * its last unpin; a later {@link #tryPin} loads it afresh.
     */
    public synchronized void invalidate(K key) {
        host.invalidate(key);
        epochs.merge(key, 1L, Long::sum);
        Entry e = entries.get(key);
        if (e == null) {
            return;
        }
        switch (e.state) {
            case RESIDENT -> {
                if (e.pins == 0) {
                    free(key, e);
                    placeWaiting();
                } else {
                    e.retired = true; // freed at its last unpin
                }
            }
            // fetched but holding no slot yet, or failed: nothing will ever come back for it, so it goes
            // now (a retired WAITING entry used to stay forever, and every later tryPin of the name
            // answered NOT_READY: requests hung; found by ChaosHttpTest)
            case WAITING, FAILED -> {
                waiting.remove(key);
                entries.remove(key, e);
            }
            // a fetch or a slot write in flight: its result is dropped (or freed) when it lands
            case LOADING, WRITING -> e.retired = true;
            default -> throw new IllegalStateException("unknown state " + e.state);
        }
    }

    /**
     * The content epoch of the weights {@code key}'s pin holds: it changes each time the adapter is
     * deleted or replaced, so two pins with the same epoch ran on the same weights (the engine's
     * prefix cache keys KV blocks by it). Call while holding a pin.
     *
     * @throws IllegalStateException when {@code key} is not pinned
     */
    public synchronized long contentEpoch(K key) {
        Entry e = entries.get(key);
        if (e == null || e.pins == 0) {
            throw new IllegalStateException("contentEpoch of " + key + " which is not pinned");
        }
        return e.epoch;
    }

    public synchronized boolean isResident(K key) {
        Entry e = entries.get(key);
        return e != null && e.state == State.RESIDENT && !e.retired;
    }

    /** Pins held on {@code key} now. */
    public synchronized int pins(K key) {
        Entry e = entries.get(key);
        return e == null ? 0 : e.pins;
    }

    /** Pins held on all adapters (0 when no sequence runs: a leak check). */
    public synchronized int totalPins() {
        int n = 0;
        for (Entry e : entries.values()) {
            n += e.pins;
        }
        return n;
    }

    /** The keys of the adapters resident in slots now (what the cluster's placement prefers). */
    public synchronized java.util.List<K> residentKeys() {
        java.util.List<K> keys = new java.util.ArrayList<>();
        for (var e : entries.entrySet()) {
            if (e.getValue().state == State.RESIDENT) {
                keys.add(e.getKey());
            }
        }
        return keys;
    }

    public synchronized int residentCount() {
        int n = 0;
        for (Entry e : entries.values()) {
            n += e.state == State.RESIDENT ? 1 : 0;
        }
        return n;
    }

    /** Bytes reserved in slots (resident or being written). */
    public synchronized long usedBytes() {
        return usedBytes;
    }

    public long byteBudget() {
        return byteBudget;
    }

    public TierStats stats() {
        return stats;
    }

    // ---- loading ------------------------------------------------------------------------------

    private void start(K key) {
        Entry e = new Entry();
        e.epoch = epochs.getOrDefault(key, 0L);
        e.startNanos = System.nanoTime();
        entries.put(key, e);
        stats.miss();
        loader.execute(() -> fetch(key, e));
    }

    private void fetch(K key, Entry e) {
        LoraAdapter a;
        try {
            a = host.get(key);
        } catch (RuntimeException ex) {
            fail(key, e, new AdapterLoadException("adapter " + key + " could not be loaded: " + ex.getMessage(), ex));
            return;
        }
        long bytes = 4 * pool.floatsFor(a);
        synchronized (this) {
            if (entries.get(key) != e || e.retired) {
                entries.remove(key, e);
                return;
            }
            e.adapter = a;
            e.bytes = bytes;
            if (bytes > byteBudget) {
                e.state = State.FAILED;
                e.failure = new AdapterLoadException(String.format(
                    "adapter %s needs %.1f MB of adapter slots but the device budget is %.1f MB", key, bytes / 1e6, byteBudget / 1e6), null);
                e.adapter = null;
            } else {
                e.state = State.WAITING;
                waiting.addLast(key);
                placeWaiting();
            }
        }
        if (e.state == State.FAILED) {
            listener.run();
        }
    }

    private void fail(K key, Entry e, AdapterLoadException ex) {
        synchronized (this) {
            if (entries.get(key) != e) {
                return;
            }
            if (e.retired) {
                entries.remove(key);
                return;
            }
            e.state = State.FAILED;
            e.failure = ex;
        }
        listener.run();
    }

    /** Gives slots to waiting adapters, in arrival order, evicting unpinned ones as needed. */
    private void placeWaiting() {
        while (!waiting.isEmpty()) {
            K key = waiting.peekFirst();
            Entry e = entries.get(key);
            if (e == null || e.state != State.WAITING) {
                waiting.pollFirst();
                continue;
            }
            int slot = makeRoom(e.bytes);
            if (slot < 0) {
                return; // everything is pinned: wait for an unpin
            }
            waiting.pollFirst();
            e.state = State.WRITING;
            e.slot = slot;
            slotOwner[slot] = key;
            usedBytes += e.bytes;
            LoraAdapter a = e.adapter;
            e.adapter = null;
            loader.execute(() -> write(key, e, a));
        }
    }

    private void write(K key, Entry e, LoraAdapter a) {
        pool.write(e.slot, a); // the slot is reserved: nobody reads it yet
        synchronized (this) {
            e.state = State.RESIDENT;
            e.lastUse = ++clock;
            stats.loaded(System.nanoTime() - e.startNanos);
            if (e.retired && e.pins == 0) {
                free(key, e);
            }
        }
        listener.run();
    }

    /** A free slot with {@code bytes} of budget, evicting least recently used unpinned adapters; −1 if none. */
    private int makeRoom(long bytes) {
        while (true) {
            int free = -1;
            for (int s = 0; s < slotOwner.length && free < 0; s++) {
                if (slotOwner[s] == null) {
                    free = s;
                }
            }
            if (free >= 0 && usedBytes + bytes <= byteBudget) {
                return free;
            }
            K victim = null;
            Entry ve = null;
            for (var en : entries.entrySet()) {
                Entry c = en.getValue();
                if (c.state == State.RESIDENT && c.pins == 0 && (ve == null || c.lastUse < ve.lastUse)) {
                    victim = en.getKey();
                    ve = c;
                }
            }
            if (victim == null) {
                return -1;
            }
            free(victim, ve);
            stats.evicted();
        }
    }

    private void free(K key, Entry e) {
        pool.clear(e.slot);
        slotOwner[e.slot] = null;
        usedBytes -= e.bytes;
        entries.remove(key, e);
    }
}
