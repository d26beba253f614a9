package dev.loragateway.kernels.cpu;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed team of worker threads that split an index range statically: the caller runs the first
 * share itself, each worker one of the others. Built for many short parallel regions per token
 * (one per matmul): workers spin briefly before parking, so a region costs a few microseconds,
 * not a task submission per chunk.
 */
public final class ParallelFor implements AutoCloseable {
    /** Work over {@code [from, to)}. */
    @FunctionalInterface
    public interface Body {
        void run(int from, int to);
    }

    private static final long SPIN_NANOS = 50_000;

    private final Thread[] workers;
    private final AtomicInteger pending = new AtomicInteger();
    private volatile long generation;
    private volatile boolean closed;
    private Body body;   // published by the write to generation
    private int total;
    private int grain;
    private volatile Throwable failure;

    /** A team of {@code threads} (the caller counts as one). */
    public ParallelFor(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        workers = new Thread[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            final int share = i + 1;
            workers[i] = new Thread(() -> workLoop(share), "cpu-kernel-" + share);
            workers[i].setDaemon(true);
            workers[i].start();
        }
    }

    /** Number of shares a region is split into. */
    public int threads() {
        return workers.length + 1;
    }

    /**
     * Runs {@code body} over {@code [0, total)} split into equal shares aligned to {@code grain};
     * returns when every share is done. Not reentrant: one region at a time.
     */
    public void run(int total, int grain, Body body) {
        if (workers.length == 0 || total <= grain) {
            body.run(0, total);
            return;
        }
        this.body = body;
        this.total = total;
        this.grain = grain;
        this.failure = null;
        pending.set(workers.length);
        generation = generation + 1; // publishes the fields above
        for (Thread w : workers) {
            LockSupport.unpark(w);
        }
        Throwable own = null;
        try {
            runShare(0);
        } catch (Throwable t) {
            own = t; // still wait for the workers: the next region must not start under them
        }
        while (pending.get() != 0) {
            Thread.onSpinWait();
        }
        this.body = null;
        Throwable f = own != null ? own : failure;
        if (f != null) {
            if (f instanceof RuntimeException) {
                throw (RuntimeException) f;
            }
            if (f instanceof Error) {
                throw (Error) f;
            }
            throw new IllegalStateException(f);
        }
    }

    private void runShare(int share) {
        int n = threads();
        long units = ((long) total + grain - 1) / grain;
        int from = (int) Math.min(total, units * share / n * grain);
        int to = (int) Math.min(total, units * (share + 1) / n * grain);
        if (from < to) {
            body.run(from, to);
        }
    }

    private void workLoop(int share) {
        long seen = 0;
        while (!closed) {
            long spinUntil = System.nanoTime() + SPIN_NANOS;
            while (generation == seen && !closed) {
                if (System.nanoTime() < spinUntil) {
                    Thread.onSpinWait();
                } else {
                    LockSupport.park(this);
                }
            }
            if (closed) {
                return;
            }
            seen = generation;
            try {
                runShare(share);
            } catch (Throwable t) {
                failure = t;
            } finally {
                pending.decrementAndGet();
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        for (Thread w : workers) {
            LockSupport.unpark(w);
        }
    }
}
