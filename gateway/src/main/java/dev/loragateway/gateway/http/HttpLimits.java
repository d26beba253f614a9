package dev.loragateway.gateway.http;

import java.time.Duration;

/**
 * How long the server waits for a client, and how many connections it holds ({@code serve
 * --idle-timeout-s --header-timeout-s --body-timeout-s --max-connections}).
 *
 * <pre>
 * a connection is             its deadline                                        then
 * ─────────────────────────── ─────────────────────────────────────────────────── ──────────────────────────
 * new, or sending a head      header: from accept (first request) or from the     408 (when head bytes came),
 *                             head's first byte (later ones) to its last byte     then closed
 * idle (keep-alive)           idle: since its last response ended                 closed
 * sending a body              body: the longest silence between two reads while   408 through the request's
 *                             we are reading (pauses of our own do not count)     route (uploads clean up)
 * serving a response          none: a stream waiting for a long prefill is busy,  closed
 *                             not idle; but a client that reads nothing while
 *                             the response waits to be written: idle, from then
 * </pre>
 *
 * At {@code maxConnections} open, a new connection closes the oldest one that is idle or still
 * sending its head (a slow-loris or a parked keep-alive, never a request being served); when
 * every one is serving a request, it joins up to {@code healthConnections} more that serve only
 * {@code /health} and {@code /metrics} (anything else 503) and close after one answer; beyond
 * those, it gets a 503 and is closed at once. So neither idle nor slow clients, nor one tenant's
 * many requests, keep a health check out.
 *
 * <p>The defaults follow nginx's ({@code keepalive_timeout 75s}, {@code client_header_timeout
 * 60s}, {@code client_body_timeout 60s}) made tighter for an API whose heads are a few hundred
 * bytes: a body timeout counts silence, not the whole body, so a 512 MB upload over a slow link is
 * not cut while a stalled one is.
 */
public record HttpLimits(Duration idleTimeout, Duration headerTimeout, Duration bodyTimeout, int maxConnections, int healthConnections) {
    public static final int DEFAULT_IDLE_TIMEOUT_S = 60;
    public static final int DEFAULT_HEADER_TIMEOUT_S = 10;
    public static final int DEFAULT_BODY_TIMEOUT_S = 30;
    public static final int DEFAULT_MAX_CONNECTIONS = 4096;

    public HttpLimits {
        positive("idle timeout", idleTimeout);
        positive("header timeout", headerTimeout);
        positive("body timeout", bodyTimeout);
        if (maxConnections < 1 || healthConnections < 1) {
            throw new IllegalArgumentException("max connections and health connections must be at least 1, got " + maxConnections
                + " and " + healthConnections);
        }
    }

    /** The defaults of {@code serve}. */
    public static HttpLimits defaults() {
        return of(DEFAULT_IDLE_TIMEOUT_S, DEFAULT_HEADER_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS);
    }

    /** Limits from whole seconds, with {@link #healthReserve} connections for health checks beyond the cap. */
    public static HttpLimits of(int idleS, int headerS, int bodyS, int maxConnections) {
        return new HttpLimits(Duration.ofSeconds(idleS), Duration.ofSeconds(headerS), Duration.ofSeconds(bodyS), maxConnections,
            healthReserve(maxConnections));
    }

    /** Connections kept beyond the cap for {@code /health} and {@code /metrics}: 1/64 of it, between 4 and 64. */
    public static int healthReserve(int maxConnections) {
        return Math.max(4, Math.min(64, maxConnections / 64));
    }

    /** A duration in seconds as the options write it: "30", or "0.5" for a test's shorter one. */
    static String seconds(Duration d) {
        long ms = d.toMillis();
        return ms % 1000 == 0 ? Long.toString(ms / 1000) : Double.toString(ms / 1000.0);
    }

    private static void positive(String what, Duration d) {
        if (d == null || d.isNegative() || d.isZero()) {
            throw new IllegalArgumentException(what + " must be positive, got " + d);
        }
    }
}
