package dev.loragateway.gateway.auth;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;

/**
 * Per-tenant request limits: requests per second (a token bucket holding up to one second's worth,
 * at least one request) and requests in flight. {@link #acquire} either admits a request, which
 * must later {@link #release}, or says how many seconds to wait before retrying.
 */
public final class TenantLimits {
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

    /** Why a request was refused, and when to retry. */
    public record Refusal(String message, long retryAfterSeconds) {
    }

    /**
     * Admits one request of {@code t}, or returns why not.
     *
     * @param counts whether the request counts against the concurrency limit (inference routes)
     */
    public java.util.Optional<Refusal> acquire(Tenants.Tenant t, boolean counts) {
        State s = states.computeIfAbsent(t.id(), id -> {
            State n = new State();
            n.tokens = Math.max(1, t.maxRequestsPerSecond());
            n.last = nanos.getAsLong();
            return n;
        });
        synchronized (s) {
            if (t.maxRequestsPerSecond() > 0) {
                double cap = Math.max(1, t.maxRequestsPerSecond());
                long now = nanos.getAsLong();
                s.tokens = Math.min(cap, s.tokens + (now - s.last) / 1e9 * t.maxRequestsPerSecond());
                s.last = now;
                if (s.tokens < 1) {
                    long wait = (long) Math.ceil((1 - s.tokens) / t.maxRequestsPerSecond());
                    return java.util.Optional.of(new Refusal("tenant " + t.id() + " is over its limit of " + fmt(t.maxRequestsPerSecond())
                        + " requests per second; retry later", Math.max(1, wait)));
                }
            }
            if (counts && t.maxConcurrentRequests() > 0 && s.inFlight >= t.maxConcurrentRequests()) {
                return java.util.Optional.of(new Refusal("tenant " + t.id() + " already has " + s.inFlight
                    + " requests running, its limit; retry when one finishes", 1));
            }
            if (t.maxRequestsPerSecond() > 0) {
                s.tokens -= 1;
            }
            if (counts) {
                s.inFlight++;
            }
            return java.util.Optional.empty();
        }
    }

    /** A request admitted with {@code counts} finished. */
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

    private static String fmt(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }

}
