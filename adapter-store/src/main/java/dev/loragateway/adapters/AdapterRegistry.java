package dev.loragateway.adapters;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Clock;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Objects;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The adapters every tenant may use: its own uploads, persisted under the data directory, and the
 * system adapters of {@code --lora-modules}, visible to all. Thread-safe; reads take no lock.
 *
 * <p>On disk (one process owns a data directory):
 * <pre>
 * dataDir/adapters/TENANT/NAME/adapter_config.json         as uploaded
 *                              adapter_model.safetensors   as uploaded
 *                              adapter.json                {"tenant", "name", "created", "sha256", ...}
 * dataDir/tmp/RANDOM/                                      uploads being received or validated, removals in progress
 * </pre>
 * An upload is copied into {@code tmp/RANDOM/}, forced to disk, fully validated there (what is
 * validated is exactly what is kept), then renamed into {@code adapters/} in one atomic step under
 * the registry's lock, where name conflicts are decided: of concurrent uploads of one name exactly
 * one wins. Any failure removes the temporary copy, so a rejected upload leaves nothing behind. A
 * removal renames the directory into {@code tmp/} (it vanishes atomically) and then deletes it.
 * {@link #load()} clears what a crash left in {@code tmp/} and re-lists {@code adapters/}.
 *
 * <p>Each uploaded adapter carries a content digest ({@link #digest}, kept in {@code adapter.json}):
 * in a cluster it tells a node's copy of an adapter from another upload under the same name, and
 * lets a copy pulled from another node be checked before it is registered ({@link #registerCopy}).
 */
public final class AdapterRegistry implements AdapterCatalog {
    /** Valid adapter names (and tenant ids): the API's {@code [A-Za-z0-9][A-Za-z0-9._-]{0,63}}. */
    public static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    /** The metadata file written beside the PEFT files. */
    static final String META_FILE = "adapter.json";

    private static final Logger LOG = LoggerFactory.getLogger(AdapterRegistry.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path adaptersDir;
    private final Path tmpDir;
    private final ModelShape base;
    private final String baseModelId;
    private final int maxRank;
    private final Clock clock;
    private final Object lock = new Object(); // serialises every change to the maps and to adapters/
    private final Map<String, NavigableMap<String, AdapterInfo>> byTenant = new ConcurrentHashMap<>();
    private final NavigableMap<String, AdapterInfo> system = new ConcurrentSkipListMap<>();

    /**
     * A registry over {@code dataDir} for adapters of the base model {@code base}, ranks up to
     * {@code maxRank}, where no adapter may be named {@code baseModelId}: a request's {@code model}
     * of that name runs the base model, so such an adapter could never be reached.
     */
    public AdapterRegistry(Path dataDir, ModelShape base, String baseModelId, int maxRank) {
        this(dataDir, base, baseModelId, maxRank, Clock.systemUTC());
    }

    /** As above, with the clock that stamps {@code created} (tests pass a fixed one). */
    public AdapterRegistry(Path dataDir, ModelShape base, String baseModelId, int maxRank, Clock clock) {
        this.adaptersDir = dataDir.resolve("adapters");
        this.tmpDir = dataDir.resolve("tmp");
        this.base = base;
        this.baseModelId = Objects.requireNonNull(baseModelId, "baseModelId");
        this.maxRank = maxRank;
        this.clock = clock;
    }

    /** The base model's shape, which every adapter must fit. */
    public ModelShape shape() {
        return base;
    }

    /** The base model's id, the one name no adapter may have. */
    @Override
    public String baseModelId() {
        return baseModelId;
    }

    /** Whether {@code s} is a valid adapter name or tenant id. */
    public static boolean validName(String s) {
        return s != null && NAME.matcher(s).matches();
    }

    /**
     * Prepares the data directory and lists what it holds: removes leftovers in {@code tmp/}, then
     * registers every stored adapter whose config and safetensors header still fit the base model
     * and {@code --max-lora-rank}; the others stay on disk and are skipped with a warning.
     */
    public void load() {
        synchronized (lock) {
            try {
                Files.createDirectories(adaptersDir);
                Files.createDirectories(tmpDir);
                try (Stream<Path> left = Files.list(tmpDir)) {
                    for (Path p : left.toList()) {
                        LOG.info("removing leftover {} from an interrupted upload or removal", tmpDir.relativize(p));
                        DurableFiles.deleteTree(p);
                    }
                }
                byTenant.clear();
                for (Path tenantDir : sortedChildren(adaptersDir)) {
                    String tenant = tenantDir.getFileName().toString();
                    if (!Files.isDirectory(tenantDir) || !validName(tenant)) {
                        LOG.warn("skipping {} in the adapter store: not a tenant directory", tenant);
                        continue;
                    }
                    for (Path dir : sortedChildren(tenantDir)) {
                        loadStored(tenant, dir);
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            LOG.info("adapter store: {} adapters of {} tenants", byTenant.values().stream().mapToInt(Map::size).sum(), byTenant.size());
        }
    }

    private void loadStored(String tenant, Path dir) {
        String name = dir.getFileName().toString();
        if (!Files.isDirectory(dir) || !validName(name)) {
            LOG.warn("skipping {}/{} in the adapter store: not an adapter directory", tenant, name);
            return;
        }
        if (name.equals(baseModelId)) { // uploaded under another --model-id; it stays on disk
            LOG.warn("skipping stored adapter {}/{}: {}", tenant, name, baseModelIdTaken(name));
            return;
        }
        try {
            AdapterSummary s = PeftAdapterReader.inspect(dir.resolve(PeftAdapterReader.CONFIG_FILE),
                dir.resolve(PeftAdapterReader.WEIGHTS_FILE), base, maxRank);
            JsonNode meta = metaOf(dir);
            long created = createdOf(dir, meta);
            String sha = meta.path("sha256").isTextual() ? meta.get("sha256").asText() : digest(
                dir.resolve(PeftAdapterReader.CONFIG_FILE), dir.resolve(PeftAdapterReader.WEIGHTS_FILE)); // stored before digests
            byTenant.computeIfAbsent(tenant, t -> new ConcurrentSkipListMap<>())
                .put(name, info(AdapterKey.of(tenant, name), tenant, name, s, created, dir, sha));
        } catch (AdapterValidationException | UncheckedIOException e) {
            LOG.warn("skipping stored adapter {}/{}: {}", tenant, name, e.getMessage());
        }
    }

    private static JsonNode metaOf(Path dir) {
        try {
            JsonNode meta = JSON.readTree(dir.resolve(META_FILE).toFile());
            return meta != null ? meta : JSON.createObjectNode();
        } catch (IOException e) {
            LOG.warn("adapter {}: unreadable {} ({})", dir.getFileName(), META_FILE, e.getMessage());
            return JSON.createObjectNode();
        }
    }

    private static long createdOf(Path dir, JsonNode meta) {
        if (meta.path("created").canConvertToLong()) {
            return meta.get("created").asLong();
        }
        LOG.warn("adapter {}: no created time in {}; using the directory's time", dir.getFileName(), META_FILE);
        try {
            return Files.getLastModifiedTime(dir).toInstant().getEpochSecond();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * The digest that identifies an adapter's content: the SHA-256, in hex, of the text
     * {@code "adapter_config.json SHA\nadapter_model.safetensors SHA\n"} where each SHA is the
     * hex SHA-256 of that file. Two uploads of the same bytes have the same digest.
     */
    public static String digest(Path configFile, Path tensorsFile) {
        try {
            String both = PeftAdapterReader.CONFIG_FILE + " " + DurableFiles.sha256(configFile) + "\n"
                + PeftAdapterReader.WEIGHTS_FILE + " " + DurableFiles.sha256(tensorsFile) + "\n";
            return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                .digest(both.getBytes(java.nio.charset.StandardCharsets.US_ASCII)));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every Java platform", e);
        }
    }

    /**
     * Validates and stores tenant {@code tenant}'s upload as adapter {@code name}.
     *
     * @throws AdapterValidationException the name or the adapter is invalid (nothing is kept)
     * @throws AdapterConflictException the tenant already has {@code name}, a system adapter has it, or it is the base model's id
     * @throws UncheckedIOException the data directory cannot be written
     */
    public AdapterInfo register(String tenant, String name, Path configFile, Path tensorsFile) {
        return register(tenant, name, configFile, tensorsFile, 0);
    }

    /**
     * {@link #register(String, String, Path, Path)} for a tenant that may own at most
     * {@code maxAdapters} adapters (0: no limit). The count is checked under the same lock that
     * commits the upload, so of concurrent uploads past the quota none gets in: count() followed
     * by register() could not promise that. A name conflict is reported before the quota.
     *
     * @throws AdapterQuotaException the tenant already owns {@code maxAdapters} adapters (nothing is kept)
     */
    @Override
    public AdapterInfo register(String tenant, String name, Path configFile, Path tensorsFile, int maxAdapters) {
        return commit(tenant, name, configFile, tensorsFile, maxAdapters, -1, null);
    }

    /**
     * Registers a copy of an adapter another node of the cluster holds: validated as an upload is,
     * with the original's {@code created} time, and only when its content has digest
     * {@code sha256}. Registering a copy of what is already here (the same digest) returns what is
     * here, so two nodes that both push or pull a copy do no harm.
     *
     * @throws AdapterValidationException the copy is invalid, or its digest is not {@code sha256} (nothing is kept)
     * @throws AdapterConflictException this node holds another adapter under that name (delete it first)
     */
    public AdapterInfo registerCopy(String tenant, String name, Path configFile, Path tensorsFile, long created, String sha256) {
        Objects.requireNonNull(sha256, "sha256");
        AdapterInfo here = get(AdapterKey.of(tenant, name)).orElse(null);
        if (here != null && sha256.equals(here.sha256())) {
            return here;
        }
        try {
            return commit(tenant, name, configFile, tensorsFile, 0, created, sha256);
        } catch (AdapterConflictException e) {
            here = get(AdapterKey.of(tenant, name)).orElse(null);
            if (here != null && sha256.equals(here.sha256())) { // the same copy arrived meanwhile
                return here;
            }
            throw e;
        }
    }

    /**
     * Refuses a name no upload may take: an invalid one (400), the base model's id or a system
     * adapter's name (409); the cluster checks this before it reserves the name.
     */
    public void checkUploadName(String name) {
        requireName(name);
        if (name.equals(baseModelId)) {
            throw new AdapterConflictException(baseModelIdTaken(name));
        }
        if (system.containsKey(name)) {
            throw new AdapterConflictException(systemNameTaken(name));
        }
    }

    /** Every tenant's own adapters held here (no system adapters), by tenant then name. */
    public List<AdapterInfo> uploaded() {
        List<AdapterInfo> out = new ArrayList<>();
        new java.util.TreeMap<>(byTenant).values().forEach(own -> out.addAll(own.values()));
        return out;
    }

    /**
     * The upload path and the copy path: {@code created} below 0 stamps the clock's time;
     * {@code expectedSha256} null takes any content.
     */
    private AdapterInfo commit(String tenant, String name, Path configFile, Path tensorsFile, int maxAdapters, long createdAt,
                               String expectedSha256) {
        requireTenant(tenant);
        requireName(name);
        checkFree(tenant, name); // fail fast; decided again under the lock
        checkQuota(tenant, maxAdapters);
        Path work = tmpDir.resolve(UUID.randomUUID().toString());
        boolean committed = false;
        try {
            Files.createDirectories(work);
            Path config = work.resolve(PeftAdapterReader.CONFIG_FILE);
            Path weights = work.resolve(PeftAdapterReader.WEIGHTS_FILE);
            DurableFiles.copy(configFile, config);
            DurableFiles.copy(tensorsFile, weights);
            AdapterSummary s = PeftAdapterReader.validate(config, weights, base, maxRank);
            String sha = digest(config, weights);
            if (expectedSha256 != null && !expectedSha256.equals(sha)) {
                throw new AdapterValidationException("the copy of adapter " + tenant + "/" + name + " has digest " + sha
                    + ", not the expected " + expectedSha256 + ": it was changed or cut short on its way");
            }
            long created = createdAt >= 0 ? createdAt : clock.instant().getEpochSecond();
            DurableFiles.write(work.resolve(META_FILE), metadata(tenant, name, s, created, sha));
            DurableFiles.syncDirectory(work);
            synchronized (lock) {
                checkFree(tenant, name);
                checkQuota(tenant, maxAdapters);
                Path tenantDir = adaptersDir.resolve(tenant);
                Path target = tenantDir.resolve(name);
                if (Files.exists(target)) {
                    throw new AdapterConflictException("adapter '" + name + "' already exists on disk but could not be"
                        + " loaded at start (see the server log); delete it there or choose another name");
                }
                if (!Files.isDirectory(tenantDir)) {
                    Files.createDirectories(tenantDir);
                    DurableFiles.syncDirectory(adaptersDir);
                }
                Files.move(work, target, StandardCopyOption.ATOMIC_MOVE);
                committed = true;
                DurableFiles.syncDirectory(tenantDir);
                AdapterInfo info = info(AdapterKey.of(tenant, name), tenant, name, s, created, target, sha);
                byTenant.computeIfAbsent(tenant, t -> new ConcurrentSkipListMap<>()).put(name, info);
                return info;
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } finally {
            if (!committed) {
                removeQuietly(work);
                removeTenantDirIfEmpty(tenant);
            }
        }
    }

    /**
     * Registers a {@code --lora-modules NAME=DIR} adapter: validated in place (values included),
     * not copied into the data directory, visible to every tenant, owned by {@code "system"}.
     *
     * @throws AdapterConflictException the name is taken by another system adapter or is the base model's id
     */
    public AdapterInfo registerSystem(String name, Path peftDir) {
        requireName(name);
        if (name.equals(baseModelId)) {
            throw new AdapterConflictException(baseModelIdTaken(name));
        }
        AdapterSummary s = PeftAdapterReader.validateDirectory(peftDir, base, maxRank);
        synchronized (lock) {
            if (system.containsKey(name)) {
                throw new AdapterConflictException("system adapter '" + name + "' is already registered");
            }
            AdapterInfo info = info(AdapterKey.system(name), AdapterKey.SYSTEM_OWNER, name, s,
                clock.instant().getEpochSecond(), peftDir, null);
            system.put(name, info);
            byTenant.forEach((tenant, own) -> {
                if (own.containsKey(name)) {
                    LOG.warn("tenant {} has its own adapter '{}', which hides the system adapter of that name for it", tenant, name);
                }
            });
            return info;
        }
    }

    /**
     * Removes the system adapter {@code name} ({@code POST /v1/unload_lora_adapter}): new requests no
     * longer find it; its files are left where they are (the caller owns them). Empty when there is none.
     */
    public Optional<AdapterInfo> unregisterSystem(String name) {
        synchronized (lock) {
            return Optional.ofNullable(system.remove(name));
        }
    }

    /** The tenant's own adapter {@code name}, else the system adapter of that name. */
    @Override
    public Optional<AdapterInfo> find(String tenant, String name) {
        NavigableMap<String, AdapterInfo> own = byTenant.get(tenant);
        AdapterInfo info = own == null ? null : own.get(name);
        return Optional.ofNullable(info != null ? info : system.get(name));
    }

    /** The adapter registered under {@code key}, if it still is (for caches keyed by {@link AdapterKey}). */
    public Optional<AdapterInfo> get(AdapterKey key) {
        if (key.system()) {
            return Optional.ofNullable(system.get(key.name()));
        }
        NavigableMap<String, AdapterInfo> own = byTenant.get(key.tenant());
        return Optional.ofNullable(own == null ? null : own.get(key.name()));
    }

    /** What {@code tenant} may use: the system adapters and its own, sorted by name (its own first on a tie). */
    @Override
    public List<AdapterInfo> list(String tenant) {
        NavigableMap<String, AdapterInfo> own = byTenant.getOrDefault(tenant, new ConcurrentSkipListMap<>());
        List<AdapterInfo> out = new ArrayList<>(own.values());
        for (AdapterInfo s : system.values()) {
            if (!own.containsKey(s.name())) {
                out.add(s);
            }
        }
        out.sort(Comparator.comparing(AdapterInfo::name));
        return out;
    }

    /** How many adapters {@code tenant} has uploaded (system adapters not counted). */
    @Override
    public int count(String tenant) {
        NavigableMap<String, AdapterInfo> own = byTenant.get(tenant);
        return own == null ? 0 : own.size();
    }

    /**
     * Removes the tenant's own adapter {@code name}: false when it has none (a system adapter of that
     * name cannot be removed by a tenant). The directory disappears atomically, then is deleted.
     */
    @Override
    public boolean delete(String tenant, String name) {
        Path doomed = tmpDir.resolve(UUID.randomUUID() + "-deleted");
        synchronized (lock) {
            NavigableMap<String, AdapterInfo> own = byTenant.get(tenant);
            AdapterInfo info = own == null ? null : own.get(name);
            if (info == null) {
                return false;
            }
            try {
                Files.createDirectories(tmpDir);
                Files.move(info.directory(), doomed, StandardCopyOption.ATOMIC_MOVE);
            } catch (NoSuchFileException e) {
                LOG.warn("adapter {} was already gone from disk", info.key());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            own.remove(name);
            DurableFiles.syncDirectory(info.directory().getParent());
            removeTenantDirIfEmpty(tenant);
        }
        removeQuietly(doomed);
        return true;
    }

    /** Reads {@code info}'s weights from disk into host memory, with full validation. */
    public LoraAdapter loadWeights(AdapterInfo info) {
        return PeftAdapterReader.readDirectory(info.name(), info.directory(), base, maxRank);
    }

    private void checkFree(String tenant, String name) {
        if (name.equals(baseModelId)) {
            throw new AdapterConflictException(baseModelIdTaken(name));
        }
        if (system.containsKey(name)) {
            throw new AdapterConflictException(systemNameTaken(name));
        }
        NavigableMap<String, AdapterInfo> own = byTenant.get(tenant);
        if (own != null && own.containsKey(name)) {
            throw new AdapterConflictException("adapter '" + name + "' already exists");
        }
    }

    private static String systemNameTaken(String name) {
        return "adapter name '" + name + "' is taken by a system adapter (--lora-modules)";
    }

    private static String baseModelIdTaken(String name) {
        return "adapter name '" + name + "' is the base model's id: a request naming it runs the base model, so the adapter"
            + " could never be used; choose another name";
    }

    private void checkQuota(String tenant, int maxAdapters) {
        int owned = count(tenant);
        if (maxAdapters > 0 && owned >= maxAdapters) {
            throw new AdapterQuotaException("tenant " + tenant + " already has " + owned + " adapters, its max_adapters is "
                + maxAdapters + "; delete one before uploading another", maxAdapters);
        }
    }

    /**
     * A new empty directory under {@code tmp/} for receiving an upload before it is registered;
     * the caller removes it with {@link #discardStaging} (or {@link #load()} does, after a crash).
     */
    @Override
    public Path newStagingDirectory() {
        try {
            Files.createDirectories(tmpDir);
            return Files.createDirectory(tmpDir.resolve(UUID.randomUUID() + "-upload"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Removes a directory from {@link #newStagingDirectory} and everything in it; failures are logged. */
    @Override
    public void discardStaging(Path staging) {
        if (!staging.getParent().equals(tmpDir)) {
            throw new IllegalArgumentException("not a staging directory of this registry: " + staging.getFileName());
        }
        removeQuietly(staging);
    }

    private static void requireName(String name) {
        if (!validName(name)) {
            throw new AdapterValidationException("invalid adapter name '" + name + "': use 1 to 64 characters from"
                + " A-Z a-z 0-9 . _ -, starting with a letter or digit");
        }
    }

    private static void requireTenant(String tenant) {
        if (!validName(tenant)) {
            throw new IllegalArgumentException("invalid tenant id '" + tenant + "': it must match " + NAME.pattern());
        }
    }

    private static AdapterInfo info(AdapterKey key, String tenant, String name, AdapterSummary s, long created, Path dir,
                                    String sha256) {
        return new AdapterInfo(key, tenant, name, s.rank(), s.alpha(), s.targetNames(), s.storedBytes(), created, dir, sha256);
    }

    private static String metadata(String tenant, String name, AdapterSummary s, long created, String sha256) throws IOException {
        ObjectNode m = JSON.createObjectNode();
        m.put("tenant", tenant);
        m.put("name", name);
        m.put("created", created);
        m.put("sha256", sha256);
        m.put("rank", s.rank());
        m.put("alpha", s.alpha());
        s.targetNames().forEach(m.putArray("target_modules")::add);
        m.put("bytes", s.storedBytes());
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(m);
    }

    private void removeTenantDirIfEmpty(String tenant) {
        synchronized (lock) {
            NavigableMap<String, AdapterInfo> own = byTenant.get(tenant);
            if (own != null && !own.isEmpty()) {
                return;
            }
            try {
                Files.deleteIfExists(adaptersDir.resolve(tenant));
            } catch (DirectoryNotEmptyException e) {
                // holds adapters that did not load, or someone else's files: leave it
            } catch (IOException e) {
                LOG.warn("could not remove empty tenant directory {}: {}", tenant, e.toString());
            }
        }
    }

    private static void removeQuietly(Path p) {
        try {
            DurableFiles.deleteTree(p);
        } catch (IOException e) {
            LOG.warn("could not remove {} (load() removes it at the next start): {}", p.getFileName(), e.toString());
        }
    }

    private static List<Path> sortedChildren(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.sorted().toList();
        }
    }
}
