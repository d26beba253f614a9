package dev.loragateway.batcher;

import dev.loragateway.kernels.CpuBackend;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * One node's engine: a single engine thread (off the HTTP event loops) that owns the forward pass
 * and runs generation jobs in arrival order, with a bounded queue. Continuous batching replaces
 * the one-job-at-a-time loop inside; the submit/queue surface stays.
 */
public final class Engine implements AutoCloseable {
    private final LlamaModel model;
    private final CpuBackend cpu;
    private final Generator generator;
    private final ThreadPoolExecutor thread;

    public Engine(LlamaModel model, CpuBackend cpu, int maxQueued) {
        this.model = model;
        this.cpu = cpu;
        this.generator = new Generator(new ForwardPass(model, cpu));
        this.thread = new ThreadPoolExecutor(1, 1, 0, TimeUnit.SECONDS, new ArrayBlockingQueue<>(Math.max(1, maxQueued)),
            r -> {
                Thread t = new Thread(r, "engine");
                t.setDaemon(true);
                return t;
            }, new ThreadPoolExecutor.AbortPolicy());
    }

    public LlamaModel model() {
        return model;
    }

    /** Requests waiting behind the running one. */
    public int queued() {
        return thread.getQueue().size();
    }

    /**
     * Queues {@code work} to run on the engine thread with the generator.
     *
     * @throws QueueFullException when {@code --max-queued} requests already wait
     */
    public <T> CompletableFuture<T> submit(Function<Generator, T> work) {
        CompletableFuture<T> f = new CompletableFuture<>();
        try {
            thread.execute(() -> {
                if (f.isCancelled()) {
                    return;
                }
                try {
                    f.complete(work.apply(generator));
                } catch (Throwable t) {
                    f.completeExceptionally(t);
                }
            });
        } catch (RejectedExecutionException e) {
            throw new QueueFullException(queued());
        }
        return f;
    }

    /** Too many requests wait already. */
    public static final class QueueFullException extends RuntimeException {
        public QueueFullException(int queued) {
            super("the server is at capacity: " + queued + " requests are already queued; retry later");
        }
    }

    /** Stops taking work, finishes what is queued (up to the timeout), then frees the kernels' threads. */
    @Override
    public void close() {
        thread.shutdown();
        try {
            thread.awaitTermination(10, TimeUnit.MINUTES);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        cpu.close();
    }
}
