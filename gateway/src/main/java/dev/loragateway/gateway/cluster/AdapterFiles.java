package dev.loragateway.gateway.cluster;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.adapters.AdapterConflictException;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterValidationException;
import dev.loragateway.adapters.PeftAdapterReader;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Adapter files between the nodes of a cluster, over the internal listener (cluster secret
 * required, as for every {@code /internal/} route): a node serves the files of its copies, and
 * pulls a copy from another node into its own data directory, where it is validated as an upload is
 * and registered only when its digest is the one the cluster recorded.
 *
 * <pre>
 * GET  /internal/v1/adapters/files/TENANT/NAME/FILE?sha256=S   FILE of this node's copy when its digest is S → 200 bytes; else 404
 * POST /internal/v1/adapters/replicate                         {"tenant","name","sha256","created","from"}: pull the copy
 *                                                               from node address "from" → 200 {"node": this node's id}
 * </pre>
 *
 * The uploading node asks one peer to replicate (so that a 201 means two nodes hold the files); a
 * node that must run a request on an adapter it lacks pulls a copy itself ({@link #pull}). Pulls and
 * pushes block: call them from worker threads, never from an event loop.
 */
public final class AdapterFiles {
    static final String FILES = "/internal/v1/adapters/files";
    static final String REPLICATE = "/internal/v1/adapters/replicate";
    private static final Logger LOG = LoggerFactory.getLogger(AdapterFiles.class);
    private static final List<String> FILE_NAMES = List.of(PeftAdapterReader.CONFIG_FILE, PeftAdapterReader.WEIGHTS_FILE);

    private final Vertx vertx;
    private final AdapterRegistry registry;
    private final String nodeId;
    private final String token;
    private final long maxFileBytes;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

    /**
     * @param registry     this node's copies ({@code --data-dir})
     * @param nodeId       this node's id (a replicate answer names it)
     * @param secret       the cluster secret's bytes (empty without one)
     * @param maxFileBytes the largest file pulled ({@code --max-adapter-mb}: no upload was larger)
     */
    public AdapterFiles(Vertx vertx, AdapterRegistry registry, String nodeId, byte[] secret, long maxFileBytes) {
        this.vertx = vertx;
        this.registry = registry;
        this.nodeId = nodeId;
        this.token = InternalWire.token(secret);
        this.maxFileBytes = maxFileBytes;
    }

    /** Adds the two routes to the internal listener's router, behind its secret check ({@link InternalApi#mount}). */
    public void routes(Router router) {
        router.get(FILES + "/:tenant/:name/:file").handler(this::file);
        router.post(REPLICATE).handler(BodyHandler.create().setBodyLimit(4096)).handler(this::replicate);
    }

    private void file(RoutingContext ctx) {
        String tenant = ctx.pathParam("tenant");
        String name = ctx.pathParam("name");
        String file = ctx.pathParam("file");
        String sha = ctx.request().getParam("sha256");
        if (!AdapterRegistry.validName(tenant) || !AdapterRegistry.validName(name) || !FILE_NAMES.contains(file) || sha == null) {
            error(ctx.response(), 400, "expected " + FILES + "/TENANT/NAME/(" + String.join("|", FILE_NAMES) + ")?sha256=DIGEST");
            return;
        }
        Optional<AdapterInfo> copy = registry.get(AdapterKey.of(tenant, name));
        if (copy.isEmpty() || !sha.equals(copy.get().sha256())) {
            error(ctx.response(), 404, "node " + nodeId + " holds no copy of adapter " + tenant + "/" + name + " with digest " + sha);
            return;
        }
        ctx.response().putHeader("Content-Type", "application/octet-stream")
            .sendFile(copy.get().directory().resolve(file).toString())
            .onFailure(e -> LOG.debug("sending {} of {}/{} failed: {}", file, tenant, name, e.toString()));
    }

    private void replicate(RoutingContext ctx) {
        JsonNode body;
        String tenant;
        String name;
        String sha;
        String from;
        long created;
        try {
            body = InternalWire.MAPPER.readTree(ctx.body().buffer().getBytes());
            tenant = InternalWire.text(body, "tenant");
            name = InternalWire.text(body, "name");
            sha = InternalWire.text(body, "sha256");
            from = InternalWire.text(body, "from");
            created = body.path("created").asLong(-1);
            if (!AdapterRegistry.validName(tenant) || !AdapterRegistry.validName(name) || created < 0) {
                throw new IllegalArgumentException("bad tenant, name or created");
            }
        } catch (Exception e) {
            error(ctx.response(), 400, "expected {\"tenant\",\"name\",\"sha256\",\"created\",\"from\"}: " + e.getMessage());
            return;
        }
        vertx.executeBlocking(() -> pull(from, tenant, name, sha, created, ClusterAdapters.TRANSFER_TIMEOUT), false).onComplete(ar -> {
            if (ar.succeeded()) {
                ctx.response().putHeader("Content-Type", "application/json")
                    .end(InternalWire.MAPPER.createObjectNode().put("node", nodeId).toString());
            } else {
                LOG.warn("could not replicate adapter {}/{} from {}: {}", tenant, name, from, ar.cause().getMessage());
                error(ctx.response(), ar.cause() instanceof AdapterValidationException ? 422 : 502, ar.cause().getMessage());
            }
        });
    }

    private static void error(HttpServerResponse resp, int status, String message) {
        resp.setStatusCode(status).putHeader("Content-Type", "application/json")
            .end(InternalWire.MAPPER.createObjectNode().set("error", InternalWire.MAPPER.createObjectNode()
                .put("status", status).put("message", message)).toString());
    }

    /**
     * Pulls the copy of {@code tenant/name} with digest {@code sha256} from the node at {@code from}
     * (its internal address) into this node's data directory, replacing a copy of another digest
     * held here (the cluster's record is the truth). Blocks; returns what is registered here.
     *
     * @throws AdapterValidationException the copy is invalid or not that digest (nothing is kept)
     * @throws java.io.UncheckedIOException the node could not be reached or did not send the files
     */
    AdapterInfo pull(String from, String tenant, String name, String sha256, long created, Duration timeout) {
        AdapterKey key = AdapterKey.of(tenant, name);
        Optional<AdapterInfo> here = registry.get(key);
        if (here.isPresent() && sha256.equals(here.get().sha256())) {
            return here.get();
        }
        Path staging = registry.newStagingDirectory();
        try {
            long deadline = System.nanoTime() + timeout.toNanos();
            for (String file : FILE_NAMES) {
                download(from, tenant, name, sha256, file, staging.resolve(file), deadline);
            }
            for (int attempt = 0; ; attempt++) {
                here = registry.get(key);
                if (here.isPresent() && !sha256.equals(here.get().sha256())) {
                    LOG.info("replacing this node's copy of adapter {} (digest {}) with the cluster's ({})", key, here.get().sha256(), sha256);
                    registry.delete(tenant, name);
                }
                try {
                    return registry.registerCopy(tenant, name, staging.resolve(FILE_NAMES.get(0)), staging.resolve(FILE_NAMES.get(1)),
                        created, sha256);
                } catch (AdapterConflictException e) {
                    if (attempt > 0) { // another copy keeps arriving under the name: give up
                        throw e;
                    }
                }
            }
        } finally {
            registry.discardStaging(staging);
        }
    }

    private void download(String from, String tenant, String name, String sha256, String file, Path target, long deadline) {
        URI uri = URI.create(from + FILES + "/" + tenant + "/" + name + "/" + file + "?sha256=" + URLEncoder.encode(sha256, StandardCharsets.UTF_8));
        HttpRequest req = HttpRequest.newBuilder(uri).header(InternalWire.SECRET_HEADER, token).timeout(remaining(deadline)).GET().build();
        try {
            HttpResponse<Path> r = http.send(req, info -> {
                long len = info.headers().firstValueAsLong("content-length").orElse(-1);
                return info.statusCode() != 200 || len > maxFileBytes ? HttpResponse.BodySubscribers.replacing(null)
                    : HttpResponse.BodySubscribers.ofFile(target);
            });
            if (r.statusCode() != 200) {
                throw new java.io.UncheckedIOException(new IOException(from + " answered " + r.statusCode() + " for " + file + " of "
                    + tenant + "/" + name));
            }
            if (r.body() == null || Files.size(target) > maxFileBytes) {
                throw new AdapterValidationException(file + " of " + tenant + "/" + name + " from " + from + " is larger than "
                    + maxFileBytes + " bytes (--max-adapter-mb)");
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(new IOException("could not fetch " + file + " of " + tenant + "/" + name + " from "
                + from + ": " + e, e));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.UncheckedIOException(new IOException("interrupted while fetching " + tenant + "/" + name, e));
        }
    }

    /**
     * Asks the node at {@code peer} to pull the copy with digest {@code sha256} from {@code from};
     * blocks until it holds it and returns its node id.
     *
     * @throws java.io.UncheckedIOException it could not be reached or could not make the copy
     */
    String replicateTo(String peer, String tenant, String name, String sha256, long created, String from, Duration timeout) {
        String body = InternalWire.MAPPER.createObjectNode().put("tenant", tenant).put("name", name).put("sha256", sha256)
            .put("created", created).put("from", from).toString();
        HttpRequest req = HttpRequest.newBuilder(URI.create(peer + REPLICATE)).header(InternalWire.SECRET_HEADER, token)
            .header("Content-Type", "application/json").timeout(timeout).POST(HttpRequest.BodyPublishers.ofString(body)).build();
        try {
            HttpResponse<String> r;
            try {
                r = http.send(req, HttpResponse.BodyHandlers.ofString());
            } catch (IOException e) {
                throw new IOException("could not reach " + peer + ": " + e, e);
            }
            if (r.statusCode() != 200) {
                throw new IOException(peer + " answered " + r.statusCode() + ": " + r.body());
            }
            return InternalWire.MAPPER.readTree(r.body()).path("node").asText();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.UncheckedIOException(new IOException("interrupted while replicating to " + peer, e));
        }
    }

    private static Duration remaining(long deadline) {
        return Duration.ofNanos(Math.max(1_000_000L, deadline - System.nanoTime()));
    }
}
