package dev.loragateway.gateway.cli;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * SIGTERM handled by a signal handler ({@code sun.misc.Signal}, in {@code jdk.unsupported}) instead
 * of the JVM's default, which starts the whole shutdown sequence before any hook of ours runs. The
 * handler runs on the JVM's signal-dispatch thread as soon as the signal arrives, so the server
 * can stop taking work at once (issue 12, item 12). Where the handler cannot be installed, the
 * default stays and the shutdown hooks do the work, later.
 */
final class Signals {
    private static final Logger LOG = LoggerFactory.getLogger(Signals.class);

    private Signals() {
    }

    /** Runs {@code action} on SIGTERM (which then no longer shuts the JVM down by itself); false where not possible. */
    static boolean onTerm(Runnable action) {
        try {
            sun.misc.Signal.handle(new sun.misc.Signal("TERM"), sig -> action.run());
            return true;
        } catch (IllegalArgumentException | UnsupportedOperationException | LinkageError e) {
            LOG.warn("cannot handle SIGTERM directly ({}); the shutdown hook drains instead", e.toString());
            return false;
        }
    }
}
