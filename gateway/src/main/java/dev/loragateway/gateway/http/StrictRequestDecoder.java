package dev.loragateway.gateway.http;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.DecoderResult;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.LastHttpContent;
import io.vertx.core.http.Http1ServerConfig;
import io.vertx.core.http.impl.http1.VertxHttpRequestDecoder;
import java.util.List;

/**
 * Vert.x's HTTP/1 request decoder with two additions, put in each connection's pipeline in place
 * of Vert.x's own by {@link Connections}:
 *
 * <ul>
 *   <li>a header line that begins with a space or a tab (obsolete line folding, RFC 9112 §5.2,
 *       which Netty would silently join to the header before it) fails the request's decoding, so
 *       that it is answered 400 by the server's invalid-request handler, naming the header;
 *   <li>the first byte of each request head is announced down the pipeline ({@link #HEAD_STARTED})
 *       so that {@link ConnectionGuard} can tell a client sending a head from an idle one.
 * </ul>
 *
 * How: Netty's decoder consumes a head over one or more {@code decode} calls and emits the request
 * in the last one; its body comes in later calls, and the call that ends a body emits nothing of the
 * next head. So the bytes that calls consume between a body's end and the next request's emission
 * are exactly one head; they are scanned here for line starts.
 *
 * <p>Extends a Vert.x implementation class (pinned Vert.x 5.1.6, see STACK.md): its header-name
 * interning and message classes are what Vert.x's connection expects.
 */
final class StrictRequestDecoder extends VertxHttpRequestDecoder {
    /** The user event fired when a request head's first byte has been read. */
    static final Object HEAD_STARTED = new Object() {
        @Override
        public String toString() {
            return "HEAD_STARTED";
        }
    };
    private static final int MAX_NAME = 64;

    private boolean inHead = true;    // reading (or waiting for) a head, not a body
    private boolean started;          // a byte of this head has been read
    private int lines;                // lines of this head ended (0: in the request line)
    private boolean lineStart = true; // the next byte begins a line
    private boolean lineEmpty = true; // the current line has no bytes yet but CR
    private boolean inName;           // reading a header's name
    private final StringBuilder name = new StringBuilder(); // the last header's name (its first MAX_NAME chars)
    private String folded;            // the name of the header that the first folded line continues

    StrictRequestDecoder(Http1ServerConfig config) {
        super(config);
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) throws Exception {
        int from = in.readerIndex();
        int before = out.size();
        super.decode(ctx, in, out);
        if (inHead) {
            scan(ctx, in, from, in.readerIndex());
        }
        for (int i = before; i < out.size(); i++) {
            Object o = out.get(i);
            if (o instanceof HttpRequest r && inHead) {
                if (folded != null && r.decoderResult().isSuccess()) {
                    r.setDecoderResult(DecoderResult.failure(new IllegalArgumentException("obsolete line folding: a header line begins "
                        + "with a space or a tab (continuing the header '" + folded + "'); send every header on one line (RFC 9112 "
                        + "section 5.2)")));
                }
                inHead = false;
            }
            if (o instanceof LastHttpContent) { // the request is complete: the next bytes begin a head
                inHead = true;
                started = false;
                lines = 0;
                lineStart = true;
                lineEmpty = true;
                inName = false;
                name.setLength(0);
                folded = null;
            }
        }
    }

    /** Follows the lines of the head bytes {@code [from, to)}. */
    private void scan(ChannelHandlerContext ctx, ByteBuf in, int from, int to) {
        if (from < to && !started) {
            started = true;
            ctx.fireUserEventTriggered(HEAD_STARTED);
        }
        for (int i = from; i < to; i++) {
            byte b = in.getByte(i);
            if (lineStart && b != '\n') {
                lineStart = false;
                if (lines >= 1 && (b == ' ' || b == '\t')) {
                    if (folded == null) {
                        folded = name.toString();
                    }
                } else if (lines >= 1) {
                    name.setLength(0);
                    inName = true;
                }
            }
            if (b == '\n') {
                if (lines > 0 || !lineEmpty) { // empty lines before the request line are skipped, not counted
                    lines++;
                }
                lineStart = true;
                lineEmpty = true;
                inName = false;
            } else if (b != '\r') {
                lineEmpty = false;
                if (inName) {
                    if (b == ':') {
                        inName = false;
                    } else if (name.length() < MAX_NAME) {
                        name.append((char) (b & 0xFF));
                    }
                }
            }
        }
    }
}
