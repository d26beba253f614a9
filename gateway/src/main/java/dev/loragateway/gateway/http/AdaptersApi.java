package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterCatalog;
import dev.loragateway.adapters.AdapterConflictException;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterQuotaException;
import dev.loragateway.adapters.AdapterValidationException;
import dev.loragateway.adapters.PeftAdapterReader;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.CompletionException;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code /v1/adapters}: a tenant uploads, lists, reads and deletes its PEFT LoRA adapters.
 *
 * <pre>
 * POST   /v1/adapters       multipart (name, adapter_config, adapter_model) → 201 adapter object   ({@link AdapterUpload})
 * GET    /v1/adapters       {"object": "list", "data": [its own adapters and the system ones]}
 * GET    /v1/adapters/{id}  the adapter object; another tenant's adapter is 404, never 403
 * DELETE /v1/adapters/{id}  {"id", "object": "adapter", "deleted": true}
 * </pre>
 *
 * Deleting a system ({@code --lora-modules}) adapter is a 400 ("system adapters cannot be
 * deleted"): the tenant sees it in its list, so a 404 would contradict {@code GET}, and the
 * contract has no 403. A deleted adapter, and any earlier adapter of a newly uploaded name, is
 * forgotten by the device and host tiers ({@code forget}): requests running on it keep their slot
 * until their last unpin, and the next request under that name loads the new weights afresh.
 *
 * <p>The catalog is a node's registry, or in a cluster the cluster's catalog: there reads are remote
 * calls, so every route reads it on a worker thread ({@link #read}), and an upload refused for the
 * quota is refused before its body is read all the same. There a 201 also means a second node holds
 * the files, and an upload that could not get a second copy is a 503 ({@code Retry-After}) that keeps
 * nothing.
 */
final class AdaptersApi {
    private static final Logger LOG = LoggerFactory.getLogger(AdaptersApi.class);
    /**
     * Retry-After of a 429 over {@code max_adapters}. Waiting frees no quota (deleting an adapter
     * does), but the contract gives every 429 the header.
     */
    static final String QUOTA_RETRY_AFTER_S = "60";
    /** Retry-After of a 503 for an upload no second node of the cluster could take a copy of. */
    static final String REPLICA_RETRY_AFTER_S = "5";
    static final String PICKLE_REFUSAL = "adapter_model must be adapter_model.safetensors: a pickled PyTorch checkpoint"
        + " (" + PeftAdapterReader.PICKLE_FILE + ") is never loaded; save the adapter with safetensors, PEFT's default";

    private final Vertx vertx;
    private final AdapterCatalog registry;
    private final String baseId;
    private final long maxUploadBytes;
    private final Consumer<AdapterKey> forget;

    /**
     * @param baseId the base model's id ({@code parent} of every adapter)
     * @param maxUploadBytes the largest upload body ({@code --max-adapter-mb})
     * @param forget drops a deleted or replaced adapter from the caches ({@code DeviceTier.invalidate})
     */
    AdaptersApi(Vertx vertx, AdapterCatalog registry, String baseId, long maxUploadBytes, Consumer<AdapterKey> forget) {
        this.vertx = vertx;
        this.registry = registry;
        this.baseId = baseId;
        this.maxUploadBytes = maxUploadBytes;
        this.forget = forget;
    }

    /** Adds the four routes (behind the {@code /v1/*} authentication). */
    void routes(Router router) {
        router.get("/v1/adapters").handler(this::list);
        router.post("/v1/adapters").handler(this::upload);
        router.get("/v1/adapters/:id").handler(this::get);
        router.delete("/v1/adapters/:id").handler(this::delete);
    }

    /**
     * Runs {@code read} at once when the catalog is local (memory), else on a worker thread (the
     * cluster's catalog makes remote calls, which an event loop must not wait for).
     */
    static <T> Future<T> read(Vertx vertx, boolean remote, java.util.concurrent.Callable<T> read) {
        if (remote) {
            return vertx.executeBlocking(read, false);
        }
        try {
            return Future.succeededFuture(read.call());
        } catch (Exception e) {
            return Future.failedFuture(e);
        }
    }

    private void list(RoutingContext ctx) {
        String tenant = ApiServer.tenant(ctx).id();
        read(vertx, registry.remote(), () -> registry.list(tenant)).onComplete(ar -> {
            if (ar.failed()) {
                fail(ctx.response(), ar.cause());
                return;
            }
            ObjectNode root = Json.MAPPER.createObjectNode().put("object", "list");
            var data = root.putArray("data");
            ar.result().forEach(a -> data.add(adapterObject(a)));
            ApiServer.json(ctx.response(), 200, root);
        });
    }

    private void get(RoutingContext ctx) {
        String id = ctx.pathParam("id");
        String tenant = ApiServer.tenant(ctx).id();
        read(vertx, registry.remote(), () -> registry.find(tenant, id)).onComplete(ar -> {
            if (ar.failed()) {
                fail(ctx.response(), ar.cause());
            } else if (ar.result().isEmpty()) {
                ApiServer.error(ctx.response(), notFound(id));
            } else {
                ApiServer.json(ctx.response(), 200, adapterObject(ar.result().get()));
            }
        });
    }

    private void delete(RoutingContext ctx) {
        String tenant = ApiServer.tenant(ctx).id();
        String id = ctx.pathParam("id");
        read(vertx, registry.remote(), () -> registry.find(tenant, id)).onComplete(found -> {
            if (found.failed()) {
                fail(ctx.response(), found.cause());
            } else if (found.result().isEmpty()) {
                ApiServer.error(ctx.response(), notFound(id));
            } else if (found.result().get().system()) {
                ApiServer.error(ctx.response(), new ApiError(400, "invalid_request_error", "adapter '" + id
                    + "' is a system adapter (--lora-modules) shared by every tenant; system adapters cannot be deleted", "id", "system_adapter"));
            } else {
                remove(ctx, tenant, id);
            }
        });
    }

    private void remove(RoutingContext ctx, String tenant, String id) {
        vertx.executeBlocking(() -> {
            boolean gone = registry.delete(tenant, id);
            if (gone) {
                forget.accept(AdapterKey.of(tenant, id));
            }
            return gone;
        }, false).onComplete(ar -> {
            if (ar.failed()) {
                fail(ctx.response(), ar.cause());
            } else if (!ar.result()) {
                ApiServer.error(ctx.response(), notFound(id)); // deleted meanwhile by another request
            } else {
                ApiServer.json(ctx.response(), 200, Json.MAPPER.createObjectNode().put("id", id).put("object", "adapter").put("deleted", true));
            }
        });
    }

    private void upload(RoutingContext ctx) {
        var tenant = ApiServer.tenant(ctx);
        AdapterUpload upload = new AdapterUpload(ctx, vertx, registry, maxUploadBytes, (name, config, model) -> {
            refusePickle(model);
            AdapterInfo info = registry.register(tenant.id(), name, config, model, tenant.maxAdapters());
            forget.accept(info.key()); // nothing cached under this name (an adapter deleted a moment ago) outlives it
            return adapterObject(info);
        });
        if (tenant.maxAdapters() <= 0) {
            upload.start(null);
            return;
        }
        if (registry.remote()) {
            ctx.request().pause(); // the body waits while the count is read on a worker
        }
        read(vertx, registry.remote(), () -> registry.count(tenant.id())).onComplete(ar -> {
            ApiError early = null;
            int owned = ar.succeeded() ? ar.result() : 0; // a failed count refuses nothing early: register decides
            if (owned >= tenant.maxAdapters()) { // decided again, atomically, by register
                early = quota(new AdapterQuotaException("tenant " + tenant.id() + " already has " + owned + " adapters, its max_adapters is "
                    + tenant.maxAdapters() + "; delete one before uploading another", tenant.maxAdapters()));
            }
            upload.start(early);
        });
    }

    /** The API's adapter object. */
    ObjectNode adapterObject(AdapterInfo a) {
        ObjectNode o = Json.MAPPER.createObjectNode().put("id", a.name()).put("object", "adapter").put("owned_by", a.tenant())
            .put("parent", baseId).put("rank", a.rank());
        if (a.alpha() == Math.rint(a.alpha()) && Math.abs(a.alpha()) < 1e15) {
            o.put("alpha", (long) a.alpha());
        } else {
            o.put("alpha", a.alpha());
        }
        a.targets().forEach(o.putArray("target_modules")::add);
        return o.put("bytes", a.bytes()).put("created", a.created());
    }

    private static ApiError notFound(String id) {
        return new ApiError(404, "invalid_request_error", "The adapter `" + id + "` does not exist.", "id", "adapter_not_found");
    }

    private static ApiError quota(AdapterQuotaException e) {
        return new ApiError(429, "rate_limit_error", e.getMessage(), null, "adapter_quota_exceeded");
    }

    /** Whether an uploaded file name is that of a pickled checkpoint ({@code adapter_model.bin}, {@code .pt}, ...). */
    static boolean picklish(String filename) {
        if (filename == null) {
            return false;
        }
        String f = filename.toLowerCase(Locale.ROOT);
        return f.endsWith(".bin") || f.endsWith(".pt") || f.endsWith(".pth") || f.endsWith(".pkl") || f.endsWith(".ckpt");
    }

    /** Refuses a pickle (protocol 2+: {@code 0x80 0x02..0x05}) or a {@code torch.save} zip by its first bytes. */
    static void refusePickle(Path model) {
        byte[] head = new byte[4];
        int n;
        try (InputStream in = Files.newInputStream(model)) {
            n = in.readNBytes(head, 0, 4);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        boolean pickle = n >= 2 && (head[0] & 0xFF) == 0x80 && head[1] >= 2 && head[1] <= 5;
        boolean zip = n == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
        if (pickle || zip) {
            throw new AdapterValidationException(PICKLE_REFUSAL + " (the uploaded bytes are a " + (pickle ? "pickle" : "zip archive") + ")");
        }
    }

    /** Answers a failed adapter operation: 400 invalid, 409 name taken, 429 over quota (Retry-After), else as the server does. */
    static void fail(HttpServerResponse resp, Throwable failure) {
        Throwable t = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
        if (t instanceof ApiError e) {
            if (e.status() == 429) {
                resp.putHeader("Retry-After", QUOTA_RETRY_AFTER_S);
            } else if (e.status() == 503) { // no second node could hold a copy yet (cluster)
                resp.putHeader("Retry-After", REPLICA_RETRY_AFTER_S);
            }
            ApiServer.error(resp, e);
        } else if (t instanceof AdapterValidationException) {
            ApiServer.error(resp, new ApiError(400, "invalid_request_error", t.getMessage(),
                t.getMessage().startsWith("invalid adapter name") ? "name" : null, "invalid_adapter"));
        } else if (t instanceof AdapterConflictException) {
            ApiServer.error(resp, new ApiError(409, "invalid_request_error", t.getMessage(), "name", "adapter_exists"));
        } else if (t instanceof AdapterQuotaException q) {
            resp.putHeader("Retry-After", QUOTA_RETRY_AFTER_S);
            ApiServer.error(resp, quota(q));
        } else {
            if (t instanceof UncheckedIOException) {
                LOG.error("adapter store failed", t);
            }
            ApiServer.fail(resp, t);
        }
    }
}
