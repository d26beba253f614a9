package dev.loragateway.gateway.auth;

import java.util.Optional;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A tenant's request limits, asked before a request runs: {@code max_requests_per_second} on every
 * {@code /v1/} request and {@code max_concurrent_requests} on completions. Two implementations:
 * {@link TenantLimits} counts on this node alone (a single gateway); the cluster's counts for the
 * whole cluster ({@code gateway.cluster.ClusterTenantLimits}).
 *
 * <p>Answers are futures because a cluster's answer takes a round trip: the HTTP edge waits for it
 * without blocking its event loop. An answer never fails, and comes within a bound (an
 * implementation that cannot ask its cluster in time answers from local counts instead).
 *
 * <pre>
 *   request(acme) → Optional.empty()                         admitted
 *                 → Refusal("tenant acme is over its limit of 20 requests per second; ...", 1)   429, Retry-After: 1
 *   enter(acme)   → Slot (release() when the response ends)  admitted
 *                 → Slot.refused(Refusal("tenant acme already has 8 requests running, ...", 1))
 * </pre>
 */
public interface TenantLimiter {

    /** Counts one request of {@code t} against its request rate; empty when it may go on. */
    CompletionStage<Optional<Refusal>> request(Tenants.Tenant t);

    /** Takes one of {@code t}'s in-flight slots (completions), or says why not. */
    CompletionStage<Slot> enter(Tenants.Tenant t);

    /** Why a request was refused, and when to retry. */
    record Refusal(String message, long retryAfterSeconds) {
    }

    /** A request's answer from {@link #enter}: refused, or a slot held until {@link #release}. */
    final class Slot {
        private static final Slot FREE = new Slot(null, () -> { });

        private final Refusal refusal;
        private final Runnable giveBack;
        private final AtomicBoolean released = new AtomicBoolean();

        private Slot(Refusal refusal, Runnable giveBack) {
            this.refusal = refusal;
            this.giveBack = giveBack;
        }

        /** A slot that {@code giveBack} returns (run once, whatever the number of {@link #release} calls). */
        public static Slot held(Runnable giveBack) {
            return new Slot(null, giveBack);
        }

        /** Admitted without counting (a tenant without a concurrency limit). */
        public static Slot free() {
            return FREE;
        }

        public static Slot refused(Refusal r) {
            return new Slot(r, () -> { });
        }

        /** Why the request may not run; empty when it holds the slot. */
        public Optional<Refusal> refusal() {
            return Optional.ofNullable(refusal);
        }

        /** Gives the slot back (the request ended); later calls do nothing. */
        public void release() {
            if (refusal == null && released.compareAndSet(false, true)) {
                giveBack.run();
            }
        }
    }
}
