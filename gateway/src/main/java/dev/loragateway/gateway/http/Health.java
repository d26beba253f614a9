package dev.loragateway.gateway.http;

import dev.loragateway.batcher.InferenceExecutor;
import java.time.Duration;
import java.util.Objects;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What {@code GET /health} reports: "ok" only while the executor (the engine) can serve. It cannot serve
 * when its loop has ended, or when work waits and no step has finished for the watchdog's time
 * ({@code --watchdog-s}); then the answer is 503 with the reason, and the reason is logged once
 * each time it changes (not once per probe).
 */
final class Health {
    private static final Logger LOG = LoggerFactory.getLogger(Health.class);
    /** Default watchdog time: a generous bound on one step of a large model on a CPU. */
    static final Duration DEFAULT_WATCHDOG = Duration.ofSeconds(60);

    private final InferenceExecutor executor;
    private volatile long stallNanos = DEFAULT_WATCHDOG.toNanos();
    private String lastProblem; // guarded by this

    Health(InferenceExecutor executor) {
        this.executor = executor;
    }

    void watchdog(Duration d) {
        if (d.isNegative() || d.isZero()) {
            throw new IllegalArgumentException("the watchdog time must be positive, got " + d);
        }
        this.stallNanos = d.toNanos();
    }

    /** Why the server cannot serve now, or null when it can. */
    String problem() {
        String p = executor.unhealthy(stallNanos);
        synchronized (this) {
            if (!Objects.equals(p, lastProblem) && (p == null) != (lastProblem == null)) {
                if (p == null) {
                    LOG.info("health: the engine serves again");
                } else {
                    LOG.error("health: unhealthy: {}", p);
                }
            }
            lastProblem = p;
        }
        return p;
    }
}
