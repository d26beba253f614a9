package dev.loragateway.gateway.http;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPromise;
import io.netty.handler.codec.http.HttpContent;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.LastHttpContent;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One connection's timeouts ({@link HttpLimits}), as a Netty handler between the HTTP codec and
 * Vert.x's connection: it sees each decoded request head and body piece coming in, each response
 * going out, and the socket's writability, and keeps one timer for the nearest deadline.
 *
 * <pre>
 * state (by priority)               deadline                              on expiry
 * a request body is arriving        last body read + body timeout         the route's 408 ({@link #onBodyTimeout}), or close
 * a head is arriving                head start + header timeout           raw 408 when no response is owed, close
 * responses owed, client not        unwritable since + idle timeout       close
 *   reading (socket unwritable)
 * responses owed                    none (a stream waiting for tokens is busy)
 * nothing owed, nothing arriving    last response + idle timeout          close
 * </pre>
 *
 * The first head's start is the connection's accept; a later head's is its first byte ({@link
 * StrictRequestDecoder#HEAD_STARTED}). A body's silence does not count while the server itself
 * stops reading (back-pressure: the channel's auto-read is off).
 *
 * <p>Every field is touched on the channel's event loop only, except {@link #evictable} and
 * {@link #since}, which {@link Connections} reads from others to choose whom to evict.
 */
final class ConnectionGuard extends ChannelDuplexHandler {
    private static final Logger LOG = LoggerFactory.getLogger(ConnectionGuard.class);

    private final HttpLimits limits;
    private final Connections registry;
    private final boolean healthOnly;
    private volatile ChannelHandlerContext ctx;
    private volatile boolean evicted;
    private final long opened = System.nanoTime();
    private int owed;                 // request heads received whose responses have not ended
    private int served;               // responses ended
    private boolean headArriving;     // waiting for a head that is due (the first one, or one begun)
    private boolean headBytes;        // a byte of that head has come
    private long headStart;
    private boolean bodyArriving;     // a request's body has not ended
    private long lastBodyRead;
    private long unwritableSince;     // 0: writable
    private long lastResponse;
    private boolean responseStarted;  // a response head has gone out for the request being served
    private Runnable onBodyTimeout;   // answers the request whose body is arriving, set by its route
    private ScheduledFuture<?> timer;
    private long timerAt;
    private boolean done;
    /** Whether {@link Connections} may close it for a newcomer: idle, or still sending a head. */
    volatile boolean evictable = true;
    /** Since when it has been evictable (nanoTime). */
    volatile long since = opened;

    ConnectionGuard(HttpLimits limits, Connections registry, boolean healthOnly) {
        this.limits = limits;
        this.registry = registry;
        this.healthOnly = healthOnly;
        this.headArriving = true; // the first head's time counts from the accept
        this.headStart = opened;
    }

    HttpLimits limits() {
        return limits;
    }

    /** Whether this connection is beyond {@code --max-connections}: it serves only health checks, then closes. */
    boolean healthOnly() {
        return healthOnly;
    }

    /**
     * What to do when the body of the request being served stalls past the body timeout (its route
     * answers 408 and closes); call from the event loop while the body arrives.
     */
    void onBodyTimeout(Runnable action) {
        if (bodyArriving) {
            onBodyTimeout = action;
        }
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        this.ctx = ctx;
        ctx.channel().closeFuture().addListener(f -> closed());
        if (evicted) {
            ctx.close();
            return;
        }
        arm();
    }

    /** Closes the connection to make room for a newer one (any thread). */
    void evict() {
        evicted = true;
        ChannelHandlerContext c = ctx;
        if (c != null) {
            LOG.debug("closing {} for a new connection: --max-connections reached", c.channel().remoteAddress());
            c.channel().close();
        }
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
        long now = System.nanoTime();
        if (msg instanceof HttpRequest) {
            owed++;
            headArriving = false;
            headBytes = false;
            bodyArriving = true;
            lastBodyRead = now;
            responseStarted = false;
            evictable = false;
        }
        if (msg instanceof HttpContent) {
            lastBodyRead = now;
            if (msg instanceof LastHttpContent) {
                bodyArriving = false;
                onBodyTimeout = null;
                if (owed == 0) { // answered before its body ended (a refusal)
                    since = now;
                    evictable = true;
                }
            }
        }
        arm();
        super.channelRead(ctx, msg);
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) throws Exception {
        if (evt != StrictRequestDecoder.HEAD_STARTED) {
            super.userEventTriggered(ctx, evt);
            return;
        }
        headBytes = true;
        if (!headArriving) { // the first head's time runs from the accept already
            headArriving = true;
            headStart = System.nanoTime();
            arm();
        }
    }

    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) throws Exception {
        boolean interim = msg instanceof HttpResponse r && r.status().code() < 200; // 100 Continue: the request goes on
        if (msg instanceof HttpResponse && !interim) {
            responseStarted = true;
        }
        if (msg instanceof LastHttpContent && !interim && owed > 0) {
            owed--;
            served++;
            lastResponse = System.nanoTime();
            if (owed == 0 && !bodyArriving) {
                since = lastResponse;
                evictable = true;
            }
            arm();
        }
        super.write(ctx, msg, promise);
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) throws Exception {
        unwritableSince = ctx.channel().isWritable() ? 0 : System.nanoTime();
        arm();
        super.channelWritabilityChanged(ctx);
    }

    private enum Wait { BODY, HEAD, READER, IDLE }

    /** The state whose deadline applies now, or null when none does. */
    private Wait waiting() {
        if (bodyArriving) { // also the rest of a body whose request was answered early (a refusal draining it)
            return Wait.BODY;
        }
        if (headArriving) {
            return Wait.HEAD;
        }
        if (owed > 0) {
            return unwritableSince != 0 ? Wait.READER : null;
        }
        return Wait.IDLE;
    }

    private long deadline(Wait w) {
        return switch (w) {
            case BODY -> lastBodyRead + limits.bodyTimeout().toNanos();
            case HEAD -> headStart + limits.headerTimeout().toNanos();
            case READER -> unwritableSince + limits.idleTimeout().toNanos();
            case IDLE -> lastResponse + limits.idleTimeout().toNanos(); // after a response: before one, a head is due
        };
    }

    /** Schedules the timer for the current deadline, unless it already fires no later. */
    private void arm() {
        Wait w = waiting();
        if (w == null || done || ctx == null) {
            return;
        }
        long at = deadline(w);
        if (timer != null && !timer.isDone() && timerAt - at <= 0) {
            return; // it fires first and looks again
        }
        if (timer != null) {
            timer.cancel(false);
        }
        timerAt = at;
        timer = ctx.executor().schedule(this::expire, Math.max(0, at - System.nanoTime()), TimeUnit.NANOSECONDS);
    }

    private void expire() {
        timer = null;
        Wait w = waiting();
        if (w == null || done) {
            return;
        }
        long now = System.nanoTime();
        if (w == Wait.BODY && !ctx.channel().config().isAutoRead()) {
            lastBodyRead = now; // the server paused reading: the silence is ours, not the client's
        }
        if (deadline(w) - now > 0) {
            arm();
            return;
        }
        LOG.debug("closing {}: {} timeout", ctx.channel().remoteAddress(), w);
        switch (w) {
            case BODY -> {
                Runnable answer = onBodyTimeout;
                onBodyTimeout = null;
                if (answer != null && !responseStarted) {
                    answer.run(); // the route answers 408 and closes the connection once it is written
                    ctx.executor().schedule(() -> ctx.close(), 5, TimeUnit.SECONDS); // whatever happens to that answer
                } else {
                    ctx.close();
                }
            }
            case HEAD -> {
                if (owed == 0 && headBytes) {
                    rawAnswer(408, "request_timeout", "the request head did not arrive within " + HttpLimits.seconds(limits.headerTimeout())
                        + " s (--header-timeout-s " + HttpLimits.seconds(limits.headerTimeout()) + ")");
                } else {
                    ctx.close();
                }
            }
            default -> ctx.close();
        }
    }

    /** Writes an error straight to the socket (no request object exists for it), then closes. */
    private void rawAnswer(int status, String code, String message) {
        byte[] body = ("{\"error\":{\"message\":\"" + message + "\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"" + code
            + "\"}}").getBytes(StandardCharsets.UTF_8);
        ByteBuf out = Unpooled.wrappedBuffer(("HTTP/1.1 " + status + " " + (status == 408 ? "Request Timeout" : "Service Unavailable")
            + "\r\nContent-Type: application/json\r\nContent-Length: " + body.length + "\r\nConnection: close\r\n\r\n")
            .getBytes(StandardCharsets.US_ASCII), body);
        ctx.pipeline().firstContext().writeAndFlush(out).addListener(ChannelFutureListener.CLOSE);
    }

    private void closed() {
        done = true;
        if (timer != null) {
            timer.cancel(false);
        }
        registry.closed(this);
    }
}
