package dev.loragateway.adapters;

import static dev.loragateway.adapters.PeftFixture.SHAPE;
import static dev.loragateway.adapters.Refusals.assertRefused;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Per-tenant registration, conflicts, atomic storage and restart of {@link AdapterRegistry}. */
class AdapterRegistryTest {
    private static final Clock CLOCK = Clock.fixed(Instant.ofEpochSecond(1_700_000_000L), ZoneOffset.UTC);
    /** The base model's id: the one name no adapter may take. */
    private static final String BASE_ID = "base-model";

    @TempDir
    Path tmp;
    Path data;
    Path uploads;
    AdapterRegistry registry;

    @BeforeEach
    void setUp() {
        data = tmp.resolve("data");
        uploads = tmp.resolve("uploads");
        registry = new AdapterRegistry(data, SHAPE, BASE_ID, 64, CLOCK);
        registry.load();
    }

    /** Writes an upload (the two files a multipart POST carries) and returns its folder. */
    private Path upload(String label, PeftFixture f) {
        return f.write(uploads.resolve(label));
    }

    private AdapterInfo register(String tenant, String name, Path upload) {
        return registry.register(tenant, name, PeftFixture.configFile(upload), PeftFixture.weightsFile(upload));
    }

    private static List<Path> filesUnder(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(p -> !p.equals(dir)).toList();
        }
    }

    @Test
    void registerFindListDeletePerTenant() throws IOException {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj", "v_proj");
        AdapterInfo info = register("acme", "support-bot", upload("u", f));
        assertEquals(AdapterKey.of("acme", "support-bot"), info.key());
        assertEquals("acme", info.tenant());
        assertEquals("support-bot", info.name());
        assertEquals(8, info.rank());
        assertEquals(16.0, info.alpha());
        assertEquals(List.of("q_proj", "v_proj"), info.targets());
        assertEquals(f.storedBytes(), info.bytes());
        assertEquals(1_700_000_000L, info.created());
        assertFalse(info.system());
        assertEquals(data.resolve("adapters/acme/support-bot"), info.directory());
        assertTrue(Files.isRegularFile(info.directory().resolve("adapter.json")));
        assertEquals(Files.readString(PeftFixture.configFile(uploads.resolve("u"))),
            Files.readString(info.directory().resolve("adapter_config.json")));

        assertEquals(Optional.of(info), registry.find("acme", "support-bot"));
        assertEquals(Optional.empty(), registry.find("globex", "support-bot"));
        assertEquals(List.of(info), registry.list("acme"));
        assertEquals(List.of(), registry.list("globex"));
        assertEquals(1, registry.count("acme"));

        LoraAdapter a = registry.loadWeights(info);
        assertArrayEquals(f.values(f.key(2, LoraModule.V_PROJ, 'B')), a.part(2, LoraModule.V_PROJ).b());

        assertFalse(registry.delete("globex", "support-bot"));
        assertTrue(registry.delete("acme", "support-bot"));
        assertFalse(registry.delete("acme", "support-bot"));
        assertEquals(Optional.empty(), registry.find("acme", "support-bot"));
        assertEquals(0, registry.count("acme"));
        assertEquals(List.of(), filesUnder(data.resolve("adapters")));
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
    }

    @Test
    void sameNameInTwoTenantsIsTwoAdapters() {
        AdapterInfo a = register("acme", "support-bot", upload("a", PeftFixture.adapter(8, 16, "q_proj")));
        AdapterInfo b = register("globex", "support-bot", upload("b", PeftFixture.adapter(4, 4, "k_proj")));
        assertNotEquals(a.key(), b.key());
        assertNotEquals(a.key().hashCode(), b.key().hashCode());
        assertNotEquals(a.directory(), b.directory());
        assertEquals(8, registry.find("acme", "support-bot").orElseThrow().rank());
        assertEquals(4, registry.find("globex", "support-bot").orElseThrow().rank());
        assertEquals(Optional.of(a), registry.get(a.key()));
        assertEquals(Optional.of(b), registry.get(b.key()));
        assertTrue(registry.delete("acme", "support-bot"));
        assertEquals(Optional.empty(), registry.get(a.key()));
        assertEquals(Optional.of(b), registry.find("globex", "support-bot"));
    }

    @Test
    void duplicateNameIsAConflictAndLeavesNothingBehind() throws IOException {
        Path u = upload("u", PeftFixture.adapter(8, 16, "q_proj"));
        register("acme", "bot", u);
        AdapterConflictException e = assertThrows(AdapterConflictException.class, () -> register("acme", "bot", u));
        assertTrue(e.getMessage().contains("'bot' already exists"), e.getMessage());
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        assertEquals(1, registry.count("acme"));
    }

    @Test
    void systemAdaptersAreSharedAndTheirNamesTaken() {
        Path dir = PeftFixture.adapter(8, 16, "o_proj").write(tmp.resolve("modules/shared"));
        AdapterInfo sys = registry.registerSystem("shared", dir);
        assertTrue(sys.system());
        assertEquals("system", sys.tenant());
        assertEquals(dir, sys.directory());
        assertEquals(Optional.of(sys), registry.find("acme", "shared"));
        assertEquals(Optional.of(sys), registry.find("globex", "shared"));
        assertEquals(Optional.of(sys), registry.get(AdapterKey.system("shared")));
        assertEquals(Optional.empty(), registry.get(AdapterKey.of("system", "shared")));

        AdapterConflictException e = assertThrows(AdapterConflictException.class,
            () -> register("acme", "shared", upload("u", PeftFixture.adapter(4, 4, "q_proj"))));
        assertTrue(e.getMessage().contains("system adapter"), e.getMessage());
        assertThrows(AdapterConflictException.class, () -> registry.registerSystem("shared", dir));
        assertFalse(registry.delete("acme", "shared"));
        assertEquals(Optional.of(sys), registry.find("acme", "shared"));

        AdapterInfo own = register("acme", "alpha", upload("v", PeftFixture.adapter(4, 4, "q_proj")));
        AdapterInfo later = register("acme", "zeta", upload("w", PeftFixture.adapter(4, 4, "q_proj")));
        assertEquals(List.of(own, sys, later), registry.list("acme"));
        assertEquals(List.of(sys), registry.list("globex"));
        assertEquals(2, registry.count("acme"));
        assertFalse(Files.exists(data.resolve("adapters/system")));
    }

    /** Issue 12 item 8: an adapter named like the base model was accepted, unreachable, and listed twice. */
    @Test
    void adapterNamedLikeTheBaseModelIsAConflictForUploadsAndSystemAdapters() throws IOException {
        Path u = upload("u", PeftFixture.adapter(8, 16, "q_proj"));
        AdapterConflictException e = assertThrows(AdapterConflictException.class, () -> register("acme", BASE_ID, u));
        assertTrue(e.getMessage().contains("'" + BASE_ID + "' is the base model's id"), e.getMessage());
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        assertEquals(List.of(), filesUnder(data.resolve("adapters")));
        assertEquals(0, registry.count("acme"));
        Path dir = PeftFixture.adapter(8, 16, "o_proj").write(tmp.resolve("modules/base"));
        e = assertThrows(AdapterConflictException.class, () -> registry.registerSystem(BASE_ID, dir));
        assertTrue(e.getMessage().contains("base model's id"), e.getMessage());
        assertEquals(List.of(), registry.list("acme"));
        assertEquals(Optional.empty(), registry.find("acme", BASE_ID));
        // a name is the exact string, as a request's model is matched: another case is another name
        assertEquals("Base-Model", register("acme", "Base-Model", u).name());
        assertEquals(BASE_ID, registry.baseModelId());
    }

    @Test
    void storedAdapterNamedLikeANewBaseModelIdIsSkippedAtStartAndKeptOnDisk() {
        register("acme", "llama-3", upload("u", PeftFixture.adapter(8, 16, "q_proj")));
        register("acme", "other", upload("v", PeftFixture.adapter(8, 16, "q_proj")));
        AdapterRegistry renamed = new AdapterRegistry(data, SHAPE, "llama-3", 64, CLOCK); // served again under --model-id llama-3
        renamed.load();
        assertEquals(Optional.empty(), renamed.find("acme", "llama-3"));
        assertEquals(List.of("other"), renamed.list("acme").stream().map(AdapterInfo::name).toList());
        assertTrue(Files.isDirectory(data.resolve("adapters/acme/llama-3")), "the files stay for the operator");
    }

    @Test
    void aTenantCalledSystemDoesNotCollideWithSystemAdapters() {
        registry.registerSystem("x", PeftFixture.adapter(8, 16, "q_proj").write(tmp.resolve("modules/x")));
        AdapterInfo own = register("system", "y", upload("u", PeftFixture.adapter(8, 16, "q_proj")));
        assertNotEquals(AdapterKey.system("y"), own.key());
        assertEquals(AdapterKey.of("system", "y"), own.key());
    }

    @ParameterizedTest
    @ValueSource(strings = {"a/b", "..", ".hidden", "-x", "", "a b", "ü",
        "a12345678901234567890123456789012345678901234567890123456789012345"})
    void invalidNamesAreRefused(String name) throws IOException {
        Path u = upload("u", PeftFixture.adapter(8, 16, "q_proj"));
        assertRefused(() -> register("acme", name, u), "invalid adapter name");
        assertEquals(List.of(), filesUnder(data.resolve("adapters")));
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
    }

    @Test
    void sixtyFourCharactersAreFine() {
        String name = "a" + "b".repeat(63);
        assertEquals(name, register("acme", name, upload("u", PeftFixture.adapter(8, 16, "q_proj"))).name());
        assertThrows(IllegalArgumentException.class,
            () -> register("../etc", "x", upload("v", PeftFixture.adapter(8, 16, "q_proj"))));
    }

    @Test
    void failedValidationLeavesNothingBehind() throws IOException {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.values(f.key(0, LoraModule.Q_PROJ, 'A'))[3] = Float.NaN;
        Path u = upload("u", f);
        assertRefused(() -> register("acme", "bot", u), "is NaN");
        PeftFixture g = PeftFixture.adapter(8, 16, "q_proj").put(f.key(1, LoraModule.Q_PROJ, 'B'), 41, 8);
        Path v = upload("v", g);
        assertRefused(() -> register("acme", "bot", v), "has shape [41, 8]");
        Files.write(PeftFixture.weightsFile(v), new byte[] {1, 2, 3});
        assertRefused(() -> register("acme", "bot", v), "invalid adapter_model.safetensors");
        assertEquals(List.of(), filesUnder(data.resolve("adapters")));
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        assertEquals(Optional.empty(), registry.find("acme", "bot"));
    }

    @Test
    void restartSeesTheSameAdapters() {
        AdapterInfo a = register("acme", "bot", upload("a", PeftFixture.adapter(8, 16, "q_proj", "down_proj")));
        AdapterInfo b = register("globex", "bot", upload("b", PeftFixture.adapter(4, 2, "up_proj")));
        AdapterInfo c = register("globex", "helper", upload("c", PeftFixture.adapter(2, 2, "k_proj")));
        registry.delete("globex", "helper");

        AdapterRegistry again = new AdapterRegistry(data, SHAPE, BASE_ID, 64, Clock.offset(CLOCK, java.time.Duration.ofDays(1)));
        again.load();
        assertEquals(List.of(a), again.list("acme"));
        assertEquals(List.of(b), again.list("globex"));
        assertEquals(Optional.empty(), again.find("globex", c.name()));
        assertArrayEquals(registry.loadWeights(a).part(1, LoraModule.DOWN_PROJ).a(),
            again.loadWeights(again.find("acme", "bot").orElseThrow()).part(1, LoraModule.DOWN_PROJ).a());
    }

    @Test
    void aDigestIdentifiesTheContentAndACopyIsKeptOnlyWithTheExpectedOne() throws IOException {
        Path up = upload("a", PeftFixture.adapter(8, 16, "q_proj"));
        AdapterInfo a = register("acme", "bot", up);
        assertEquals(AdapterRegistry.digest(PeftFixture.configFile(up), PeftFixture.weightsFile(up)), a.sha256());
        assertEquals(64, a.sha256().length());
        AdapterInfo other = register("acme", "other", upload("b", PeftFixture.adapter(4, 16, "q_proj")));
        assertNotEquals(a.sha256(), other.sha256());

        // a copy on another node: same content, the original's created time; a wrong digest keeps nothing
        AdapterRegistry node2 = new AdapterRegistry(tmp.resolve("data2"), SHAPE, BASE_ID, 64, Clock.offset(CLOCK, java.time.Duration.ofDays(1)));
        node2.load();
        AdapterValidationException bad = assertThrows(AdapterValidationException.class, () -> node2.registerCopy("acme", "bot",
            PeftFixture.configFile(up), PeftFixture.weightsFile(up), a.created(), other.sha256()));
        assertTrue(bad.getMessage().contains("not the expected " + other.sha256()), bad.getMessage());
        assertEquals(List.of(), filesUnder(tmp.resolve("data2/adapters")));
        AdapterInfo copy = node2.registerCopy("acme", "bot", PeftFixture.configFile(up), PeftFixture.weightsFile(up), a.created(), a.sha256());
        assertEquals(a.created(), copy.created());
        assertEquals(a.sha256(), copy.sha256());
        assertEquals(copy, node2.registerCopy("acme", "bot", PeftFixture.configFile(up), PeftFixture.weightsFile(up), 1, a.sha256()),
            "the same copy twice is one copy");
        assertThrows(AdapterConflictException.class, () -> node2.registerCopy("acme", "bot", PeftFixture.configFile(up),
            PeftFixture.weightsFile(up), 1, other.sha256()));

        // the digest survives a restart, and is computed for an adapter stored before digests were kept
        Path meta = data.resolve("adapters/acme/bot/adapter.json");
        Files.writeString(meta, Files.readString(meta).replaceAll("\\s*\"sha256\"\\s*:\\s*\"[0-9a-f]+\",?", ""));
        assertFalse(Files.readString(meta).contains("sha256"));
        AdapterRegistry again = new AdapterRegistry(data, SHAPE, BASE_ID, 64, CLOCK);
        again.load();
        assertEquals(a.sha256(), again.find("acme", "bot").orElseThrow().sha256());
        assertEquals(other.sha256(), again.find("acme", "other").orElseThrow().sha256());
        assertEquals(List.of("bot", "other"), again.uploaded().stream().map(AdapterInfo::name).toList());
    }

    @Test
    void loadRemovesLeftoversAndSkipsInvalidStoredAdapters() throws IOException {
        register("acme", "small", upload("a", PeftFixture.adapter(8, 16, "q_proj")));
        register("acme", "large", upload("b", PeftFixture.adapter(32, 16, "q_proj")));
        Files.createDirectories(data.resolve("tmp/crashed-upload"));
        Files.writeString(data.resolve("tmp/crashed-upload/adapter_model.safetensors"), "half");
        Files.writeString(data.resolve("tmp/stray"), "x");
        Files.createDirectories(data.resolve("adapters/acme/not a name"));

        AdapterRegistry smaller = new AdapterRegistry(data, SHAPE, BASE_ID, 16, CLOCK); // large no longer fits
        smaller.load();
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        assertEquals(List.of("small"), smaller.list("acme").stream().map(AdapterInfo::name).toList());
        assertTrue(Files.isDirectory(data.resolve("adapters/acme/large")), "skipped, not deleted");
        AdapterConflictException e = assertThrows(AdapterConflictException.class,
            () -> smaller.register("acme", "large", PeftFixture.configFile(uploads.resolve("a")),
                PeftFixture.weightsFile(uploads.resolve("a"))));
        assertTrue(e.getMessage().contains("could not be loaded at start"), e.getMessage());
    }

    @Test
    void concurrentRegistrationsOfOneNameHaveExactlyOneWinner() throws Exception {
        int n = 8;
        List<Path> ups = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            ups.add(upload("u" + i, PeftFixture.adapter(1 + i, 4, "q_proj", "gate_proj")));
        }
        CountDownLatch start = new CountDownLatch(1);
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            List<Future<AdapterInfo>> results = new ArrayList<>();
            for (Path u : ups) {
                Callable<AdapterInfo> task = () -> {
                    start.await();
                    return register("acme", "race", u);
                };
                results.add(pool.submit(task));
            }
            start.countDown();
            int won = 0;
            int conflicts = 0;
            AdapterInfo winner = null;
            for (Future<AdapterInfo> r : results) {
                try {
                    winner = r.get();
                    won++;
                } catch (ExecutionException e) {
                    assertTrue(e.getCause() instanceof AdapterConflictException, e.getCause().toString());
                    conflicts++;
                }
            }
            assertEquals(1, won);
            assertEquals(n - 1, conflicts);
            assertEquals(Optional.of(winner), registry.find("acme", "race"));
            assertEquals(winner.rank(), registry.loadWeights(winner).rank());
            assertEquals(List.of(data.resolve("adapters/acme/race")), Files.list(data.resolve("adapters/acme")).toList());
            assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void quotaRefusesTheUploadPastMaxAdaptersAndLeavesNothingBehind() throws IOException {
        Path u = upload("u", PeftFixture.adapter(8, 16, "q_proj"));
        registry.register("acme", "one", PeftFixture.configFile(u), PeftFixture.weightsFile(u), 2);
        registry.register("acme", "two", PeftFixture.configFile(u), PeftFixture.weightsFile(u), 2);
        AdapterQuotaException e = assertThrows(AdapterQuotaException.class,
            () -> registry.register("acme", "three", PeftFixture.configFile(u), PeftFixture.weightsFile(u), 2));
        assertTrue(e.getMessage().contains("already has 2 adapters, its max_adapters is 2"), e.getMessage());
        assertEquals(2, e.limit());
        AdapterConflictException dup = assertThrows(AdapterConflictException.class,
            () -> registry.register("acme", "two", PeftFixture.configFile(u), PeftFixture.weightsFile(u), 2));
        assertTrue(dup.getMessage().contains("'two' already exists"), "a taken name is a conflict before a quota: " + dup.getMessage());
        assertEquals("globex", registry.register("globex", "three", PeftFixture.configFile(u), PeftFixture.weightsFile(u), 2).tenant());
        assertTrue(registry.delete("acme", "one"));
        registry.register("acme", "three", PeftFixture.configFile(u), PeftFixture.weightsFile(u), 2);
        assertEquals(2, registry.count("acme"));
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
    }

    @Test
    void concurrentRegistrationsNeverExceedTheQuota() throws Exception {
        int n = 8;
        int quota = 3;
        Path u = upload("u", PeftFixture.adapter(4, 8, "q_proj", "down_proj"));
        CountDownLatch start = new CountDownLatch(1);
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            List<Future<AdapterInfo>> results = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                String name = "bot-" + i;
                results.add(pool.submit(() -> {
                    start.await();
                    return registry.register("acme", name, PeftFixture.configFile(u), PeftFixture.weightsFile(u), quota);
                }));
            }
            start.countDown();
            int won = 0;
            for (Future<AdapterInfo> r : results) {
                try {
                    r.get();
                    won++;
                } catch (ExecutionException e) {
                    assertTrue(e.getCause() instanceof AdapterQuotaException, e.getCause().toString());
                }
            }
            assertEquals(quota, won);
            assertEquals(quota, registry.count("acme"));
            try (Stream<Path> dirs = Files.list(data.resolve("adapters/acme"))) {
                assertEquals(quota, dirs.count());
            }
            assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void stagingDirectoriesLiveUnderTmpAndAreDiscarded() throws IOException {
        Path s = registry.newStagingDirectory();
        assertEquals(data.resolve("tmp"), s.getParent());
        Files.writeString(s.resolve("part"), "x");
        registry.discardStaging(s);
        assertEquals(List.of(), filesUnder(data.resolve("tmp")));
        assertThrows(IllegalArgumentException.class, () -> registry.discardStaging(tmp.resolve("elsewhere")));
        Path left = registry.newStagingDirectory();
        Files.writeString(left.resolve("part"), "half an upload");
        new AdapterRegistry(data, SHAPE, BASE_ID, 64, CLOCK).load();
        assertFalse(Files.exists(left), "load() clears staging directories a crash left behind");
    }

    @Test
    void registerWorksWithoutLoadFirst() {
        AdapterRegistry fresh = new AdapterRegistry(tmp.resolve("fresh"), SHAPE, BASE_ID, 64, CLOCK);
        Path u = upload("u", PeftFixture.adapter(8, 16, "q_proj"));
        AdapterInfo info = fresh.register("acme", "bot", PeftFixture.configFile(u), PeftFixture.weightsFile(u));
        assertEquals(Optional.of(info), fresh.find("acme", "bot"));
    }
}
