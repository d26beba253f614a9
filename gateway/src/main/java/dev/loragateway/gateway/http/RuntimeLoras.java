package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.adapters.AdapterConflictException;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterValidationException;
import dev.loragateway.adapters.PeftAdapterReader;
import dev.loragateway.gateway.auth.Tenants;
import io.vertx.core.Vertx;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * vLLM's dynamic LoRA routes, for tools written against vLLM ({@code VLLM_ALLOW_RUNTIME_LORA_UPDATING}):
 *
 * <pre>
 * POST /v1/load_lora_adapter   {"lora_name": NAME, "lora_path": DIR} → 200 text/plain "Success: LoRA adapter 'NAME' added successfully."
 * POST /v1/unload_lora_adapter {"lora_name": NAME}                   → 200 text/plain "Success: LoRA adapter 'NAME' removed successfully."
 * </pre>
 *
 * Who may call them: with {@code --api-keys}, only an operator key ({@code operator_keys}, the
 * admins): a tenant's key gets 403, no key or a wrong one 401; the routes are on when the server
 * runs with {@code --allowed-lora-dir} or {@code --allow-runtime-lora-updating}. With auth off,
 * anyone who reaches the port, and only when the server runs with
 * {@code --allow-runtime-lora-updating}. Otherwise both answer 404 naming the flag (vLLM does not
 * even register them). A loaded adapter
 * is a system adapter, as a {@code --lora-modules} one is and as in vLLM: {@code /v1/models} lists it
 * to every tenant ({@code owned_by: "system"}) and a request's {@code model} names it at once.
 *
 * <p>What may be loaded: only a directory under an {@code --allowed-lora-dir} root (none: every load
 * is a 403 naming the flag). The path is resolved to its real path ({@link Path#toRealPath}: no
 * {@code ..}, no symlink) and must lie under a root's real path, and so must the real paths of its
 * two files. Those two files are then copied (never through a link) into the registry's staging area
 * ({@code --data-dir/tmp/}) and registered from there, so what was checked and validated is what is
 * served even if the source changes later; the copy is removed on unload, and a restart forgets it
 * (as vLLM forgets runtime loads). Validation is the upload's: the same size cap
 * ({@code --max-adapter-mb}, 413), the same pickle refusal, {@link AdapterRegistry#registerSystem}'s
 * full check, and the same 400 as {@code POST /v1/adapters} for a bad adapter ({@link AdaptersApi#fail}).
 *
 * <p>Unload takes any system adapter, {@code --lora-modules} ones too (vLLM unloads those as well;
 * their directories are left alone). Requests already running on it finish on its pinned slot; new
 * ones get 404, as after {@code DELETE /v1/adapters/{id}}.
 */
final class RuntimeLoras {
    private static final Logger LOG = LoggerFactory.getLogger(RuntimeLoras.class);
    static final String FLAG = "--allow-runtime-lora-updating";
    static final String DIR_FLAG = "--allowed-lora-dir";
    /** A body of these routes is a name and a path. */
    private static final long MAX_BODY = 64L << 10;
    private static final Set<String> LOAD_FIELDS = Set.of("lora_name", "lora_path", "load_inplace");
    private static final Set<String> UNLOAD_FIELDS = Set.of("lora_name", "lora_int_id");

    /** An allowed root: as configured (absolute, normalised) and its real path. */
    private record Root(Path given, Path real) {
    }

    private final Vertx vertx;
    private final AdapterRegistry registry; // null: the routes are off (no --allow-runtime-lora-updating)
    private final List<Root> roots;
    private final java.util.function.LongSupplier maxBytes;
    private final Supplier<Tenants> tenants;
    private final Consumer<AdapterKey> forget;
    /** The staging copies of the adapters loaded here, by name (a --lora-modules adapter has none). */
    private final Map<String, Path> copies = new ConcurrentHashMap<>();

    /**
     * @param registry the node's registry, or null when runtime updating is off
     * @param allowedDirs the {@code --allowed-lora-dir} roots (resolved to real paths now)
     * @param maxBytes the largest adapter, as for uploads ({@code --max-adapter-mb}), read at each load
     * @param forget drops an adapter from the device and host tiers
     * @throws IllegalArgumentException when a root is not an existing directory
     */
    RuntimeLoras(Vertx vertx, AdapterRegistry registry, List<Path> allowedDirs, java.util.function.LongSupplier maxBytes, Supplier<Tenants> tenants,
                 Consumer<AdapterKey> forget) {
        this.vertx = vertx;
        this.registry = registry;
        this.maxBytes = maxBytes;
        this.tenants = tenants;
        this.forget = forget;
        List<Root> r = new ArrayList<>();
        for (Path d : allowedDirs) {
            if (!Files.isDirectory(d)) {
                throw new IllegalArgumentException(DIR_FLAG + " " + d + " is not a directory");
            }
            try {
                r.add(new Root(d.toAbsolutePath().normalize(), d.toRealPath()));
            } catch (IOException e) {
                throw new IllegalArgumentException(DIR_FLAG + " " + d + ": " + e.getMessage());
            }
        }
        this.roots = List.copyOf(r);
    }

    /** The routes of a server without {@value #FLAG}: both answer 404 naming it. */
    static RuntimeLoras off(Vertx vertx) {
        return new RuntimeLoras(vertx, null, List.of(), () -> 0, Tenants::open, key -> { });
    }

    /** Adds both routes; call before the {@code /v1/*} authentication, which knows no operator key. */
    void routes(Router router) {
        for (String path : List.of("/v1/load_lora_adapter", "/v1/unload_lora_adapter")) {
            router.route(path).handler(this::admit);
            router.post(path).handler(BodyHandler.create().setBodyLimit(MAX_BODY));
        }
        router.post("/v1/load_lora_adapter").handler(this::load);
        router.post("/v1/unload_lora_adapter").handler(this::unload);
    }

    /** 404 when off; with keys, an operator key only (403 for a tenant's, 401 for none or a wrong one). */
    private void admit(RoutingContext ctx) {
        if (registry == null) {
            ApiServer.error(ctx.response(), new ApiError(404, "not_found_error", "runtime LoRA updating is off: start the server with "
                + FLAG + " and " + DIR_FLAG + " DIR (with --api-keys, " + DIR_FLAG + " alone: operator keys load adapters) to use "
                + ctx.request().path(), null, "runtime_lora_updating_off"));
            return;
        }
        Tenants t = tenants.get();
        if (t.enabled()) {
            List<String> keys = ctx.request().headers().getAll("Authorization");
            String key = keys.size() == 1 ? keys.get(0) : null;
            if (keys.size() > 1) {
                ApiServer.error(ctx.response(), new ApiError(400, "invalid_request_error", "the request has " + keys.size()
                    + " Authorization headers; send exactly one: 'Authorization: Bearer KEY'", null, "duplicate_header"));
                return;
            }
            if (!t.isOperator(key)) {
                if (t.authenticate(key).isPresent()) {
                    ApiServer.error(ctx.response(), new ApiError(403, "permission_error", "only an operator key (operator_keys of --api-keys)"
                        + " may load or unload LoRA adapters; a tenant uploads its own with POST /v1/adapters", null, "operator_key_required"));
                } else {
                    ApiServer.error(ctx.response(), ApiServer.unauthorized(key));
                }
                return;
            }
        }
        ctx.next();
    }

    private void load(RoutingContext ctx) {
        JsonNode body;
        String name;
        String path;
        try {
            body = body(ctx, LOAD_FIELDS);
            name = text(body, "lora_name");
            path = text(body, "lora_path");
            if (name == null || path == null) {
                throw ApiError.badRequest("Both 'lora_name' and 'lora_path' must be provided.", name == null ? "lora_name" : "lora_path");
            }
            JsonNode inplace = body.get("load_inplace");
            if (inplace != null && !inplace.isNull() && !(inplace.isBoolean() && !inplace.booleanValue())) {
                throw ApiError.badRequest("load_inplace must be false (or absent): an adapter is never replaced in place; unload it,"
                    + " then load it again", "load_inplace");
            }
            checkName(name);
            if (roots.isEmpty()) {
                throw new ApiError(403, "permission_error", "the server may load adapters from no directory: start it with " + DIR_FLAG
                    + " DIR to allow loads from under DIR", "lora_path", "no_allowed_lora_dir");
            }
        } catch (ApiError e) {
            ApiServer.error(ctx.response(), e);
            return;
        }
        vertx.executeBlocking(() -> load(name, path), false).onComplete(ar -> {
            if (ar.failed()) {
                AdaptersApi.fail(ctx.response(), ar.cause());
            } else {
                LOG.info("loaded LoRA adapter {} from {} (rank {}, {} bytes)", name, path, ar.result().rank(), ar.result().bytes());
                text(ctx, "Success: LoRA adapter '" + name + "' added successfully.");
            }
        });
    }

    private void unload(RoutingContext ctx) {
        String name;
        try {
            JsonNode body = body(ctx, UNLOAD_FIELDS);
            name = text(body, "lora_name");
            if (name == null) {
                throw ApiError.badRequest(body.hasNonNull("lora_int_id")
                    ? "lora_int_id is not supported here: name the adapter with lora_name" : "lora_name must be provided.", "lora_name");
            }
        } catch (ApiError e) {
            ApiServer.error(ctx.response(), e);
            return;
        }
        vertx.executeBlocking(() -> unload(name), false).onComplete(ar -> {
            if (ar.failed()) {
                AdaptersApi.fail(ctx.response(), ar.cause());
            } else if (!ar.result()) {
                ApiServer.error(ctx.response(), new ApiError(404, "not_found_error", "The lora adapter '" + name + "' cannot be found.",
                    "lora_name", "lora_not_found"));
            } else {
                LOG.info("unloaded LoRA adapter {}", name);
                text(ctx, "Success: LoRA adapter '" + name + "' removed successfully.");
            }
        });
    }

    /** Checks, copies, validates and registers; on a worker thread, one change at a time. */
    private synchronized AdapterInfo load(String name, String requested) {
        if (registry.get(AdapterKey.system(name)).isPresent()) {
            throw loaded(name);
        }
        Path dir = resolve(requested);
        Path config = file(dir, PeftAdapterReader.CONFIG_FILE, requested);
        Path weights = file(dir, PeftAdapterReader.WEIGHTS_FILE, requested);
        if (weights == null && Files.exists(dir.resolve(PeftAdapterReader.PICKLE_FILE), LinkOption.NOFOLLOW_LINKS)) {
            throw new AdapterValidationException(AdaptersApi.PICKLE_REFUSAL);
        }
        if (config == null || weights == null) {
            throw new AdapterValidationException("lora_path '" + requested + "' has no " + (config == null
                ? PeftAdapterReader.CONFIG_FILE : PeftAdapterReader.WEIGHTS_FILE) + ": a PEFT adapter directory holds "
                + PeftAdapterReader.CONFIG_FILE + " and " + PeftAdapterReader.WEIGHTS_FILE);
        }
        long size = size(config) + size(weights);
        if (size > maxBytes.getAsLong()) { // as an upload over the cap
            throw tooLarge(size);
        }
        Path staging = registry.newStagingDirectory();
        boolean kept = false;
        try {
            long copied = copy(config, staging.resolve(PeftAdapterReader.CONFIG_FILE))
                + copy(weights, staging.resolve(PeftAdapterReader.WEIGHTS_FILE));
            if (copied > maxBytes.getAsLong()) { // grown since
                throw tooLarge(copied);
            }
            AdaptersApi.refusePickle(staging.resolve(PeftAdapterReader.WEIGHTS_FILE));
            AdapterInfo info;
            try {
                info = registry.registerSystem(name, staging);
            } catch (AdapterConflictException e) {
                if (registry.get(AdapterKey.system(name)).isPresent()) {
                    throw loaded(name);
                }
                throw ApiError.badRequest(e.getMessage(), "lora_name"); // the base model's id
            }
            forget.accept(info.key()); // nothing cached under this name (one unloaded a moment ago) outlives it
            copies.put(name, staging);
            kept = true;
            return info;
        } finally {
            if (!kept) {
                registry.discardStaging(staging);
            }
        }
    }

    /** Removes the system adapter {@code name}; false when there is none. */
    private synchronized boolean unload(String name) {
        Optional<AdapterInfo> gone = registry.unregisterSystem(name);
        if (gone.isEmpty()) {
            return false;
        }
        forget.accept(gone.get().key());
        Path copy = copies.remove(name);
        if (copy != null) {
            registry.discardStaging(copy);
        }
        return true;
    }

    /**
     * The real path of {@code requested}, a directory under a root: 400 when it is outside every
     * root as written or once links are resolved, 404 when it does not exist.
     */
    private Path resolve(String requested) {
        Path p;
        try {
            p = Path.of(requested).toAbsolutePath().normalize();
        } catch (InvalidPathException e) {
            throw ApiError.badRequest("lora_path '" + requested + "' is not a valid path: " + e.getReason(), "lora_path");
        }
        if (roots.stream().noneMatch(r -> p.startsWith(r.given()) || p.startsWith(r.real()))) {
            throw outside(requested, "");
        }
        Path real;
        try {
            real = p.toRealPath();
        } catch (NoSuchFileException e) {
            throw new ApiError(404, "not_found_error", "No adapter found at lora_path '" + requested + "': it does not exist",
                "lora_path", "lora_path_not_found");
        } catch (IOException e) {
            throw ApiError.badRequest("lora_path '" + requested + "' cannot be read: " + e.getMessage(), "lora_path");
        }
        if (!under(real)) {
            throw outside(requested, " once its links are resolved (" + real.getFileName() + ")");
        }
        if (!Files.isDirectory(real)) {
            throw ApiError.badRequest("lora_path '" + requested + "' is not a directory: give the PEFT adapter's directory, which holds "
                + PeftAdapterReader.CONFIG_FILE + " and " + PeftAdapterReader.WEIGHTS_FILE, "lora_path");
        }
        return real;
    }

    /** The real path of {@code dir}'s file {@code name} (null when absent), refused when a link leads out of the roots. */
    private Path file(Path dir, String name, String requested) {
        Path f = dir.resolve(name);
        if (!Files.exists(f, LinkOption.NOFOLLOW_LINKS)) {
            return null;
        }
        Path real;
        try {
            real = f.toRealPath();
        } catch (IOException e) { // a dangling link
            throw ApiError.badRequest("lora_path '" + requested + "': " + name + " cannot be read (a broken link?)", "lora_path");
        }
        if (!under(real)) {
            throw outside(requested, ": its " + name + " is a link to a file outside");
        }
        if (!Files.isRegularFile(real)) {
            throw ApiError.badRequest("lora_path '" + requested + "': " + name + " is not a regular file", "lora_path");
        }
        return real;
    }

    private static long size(Path f) {
        try {
            return Files.size(f);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private boolean under(Path real) {
        return roots.stream().anyMatch(r -> real.startsWith(r.real()));
    }

    private static ApiError outside(String requested, String how) {
        return ApiError.badRequest("lora_path '" + requested + "' is outside every " + DIR_FLAG + how
            + "; the server loads adapters only from under those directories", "lora_path");
    }

    private static ApiError loaded(String name) {
        return new ApiError(400, "invalid_request_error", "The lora adapter '" + name + "' has already been loaded.", "lora_name",
            "lora_already_loaded");
    }

    /** Copies a real path (opened without following a link) to {@code to}; returns the bytes copied. */
    private static long copy(Path from, Path to) {
        try (InputStream in = Files.newInputStream(from, StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS)) {
            return Files.copy(in, to);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private ApiError tooLarge(long bytes) {
        return new ApiError(413, "invalid_request_error", "the adapter at lora_path has " + bytes + " bytes, more than the "
            + maxBytes.getAsLong() + " an adapter may have (--max-adapter-mb)", "lora_path", null);
    }

    private static void checkName(String name) {
        if (!AdapterRegistry.validName(name)) {
            throw ApiError.badRequest("invalid lora_name '" + name + "': use 1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a"
                + " letter or digit", "lora_name");
        }
    }

    /** The JSON object body, with no field outside {@code allowed}. */
    private static JsonNode body(RoutingContext ctx, Set<String> allowed) {
        JsonNode body;
        try {
            body = Json.MAPPER.readTree(ctx.body().asString());
        } catch (IOException | RuntimeException e) {
            body = null;
        }
        if (body == null || !body.isObject()) {
            throw ApiError.badRequest("the body must be a JSON object such as {\"lora_name\": \"NAME\", \"lora_path\": \"DIR\"}", null);
        }
        for (var it = body.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!allowed.contains(f)) {
                throw ApiError.badRequest("unknown field '" + f + "' (this route takes " + String.join(", ", allowed.stream().sorted().toList())
                    + ")", f);
            }
        }
        return body;
    }

    /** A string field: null when absent, null or empty; 400 when not a string. */
    private static String text(JsonNode body, String field) {
        JsonNode v = body.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isTextual()) {
            throw ApiError.badRequest(field + " must be a string, got " + v.getNodeType().toString().toLowerCase(java.util.Locale.ROOT), field);
        }
        return v.asText().isEmpty() ? null : v.asText();
    }

    /** vLLM answers these routes with plain text. */
    private static void text(RoutingContext ctx, String message) {
        if (!ctx.response().ended() && !ctx.response().closed()) {
            ctx.response().setStatusCode(200).putHeader("Content-Type", "text/plain; charset=utf-8").end(message);
        }
    }
}
