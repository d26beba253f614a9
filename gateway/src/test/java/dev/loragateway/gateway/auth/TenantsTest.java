package dev.loragateway.gateway.auth;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@code --api-keys} file, key lookup, and the per-tenant request limits. */
class TenantsTest {
    static final String FILE = """
        { "tenants": [
            { "id": "acme",   "keys": ["sk-acme-1", "sk-acme-2"] },
            { "id": "globex", "keys": ["sk-globex-1"], "max_adapters": 100, "max_requests_per_second": 2.5,
              "max_concurrent_requests": 3 }
        ] }""";

    private static Tenants parse(String json) throws Exception {
        return Tenants.parse(new ObjectMapper().readTree(json), "keys.json");
    }

    @Test
    void keysNameTheirTenantAndNothingElseDoes(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("keys.json");
        Files.writeString(f, FILE);
        Tenants t = Tenants.load(f);
        assertTrue(t.enabled());
        assertEquals("acme", t.authenticate("Bearer sk-acme-1").orElseThrow().id());
        assertEquals("acme", t.authenticate("bearer sk-acme-2").orElseThrow().id());
        Tenants.Tenant g = t.authenticate("Bearer sk-globex-1").orElseThrow();
        assertEquals(new Tenants.Tenant("globex", 100, 2.5, 3), g);
        assertEquals(new Tenants.Tenant("acme", 0, 0, 0), t.byId("acme").orElseThrow());
        for (String bad : new String[] {null, "", "Bearer", "Bearer ", "sk-acme-1", "Basic sk-acme-1", "Bearer sk-acme-", "Bearer sk-acme-12",
            "Bearer SK-ACME-1", "Bearer sk-globex-1x"}) {
            assertTrue(t.authenticate(bad).isEmpty(), "accepted: " + bad);
        }
        // random keys of the right length and prefix never match
        Random rnd = new Random(3);
        for (int i = 0; i < 200; i++) {
            assertTrue(t.authenticate("Bearer sk-acme-" + (char) ('a' + rnd.nextInt(26))).isEmpty());
        }
    }

    @Test
    void withoutAFileEveryoneIsTheDefaultTenant() {
        Tenants t = Tenants.open();
        assertFalse(t.enabled());
        assertEquals(Tenants.DEFAULT, t.authenticate(null).orElseThrow().id());
        assertEquals(Tenants.DEFAULT, t.authenticate("Bearer whatever").orElseThrow().id());
    }

    @Test
    void badFilesAreRefusedWithTheReason(@TempDir Path dir) {
        String[][] cases = {
            {"[]", "expected {\"tenants\""},
            {"{\"tenants\": {}}", "expected {\"tenants\""},
            {"{\"tenants\": []}", "no tenants"},
            {"{\"tenants\": [{\"keys\": [\"k\"]}]}", "needs a string \"id\""},
            {"{\"tenants\": [{\"id\": \"../x\", \"keys\": [\"k\"]}]}", "tenant id '../x'"},
            {"{\"tenants\": [{\"id\": \"system\", \"keys\": [\"k\"]}]}", "'system'"},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": []}]}", "non-empty \"keys\""},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": [\"\"]}]}", "non-empty strings"},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": [\"k\"]}, {\"id\": \"a\", \"keys\": [\"j\"]}]}", "appears twice"},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": [\"k\"]}, {\"id\": \"b\", \"keys\": [\"k\"]}]}", "listed twice"},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": [\"k\"], \"max_adapters\": -1}]}", "\"max_adapters\" must be a non-negative integer"},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": [\"k\"], \"max_requests_per_second\": \"9\"}]}", "\"max_requests_per_second\""},
            {"{\"tenants\": [{\"id\": \"a\", \"keys\": [\"k\"], \"max_concurrent_requests\": 1.5}]}", "\"max_concurrent_requests\""},
        };
        for (String[] c : cases) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> parse(c[0]), c[0]);
            assertTrue(e.getMessage().contains(c[1]), c[0] + " -> " + e.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tenants.load(dir.resolve("missing.json")));
        assertTrue(e.getMessage().contains("missing.json"), e.getMessage());
    }

    /** {@link #FILE} with {@code "operator_keys": json}. */
    private static String withOperators(String json) {
        return FILE.substring(0, FILE.lastIndexOf('}')) + ", \"operator_keys\": " + json + " }";
    }

    @Test
    void operatorKeysOpenNoTenantAndAreNeverATenantsKey() throws Exception {
        Tenants t = parse(withOperators("[\"sk-ops-1\", \"sk-ops-2\"]"));
        assertTrue(t.isOperator("Bearer sk-ops-1"));
        assertTrue(t.isOperator("bearer sk-ops-2"));
        assertTrue(t.authenticate("Bearer sk-ops-1").isEmpty(), "an operator key is no tenant's key: /v1/ answers 401");
        for (String not : new String[] {null, "", "Bearer ", "sk-ops-1", "Bearer sk-ops-", "Bearer sk-acme-1"}) {
            assertFalse(t.isOperator(not), String.valueOf(not));
        }
        assertFalse(parse(FILE).isOperator("Bearer sk-ops-1"), "none without operator_keys");
        assertFalse(Tenants.open().isOperator("Bearer anything"), "auth off: no operators (every /metrics label is 'default')");
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> parse(withOperators("[\"sk-acme-1\"]"))).getMessage().contains("also a tenant's key"));
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> parse(withOperators("\"sk-ops\""))).getMessage().contains("\"operator_keys\" must be an array"));
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> parse(withOperators("[\"\"]"))).getMessage().contains("non-empty strings"));
    }

    @Test
    void requestRateIsATokenBucketOfOneSecond() {
        AtomicLong now = new AtomicLong(1_000_000_000L);
        TenantLimits limits = new TenantLimits(now::get);
        Tenants.Tenant t = new Tenants.Tenant("t", 0, 4, 0);
        for (int i = 0; i < 4; i++) {
            assertTrue(limits.takeRequest(t).isEmpty(), "request " + i + " of the first second");
        }
        TenantLimiter.Refusal r = limits.takeRequest(t).orElseThrow();
        assertTrue(r.message().contains("4 requests per second"), r.message());
        assertEquals(1, r.retryAfterSeconds());
        now.addAndGet(260_000_000L); // a quarter second and a bit: one token back
        assertTrue(limits.takeRequest(t).isEmpty());
        assertTrue(limits.takeRequest(t).isPresent());
        now.addAndGet(10_000_000_000L); // long idle: the bucket holds one second's worth, not ten
        int passed = 0;
        while (limits.takeRequest(t).isEmpty()) {
            passed++;
        }
        assertEquals(4, passed);
        // a slow tenant (one request per 10 s) is told to wait several seconds
        Tenants.Tenant slow = new Tenants.Tenant("slow", 0, 0.1, 0);
        assertTrue(limits.takeRequest(slow).isEmpty());
        assertTrue(limits.takeRequest(slow).orElseThrow().retryAfterSeconds() >= 9);
    }

    @Test
    void concurrentRequestsAreCountedUntilReleased() {
        TenantLimits limits = new TenantLimits();
        Tenants.Tenant t = new Tenants.Tenant("t", 0, 0, 2);
        assertTrue(limits.tryEnter(t).isEmpty());
        assertTrue(limits.tryEnter(t).isEmpty());
        assertTrue(limits.takeRequest(t).isEmpty(), "requests that do not count are not limited by it");
        TenantLimiter.Refusal r = limits.tryEnter(t).orElseThrow();
        assertTrue(r.message().contains("2 requests running"), r.message());
        assertEquals(2, limits.inFlight("t"));
        limits.release(t);
        assertTrue(limits.tryEnter(t).isEmpty());
        Tenants.Tenant other = new Tenants.Tenant("u", 0, 0, 1);
        assertTrue(limits.tryEnter(other).isEmpty(), "limits are per tenant");
    }

    @Test
    void aSlotIsGivenBackOnceHoweverOftenItIsReleased() {
        TenantLimits limits = new TenantLimits();
        Tenants.Tenant t = new Tenants.Tenant("t", 0, 0, 2);
        TenantLimiter.Slot first = limits.enter(t).toCompletableFuture().join();
        TenantLimiter.Slot second = limits.enter(t).toCompletableFuture().join();
        assertTrue(first.refusal().isEmpty() && second.refusal().isEmpty());
        TenantLimiter.Slot refused = limits.enter(t).toCompletableFuture().join();
        assertTrue(refused.refusal().orElseThrow().message().contains("2 requests running"));
        refused.release(); // held nothing: gives nothing back
        assertEquals(2, limits.inFlight("t"));
        first.release();
        first.release(); // a second end handler, say: still one slot
        assertEquals(1, limits.inFlight("t"));
        assertTrue(limits.enter(t).toCompletableFuture().join().refusal().isEmpty());
        assertTrue(limits.enter(t).toCompletableFuture().join().refusal().isPresent(), "the double release freed one slot, not two");
        assertTrue(limits.enter(new Tenants.Tenant("free", 0, 0, 0)).toCompletableFuture().join().refusal().isEmpty(),
            "no limit: always admitted");
        assertEquals(0, limits.inFlight("free"), "and not counted");
    }
}
