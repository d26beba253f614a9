package dev.loragateway.gateway.auth;

import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;

/**
 * Per-tenant request limits counted on this node: requests per second (a token bucket holding up to
 * one second's worth, at least one request) and requests in flight. The {@link TenantLimiter} of a
 * single gateway (its answers are ready at once), and what a cluster's limiter falls back to when it
 * cannot reach the cluster.
 *
 * <p>{@link #takeRequest} either admits a request or says how many seconds to wait before retrying;
 * {@link #tryEnter} takes an in-flight slot that {@link #release} gives back. A completion counts
 * once against the rate (when it is authenticated) and holds one slot.
 */
public final class TenantLimits implements TenantLimiter {
    private final LongSupplier nanos;
    private final Map<String, State> states = new ConcurrentHashMap<>();

    private static final class State {
        double tokens;
        long last;
        int inFlight;
    }

    public TenantLimits() {
        this(System::nanoTime);
    }

    TenantLimits(LongSupplier nanos) {
        this.nanos = nanos;
    }

    @Override
    public CompletionStage<Optional<Refusal>> request(Tenants.Tenant t) {
        return CompletableFuture.completedFuture(takeRequest(t));
    }

    @Override
    public CompletionStage<Slot> enter(Tenants.Tenant t) {
        if (t.maxConcurrentRequests() <= 0) {
            return CompletableFuture.completedFuture(Slot.free());
        }
        Optional<Refusal> refused = tryEnter(t);
        return CompletableFuture.completedFuture(refused.isPresent() ? Slot.refused(refused.get()) : Slot.held(() -> release(t)));
    }

    private State state(Tenants.Tenant t) {
        return states.computeIfAbsent(t.id(), id -> {
            State n = new State();
            n.tokens = Math.max(1, t.maxRequestsPerSecond());
            n.last = nanos.getAsLong();
            return n;
        });
    }

    /** Counts one request of {@code t} against its request rate; empty when admitted. */
    public Optional<Refusal> takeRequest(Tenants.Tenant t) {
        if (t.maxRequestsPerSecond() <= 0) {
            return Optional.empty();
        }
        State s = state(t);
        synchronized (s) {
            double cap = Math.max(1, t.maxRequestsPerSecond());
            long now = nanos.getAsLong();
            s.tokens = Math.min(cap, s.tokens + (now - s.last) / 1e9 * t.maxRequestsPerSecond());
            s.last = now;
            if (s.tokens < 1) {
                return Optional.of(overRate(t, (1 - s.tokens) / t.maxRequestsPerSecond()));
            }
            s.tokens -= 1;
            return Optional.empty();
        }
    }

    /** Takes one of {@code t}'s in-flight slots (to {@link #release} later); empty when admitted. */
    public Optional<Refusal> tryEnter(Tenants.Tenant t) {
        State s = state(t);
        synchronized (s) {
            if (t.maxConcurrentRequests() > 0 && s.inFlight >= t.maxConcurrentRequests()) {
                return Optional.of(atConcurrency(t, s.inFlight));
            }
            s.inFlight++;
            return Optional.empty();
        }
    }

    /** A request admitted by {@link #tryEnter} finished. */
    public void release(Tenants.Tenant t) {
        State s = states.get(t.id());
        if (s != null) {
            synchronized (s) {
                if (s.inFlight > 0) {
                    s.inFlight--;
                }
            }
        }
    }

    /** Requests of {@code tenant} in flight. */
    public int inFlight(String tenant) {
        State s = states.get(tenant);
        if (s == null) {
            return 0;
        }
        synchronized (s) {
            return s.inFlight;
        }
    }

    /** The 429 of a tenant over its request rate, the next token {@code waitSeconds} away (every limiter's wording). */
    public static Refusal overRate(Tenants.Tenant t, double waitSeconds) {
        return new Refusal("tenant " + t.id() + " is over its limit of " + fmt(t.maxRequestsPerSecond())
            + " requests per second; retry later", Math.max(1, (long) Math.ceil(waitSeconds)));
    }

    /** The 429 of a tenant with {@code running} requests in flight, its limit (every limiter's wording). */
    public static Refusal atConcurrency(Tenants.Tenant t, int running) {
        return new Refusal("tenant " + t.id() + " already has " + running + " requests running, its limit; retry when one finishes", 1);
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }
}
