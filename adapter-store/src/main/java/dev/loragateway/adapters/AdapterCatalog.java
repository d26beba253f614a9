package dev.loragateway.adapters;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * The adapters the HTTP API sees: what a request's {@code model} may name and what
 * {@code /v1/adapters} uploads, lists and deletes. Two implementations: a single node's
 * {@link AdapterRegistry} (its data directory is the whole truth), and the cluster's catalog in the
 * gateway, where a Hazelcast map is the truth and each node's registry is its disk copy.
 *
 * <p>A local registry answers from memory; the cluster's reads are remote calls ({@link #remote()}),
 * which an event loop must not wait for.
 */
public interface AdapterCatalog {
    /** True when reads may block on the network (call them from a worker thread); false for a local registry. */
    default boolean remote() {
        return false;
    }

    /** The base model's id, the one name no adapter may have. */
    String baseModelId();

    /** The tenant's own adapter {@code name}, else the system adapter of that name. */
    Optional<AdapterInfo> find(String tenant, String name);

    /** What {@code tenant} may use: the system adapters and its own, sorted by name (its own first on a tie). */
    List<AdapterInfo> list(String tenant);

    /** How many adapters {@code tenant} has uploaded (system adapters not counted). */
    int count(String tenant);

    /**
     * Validates and stores tenant {@code tenant}'s upload as adapter {@code name}, for a tenant that
     * may own at most {@code maxAdapters} adapters (0: no limit), decided atomically with the commit.
     *
     * @throws AdapterValidationException the name or the adapter is invalid (nothing is kept)
     * @throws AdapterConflictException the name is taken
     * @throws AdapterQuotaException the tenant already owns {@code maxAdapters} adapters
     */
    AdapterInfo register(String tenant, String name, Path configFile, Path tensorsFile, int maxAdapters);

    /** Removes the tenant's own adapter {@code name}: false when it has none. */
    boolean delete(String tenant, String name);

    /** A new empty directory for receiving an upload; {@link #discardStaging} removes it. */
    Path newStagingDirectory();

    /** Removes a directory from {@link #newStagingDirectory} and everything in it. */
    void discardStaging(Path staging);
}
