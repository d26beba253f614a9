package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.adapters.AdapterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.file.AsyncFile;
import io.vertx.core.file.OpenOptions;
import io.vertx.core.http.HttpHeaders;
import io.vertx.core.http.HttpServerFileUpload;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.ext.web.RoutingContext;
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
    private final AdapterRegistry registry;
    private final long maxBytes;
    private final Accept accept;
    private final Map<String, Part> parts = new LinkedHashMap<>();
    private Path staging;      // null until made
    private int pending;       // staging directory being made + files not yet closed
    private long received;     // body bytes so far
    private boolean ended;     // the body has ended
    private ApiError refused;  // the first refusal; what follows of the body is discarded
    private boolean settled;   // the answer is decided

    AdapterUpload(RoutingContext ctx, Vertx vertx, AdapterRegistry registry, long maxBytes, Accept accept) {
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
        if (type == null || !type.toLowerCase(Locale.ROOT).startsWith("multipart/form-data")) {
            refused = ApiError.badRequest("POST /v1/adapters takes " + FORM + "; got Content-Type "
                + (type == null ? "(none)" : type), null);
        } else if (declared > maxBytes) {
            refused = tooLarge(declared);
        } else if (early != null) {
            refused = early;
        }
        req.handler(this::count);
        req.endHandler(v -> {
            ended = true;
            settle();
        });
        req.exceptionHandler(this::broken);
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

    /** The body broke off (client gone) or is not valid multipart. */
    private void broken(Throwable t) {
        refuse(ApiError.badRequest("the upload broke off or is not valid multipart/form-data: " + t.getMessage(), null));
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
            }, false).onComplete(ar -> AdaptersApi.fail(ctx.response(), e));
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
