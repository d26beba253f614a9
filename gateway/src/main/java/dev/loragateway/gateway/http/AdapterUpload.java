package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.adapters.AdapterCatalog;
import io.netty.handler.codec.http.multipart.HttpPostRequestDecoder;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.file.AsyncFile;
import io.vertx.core.file.OpenOptions;
import io.vertx.core.http.HttpClosedException;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.http.HttpServerFileUpload;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.ext.web.RoutingContext;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * One {@code POST /v1/adapters} body, received as it streams in: the two file parts go straight to
 * a staging directory of the registry ({@code dataDir/tmp/ID-upload/}), never whole into memory,
 * and never more than the cap ({@code --max-adapter-mb}) of them.
 *
 * <pre>
 * refuse before reading:  not multipart/form-data → 400, Content-Length over the cap → 413, tenant at its quota → 429
 * stream:                 adapter_config, adapter_model → staging/adapter_config, staging/adapter_model (AsyncFile;
 *                         the request pauses while writes queue up); every body byte counted: past the cap → 413
 * end:                    the body's last bytes lack the closing boundary "--B--" → 400 naming it (else an
 *                         unterminated part would wait for its end forever)
 * stall:                  no body byte for --body-timeout-s → 408, then the connection closes
 * settle:                 body ended and every file closed → accept(name, config, model) on a worker → 201
 * always, then answer:    the staging directory is removed before the response goes out
 * </pre>
 *
 * A refused body is still read to its end and discarded, so that a client that is still sending
 * reads the answer instead of a reset connection; only past the cap plus {@link #DRAIN_SLACK} is
 * the connection closed. Every callback runs on the request's event loop; file-system work that
 * blocks (making and removing the staging directory, validation) runs on worker threads.
 */
final class AdapterUpload {
    static final String NAME_FIELD = "name";
    static final String CONFIG_PART = "adapter_config";
    static final String MODEL_PART = "adapter_model";
    /** How much of a refused body is read and discarded before the connection is closed instead. */
    static final long DRAIN_SLACK = 64L << 20;
    /** Bytes after the closing delimiter ("epilogue", which RFC 2046 lets a sender add and the parser ignores) still accepted. */
    static final int EPILOGUE = 64;
    static final String FORM = "multipart/form-data with a field name and two files, adapter_config (adapter_config.json)"
        + " and adapter_model (adapter_model.safetensors)";

    /** What to do with a complete upload; runs on a worker thread; returns the 201 body or throws. */
    interface Accept {
        JsonNode accept(String name, Path config, Path model);
    }

    /** One file part being written. */
    private final class Part {
        final HttpServerFileUpload upload;
        final Path path;
        AsyncFile file;   // null while opening
        boolean closing;

        Part(HttpServerFileUpload upload, Path path) {
            this.upload = upload;
            this.path = path;
        }

        void write(Buffer b) {
            if (closing || refused != null) {
                return; // discarded
            }
            file.write(b).onFailure(e -> refuse(storeFailed(e)));
            if (file.writeQueueFull()) {
                upload.pause();
                file.drainHandler(v -> upload.resume());
            }
        }

        /** Closes the file (once); a part refused mid-stream is resumed so that the body drains. */
        void close() {
            if (closing) {
                return;
            }
            closing = true;
            upload.resume();
            if (file != null) { // else the open in flight closes it when it lands
                file.close().onComplete(ar -> closed());
            }
        }
    }

    private final RoutingContext ctx;
    private final HttpServerRequest req;
    private final Vertx vertx;
    private final AdapterCatalog registry;
    private final long maxBytes;
    private final Accept accept;
    private final Map<String, Part> parts = new LinkedHashMap<>();
    private Path staging;      // null until made
    private int pending;       // staging directory being made + files not yet closed
    private long received;     // body bytes so far
    private boolean ended;     // the body has ended
    private ApiError refused;  // the first refusal; what follows of the body is discarded
    private boolean settled;   // the answer is decided
    private byte[] closing;    // "--BOUNDARY--", the delimiter that ends the body; null for a refused Content-Type
    private byte[] tail;       // the body's last bytes, enough to hold the closing delimiter and a little epilogue
    private int tailLength;
    private boolean closeAfterAnswer; // the body did not end: the connection cannot carry another request

    AdapterUpload(RoutingContext ctx, Vertx vertx, AdapterCatalog registry, long maxBytes, Accept accept) {
        this.ctx = ctx;
        this.req = ctx.request();
        this.vertx = vertx;
        this.registry = registry;
        this.maxBytes = maxBytes;
        this.accept = accept;
    }

    /**
     * Starts reading the body. Call from the route's handler, before anything asynchronous: the
     * request is paused here until the staging directory exists and the decoder is set up.
     *
     * @param early a refusal already known (the tenant's quota), or null
     */
    void start(ApiError early) {
        req.pause();
        String type = req.getHeader(HttpHeaders.CONTENT_TYPE);
        long declared = declaredLength();
        String boundary = type == null ? null : boundary(type);
        if (type == null || !type.toLowerCase(Locale.ROOT).startsWith("multipart/form-data")) {
            refused = ApiError.badRequest("POST /v1/adapters takes " + FORM + "; got Content-Type "
                + (type == null ? "(none)" : type), null);
        } else if (boundary == null) {
            refused = ApiError.badRequest("the Content-Type multipart/form-data has no boundary parameter (as in 'multipart/form-data; "
                + "boundary=XYZ'): the parts of the body cannot be told apart", null);
        } else if (declared > maxBytes) {
            refused = tooLarge(declared);
        } else if (early != null) {
            refused = early;
        }
        if (boundary != null) {
            closing = ("--" + boundary + "--").getBytes(StandardCharsets.ISO_8859_1);
            tail = new byte[closing.length + EPILOGUE];
        }
        req.handler(this::count);
        req.endHandler(v -> {
            ended = true;
            if (refused == null && !endsWithClosingBoundary()) {
                refuse(ApiError.badRequest("the multipart body ended without its closing boundary '" + new String(closing,
                    StandardCharsets.ISO_8859_1) + "' (after " + received + " bytes): the upload is incomplete", null));
            }
            settle();
        });
        req.exceptionHandler(this::broken);
        ConnectionGuard guard = Connections.guard(req.connection());
        if (guard != null) { // a stalled body is answered here, so that the staging directory goes first
            guard.onBodyTimeout(() -> {
                closeAfterAnswer = true;
                String s = HttpLimits.seconds(guard.limits().bodyTimeout());
                refuse(new ApiError(408, "invalid_request_error", "the upload stalled: no byte of it arrived for " + s
                    + " s (--body-timeout-s " + s + ") after " + received + " bytes", null, "request_timeout"));
            });
        }
        if (refused != null) {
            if ("100-continue".equalsIgnoreCase(req.getHeader(HttpHeaders.EXPECT))) {
                // the client sends no body after a final answer, so the request would never end: close after answering
                ctx.response().putHeader(HttpHeaders.CONNECTION, "close").endHandler(v -> req.connection().close());
            }
            req.resume();
            settle();
            return;
        }
        if ("100-continue".equalsIgnoreCase(req.getHeader(HttpHeaders.EXPECT))) {
            ctx.response().writeContinue();
        }
        pending++;
        vertx.executeBlocking(registry::newStagingDirectory, false).onComplete(ar -> {
            pending--;
            if (ar.failed()) {
                refuse(storeFailed(ar.cause()));
            } else {
                staging = ar.result();
                if (refused == null) {
                    req.setExpectMultipart(true);
                    req.uploadHandler(this::part);
                }
            }
            req.resume();
            settle();
        });
    }

    private long declaredLength() {
        String len = req.getHeader(HttpHeaders.CONTENT_LENGTH);
        try {
            return len == null ? -1 : Long.parseLong(len.trim());
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** The 413 for a body that declares {@code declared} bytes, or (-1) that streamed past the cap. */
    private ApiError tooLarge(long declared) {
        String size = declared >= 0 ? declared + " bytes" : "larger (more than " + maxBytes + " bytes arrived)";
        return new ApiError(413, "invalid_request_error", "the upload is " + size + " but --max-adapter-mb allows "
            + maxBytes + " bytes (" + (maxBytes >> 20) + " MB)", null, "upload_too_large");
    }

    private static ApiError storeFailed(Throwable t) {
        return new ApiError(500, "internal_error", "the upload could not be stored: " + t.getMessage(), null, null);
    }

    /** Every body chunk (after the multipart decoder has seen it): the cap, and the drain limit of a refused body. */
    private void count(Buffer b) {
        received += b.length();
        if (tail != null) { // keep the last tail.length bytes
            int n = b.length();
            if (n >= tail.length) {
                b.getBytes(n - tail.length, n, tail, 0);
                tailLength = tail.length;
            } else {
                int keep = Math.min(tailLength, tail.length - n);
                System.arraycopy(tail, tailLength - keep, tail, 0, keep);
                b.getBytes(0, n, tail, keep);
                tailLength = keep + n;
            }
        }
        if (received > maxBytes && refused == null) {
            refuse(tooLarge(-1));
        }
        if (refused != null && received > maxBytes + DRAIN_SLACK) {
            req.connection().close();
        }
    }

    private void part(HttpServerFileUpload up) {
        String field = up.name();
        ApiError bad = null;
        if (!field.equals(CONFIG_PART) && !field.equals(MODEL_PART)) {
            bad = ApiError.badRequest("unexpected file part '" + field + "': POST /v1/adapters takes " + FORM, field);
        } else if (parts.containsKey(field)) {
            bad = ApiError.badRequest("the file part '" + field + "' appears twice", field);
        } else if (field.equals(MODEL_PART) && AdaptersApi.picklish(up.filename())) {
            bad = ApiError.badRequest(AdaptersApi.PICKLE_REFUSAL + " (the uploaded file is " + up.filename() + ")", field);
        }
        if (bad != null || refused != null) {
            up.handler(b -> { }); // discarded
            refuse(bad);
            return;
        }
        Part p = new Part(up, staging.resolve(field));
        parts.put(field, p);
        pending++;
        up.pause();
        up.handler(p::write);
        up.endHandler(v -> p.close());
        up.exceptionHandler(this::broken);
        vertx.fileSystem().open(p.path.toString(), new OpenOptions().setWrite(true).setCreateNew(true)).onComplete(ar -> {
            if (ar.failed()) {
                p.closing = true;
                p.upload.resume();
                refuse(storeFailed(ar.cause()));
                closed();
                return;
            }
            p.file = ar.result();
            if (p.closing) {
                p.file.close().onComplete(c -> closed());
            } else {
                up.resume();
            }
        });
    }

    /** The body broke off (client gone) or is not valid multipart: a 400 that says which. */
    private void broken(Throwable t) {
        refuse(ApiError.badRequest(brokenBecause(t, received), null));
    }

    /** What went wrong, in words (the decoder's exceptions may have no message). */
    static String brokenBecause(Throwable t, long received) {
        // Netty's form data refuses a field past Vert.x's cap with this IOException, wrapped
        boolean tooLong = t.getCause() instanceof java.io.IOException io && io.getMessage() != null
            && io.getMessage().startsWith("Size exceed allowed maximum capacity");
        if (t instanceof HttpPostRequestDecoder.TooLongFormFieldException || tooLong) {
            return "a form field of the upload is longer than " + HttpServerOptions.DEFAULT_MAX_FORM_ATTRIBUTE_SIZE + " bytes; POST "
                + "/v1/adapters takes " + FORM + " (a name is at most 64 characters)";
        }
        if (t instanceof HttpPostRequestDecoder.TooManyFormFieldsException) {
            return "the upload has more than " + HttpServerOptions.DEFAULT_MAX_FORM_FIELDS + " form fields; POST /v1/adapters takes "
                + FORM;
        }
        if (t instanceof HttpClosedException) {
            return "the connection closed after " + received + " bytes of the upload, before its end";
        }
        String why = t.getMessage() != null ? t.getMessage() : t.getCause() != null && t.getCause().getMessage() != null
            ? t.getCause().getMessage() : "the multipart decoder failed (" + t.getClass().getSimpleName() + ")";
        return "the upload is not valid multipart/form-data: " + why;
    }

    /** Whether the body so far ends with its closing delimiter (followed by at most {@link #EPILOGUE} bytes). */
    private boolean endsWithClosingBoundary() {
        for (int at = tailLength - closing.length; at >= 0; at--) {
            if (java.util.Arrays.equals(tail, at, at + closing.length, closing, 0, closing.length)) {
                return true;
            }
        }
        return false;
    }

    /** The {@code boundary} parameter of a Content-Type, unquoted, or null. */
    static String boundary(String contentType) {
        for (String param : contentType.split(";")) {
            String p = param.trim();
            if (p.regionMatches(true, 0, "boundary=", 0, 9)) {
                String b = p.substring(9).trim();
                if (b.length() >= 2 && b.startsWith("\"") && b.endsWith("\"")) {
                    b = b.substring(1, b.length() - 1);
                }
                return b.isEmpty() ? null : b;
            }
        }
        return null;
    }

    /** Refuses the upload (the first reason wins): stops writing and settles once every file is closed. */
    private void refuse(ApiError e) {
        if (refused == null && e != null) {
            refused = e;
        }
        for (Part p : parts.values()) {
            p.close();
        }
        settle();
    }

    private void closed() {
        pending--;
        settle();
    }

    /** Decides the answer once nothing is being written any more and the body ended (or was refused). */
    private void settle() {
        if (settled || pending > 0 || (refused == null && !ended)) {
            return;
        }
        if (refused == null) {
            refused = incomplete();
        }
        settled = true;
        Path dir = staging;
        if (refused != null) {
            ApiError e = refused;
            vertx.executeBlocking(() -> {
                discard(dir);
                return null;
            }, false).onComplete(ar -> {
                if (closeAfterAnswer) {
                    ctx.response().putHeader(HttpHeaders.CONNECTION, "close");
                }
                AdaptersApi.fail(ctx.response(), e);
                if (closeAfterAnswer) {
                    req.connection().close();
                }
            });
            return;
        }
        String name = req.getFormAttribute(NAME_FIELD);
        Path config = parts.get(CONFIG_PART).path;
        Path model = parts.get(MODEL_PART).path;
        vertx.executeBlocking(() -> {
            try {
                return accept.accept(name, config, model);
            } finally {
                discard(dir);
            }
        }, false).onComplete(ar -> {
            if (ar.succeeded()) {
                ApiServer.json(ctx.response(), 201, ar.result());
            } else {
                AdaptersApi.fail(ctx.response(), ar.cause());
            }
        });
    }

    /** A 400 naming what the complete body lacks, or null. */
    private ApiError incomplete() {
        int names = req.formAttributes().getAll(NAME_FIELD).size();
        if (names > 1) { // which one is meant would be a guess
            return ApiError.badRequest("the field '" + NAME_FIELD + "' appears " + names + " times; send it once: POST /v1/adapters takes "
                + FORM, NAME_FIELD);
        }
        List<String> missing = new ArrayList<>();
        if (req.getFormAttribute(NAME_FIELD) == null) {
            missing.add("the field '" + NAME_FIELD + "'");
        }
        for (String f : List.of(CONFIG_PART, MODEL_PART)) {
            if (!parts.containsKey(f)) {
                missing.add("the file '" + f + "'");
            }
        }
        if (missing.isEmpty()) {
            return null;
        }
        return ApiError.badRequest("the upload lacks " + String.join(" and ", missing) + ": POST /v1/adapters takes " + FORM,
            missing.get(0).replaceAll(".*'(.*)'", "$1"));
    }

    private void discard(Path dir) {
        if (dir != null) {
            registry.discardStaging(dir);
        }
    }
}
