package dev.loragateway.gateway.http;

import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelPipeline;
import io.vertx.core.http.Http1ServerConfig;
import io.vertx.core.http.HttpConnection;
import io.vertx.core.net.impl.ConnectionBase;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The server's open connections under {@code --max-connections} ({@link HttpLimits}): each new one
 * gets a {@link ConnectionGuard} (its timeouts) and a {@link StrictRequestDecoder} in its pipeline,
 * or is refused.
 *
 * <pre>
 * open &lt; max                          → admitted
 * open = max, one idle or sending a head → that one (the longest so) is closed, the new one admitted
 * open = max, all serving requests       → admitted health-only (/health, /metrics, then closed),
 *                                          up to healthConnections such, the oldest idle one of them
 *                                          making room likewise
 * else                                   → 503 and closed at once
 * </pre>
 *
 * Reaches the connection's Netty channel through Vert.x's {@code ConnectionBase} (an
 * implementation class of the pinned Vert.x 5.1.6): Vert.x offers no public hook for either.
 * HTTP/2 is off on this server ({@link ApiServer}), so every connection is an HTTP/1 one.
 */
final class Connections {
    private static final Logger LOG = LoggerFactory.getLogger(Connections.class);
    static final String GUARD = "lora-gateway-guard";

    private final HttpLimits limits;
    private final Http1ServerConfig http1;
    private final Set<ConnectionGuard> open = ConcurrentHashMap.newKeySet();   // counted against maxConnections
    private final Set<ConnectionGuard> health = ConcurrentHashMap.newKeySet(); // beyond it, health checks only

    Connections(HttpLimits limits, Http1ServerConfig http1) {
        this.limits = limits;
        this.http1 = http1;
    }

    HttpLimits limits() {
        return limits;
    }

    /** Connections open now (admitted and health-only). */
    int size() {
        return open.size() + health.size();
    }

    /** The server's connection handler: admits {@code conn} (guarded) or refuses it. */
    void accept(HttpConnection conn) {
        Channel ch = conn instanceof ConnectionBase c ? c.channel() : null;
        if (ch == null || ch.pipeline().get("httpDecoder") == null) {
            LOG.warn("a connection of an unexpected kind ({}) is not guarded", conn.getClass().getName());
            return;
        }
        ConnectionGuard guard;
        ConnectionGuard victim = null;
        synchronized (this) {
            if (open.size() < limits.maxConnections()) {
                guard = new ConnectionGuard(limits, this, false);
                open.add(guard);
            } else if ((victim = oldestEvictable(open)) != null) {
                open.remove(victim);
                guard = new ConnectionGuard(limits, this, false);
                open.add(guard);
            } else if (health.size() < limits.healthConnections() || (victim = oldestEvictable(health)) != null) {
                if (victim != null) {
                    health.remove(victim);
                }
                guard = new ConnectionGuard(limits, this, true);
                health.add(guard);
            } else {
                guard = null;
            }
        }
        if (victim != null) {
            victim.evict();
        }
        if (guard == null) {
            refuse(ch);
            return;
        }
        ChannelPipeline p = ch.pipeline();
        p.replace("httpDecoder", "httpDecoder", new StrictRequestDecoder(http1));
        p.addBefore("handler", GUARD, guard);
    }

    /** The guard of a request's connection, or null (not one of this server's). */
    static ConnectionGuard guard(HttpConnection conn) {
        return conn instanceof ConnectionBase c && c.channel().pipeline().get(GUARD) instanceof ConnectionGuard g ? g : null;
    }

    /** Told by a guard when its channel has closed. */
    void closed(ConnectionGuard g) {
        open.remove(g);
        health.remove(g);
    }

    private static ConnectionGuard oldestEvictable(Set<ConnectionGuard> among) {
        ConnectionGuard best = null;
        for (ConnectionGuard g : among) {
            if (g.evictable && (best == null || g.since - best.since < 0)) {
                best = g;
            }
        }
        return best;
    }

    /** A 503 written straight to the socket (Vert.x has no request for it yet), then closed. */
    private void refuse(Channel ch) {
        byte[] body = ("{\"error\":{\"message\":\"the server has " + limits.maxConnections() + " connections serving requests and "
            + limits.healthConnections() + " more for health checks (--max-connections " + limits.maxConnections() + "); try again later\","
            + "\"type\":\"unavailable\",\"param\":null,\"code\":\"too_many_connections\"}}").getBytes(StandardCharsets.UTF_8);
        ch.pipeline().firstContext().writeAndFlush(Unpooled.wrappedBuffer(("HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
            + "application/json\r\nContent-Length: " + body.length + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
            .getBytes(StandardCharsets.US_ASCII), body)).addListener(ChannelFutureListener.CLOSE);
    }
}
