package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.http.UploadFixtures.Files2;
import dev.loragateway.gateway.http.UploadFixtures.Multipart;
import dev.loragateway.gateway.http.UploadFixtures.Peft;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code /v1/adapters} over real HTTP on the tiny demo model: uploads become usable adapters that
 * run exactly as the same files loaded with {@code --lora-modules}; bad uploads are refused with a
 * message naming the problem and leave nothing behind; tenants are isolated; quotas hold under
 * concurrency; a deleted or replaced name never runs on stale weights; a restart keeps uploads.
 */
class AdaptersHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private static final long MAX_UPLOAD = 1 << 20; // --max-adapter-mb 1
    private static final String PROMPT = "The gateway serves adapters to";

    @TempDir
    static Path dir;
    static Path data;
    static Vertx vertx;
    static Server server;
    static final List<Server> servers = new ArrayList<>();

    /** One gateway: a registry over {@code data} (reloaded), the demo adapters as system adapters, a device tier. */
    record Server(String url, Engine engine, DeviceTier<AdapterKey> device, ExecutorService loader) {
        void close() {
            engine.close();
            loader.shutdownNow();
        }
    }

    @BeforeAll
    static void start() throws Exception {
        DemoModel.write(dir, DemoModel.Options.tiny());
        data = dir.resolve("data");
        Files.writeString(dir.resolve("api-keys.json"), """
            { "tenants": [
                { "id": "acme", "keys": ["sk-acme"] },
                { "id": "globex", "keys": ["sk-globex"] },
                { "id": "initech", "keys": ["sk-initech"] },
                { "id": "refused", "keys": ["sk-refused"] },
                { "id": "small", "keys": ["sk-small"], "max_adapters": 2 },
                { "id": "racer", "keys": ["sk-racer"], "max_adapters": 3 }
            ] }""");
        vertx = Vertx.vertx();
        server = startServer();
    }

    static Server startServer() throws Exception {
        LlamaModel model = LlamaModel.load(dir);
        ModelConfig cfg = model.config();
        AdapterRegistry registry = new AdapterRegistry(data, cfg.shape(), "demo", 64);
        registry.load();
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            registry.registerSystem(s.name(), dir.resolve("adapters").resolve(s.name()));
        }
        ExecutorService loader = Executors.newSingleThreadExecutor();
        // slots to spare: nothing is evicted, so only invalidation keeps a replaced adapter's weights from being served
        DeviceTier<AdapterKey> device = AdapterTiers.of(registry, 16, Long.MAX_VALUE, 1 << 26, loader).device();
        Engine engine = new Engine(model, new CpuBackend(2), device, 16, 64);
        ApiServer api = new ApiServer(vertx, engine, TextTokenizer.load(dir), "demo", 256, registry)
            .tenants(Tenants.load(dir.resolve("api-keys.json"))).deviceTier(device).maxAdapterBytes(MAX_UPLOAD);
        Server s = new Server("http://127.0.0.1:" + api.listen("127.0.0.1", 0).await(), engine, device, loader);
        servers.add(s);
        return s;
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        servers.forEach(Server::close);
    }

    // ---- HTTP helpers ---------------------------------------------------------------------------

    static HttpRequest.Builder req(String path, String tenant) {
        return HttpRequest.newBuilder(URI.create(server.url + path)).header("Authorization", "Bearer sk-" + tenant);
    }

    static HttpResponse<String> send(HttpRequest r) throws Exception {
        return HTTP.send(r, HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> upload(String tenant, Multipart form) throws Exception {
        return send(req("/v1/adapters", tenant).header("Content-Type", form.contentType())
            .POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())).build());
    }

    static HttpResponse<String> upload(String tenant, String name, Files2 files) throws Exception {
        return upload(tenant, files.form(name));
    }

    static JsonNode created(HttpResponse<String> r) throws Exception {
        assertEquals(201, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    static HttpResponse<String> get(String tenant, String path) throws Exception {
        return send(req(path, tenant).GET().build());
    }

    static HttpResponse<String> delete(String tenant, String name) throws Exception {
        return send(req("/v1/adapters/" + name, tenant).DELETE().build());
    }

    static HttpResponse<String> completion(String tenant, String model) throws Exception {
        String body = "{\"model\":\"" + model + "\",\"prompt\":" + JSON.writeValueAsString(PROMPT)
            + ",\"max_tokens\":16,\"temperature\":0,\"logprobs\":1}";
        return send(req("/v1/completions", tenant).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build());
    }

    /** The greedy completion's text and token logprobs, as one comparable string. */
    static String output(String tenant, String model) throws Exception {
        HttpResponse<String> r = completion(tenant, model);
        assertEquals(200, r.statusCode(), model + ": " + r.body());
        JsonNode c = JSON.readTree(r.body()).get("choices").get(0);
        StringBuilder sb = new StringBuilder(c.get("text").asText()).append(" |");
        for (JsonNode lp : c.get("logprobs").get("token_logprobs")) {
            sb.append(' ').append(String.format("%.4f", lp.asDouble()));
        }
        return sb.toString();
    }

    static List<String> listed(String tenant) throws Exception {
        HttpResponse<String> r = get(tenant, "/v1/adapters");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode root = JSON.readTree(r.body());
        assertEquals("list", root.get("object").asText());
        List<String> ids = new ArrayList<>();
        root.get("data").forEach(a -> ids.add(a.get("owned_by").asText() + ":" + a.get("id").asText()));
        return ids;
    }

    /** Every path under the data directory (files and folders), relative and sorted. */
    static List<String> dataDirTree() throws IOException {
        try (Stream<Path> s = Files.walk(data)) {
            return s.map(p -> data.relativize(p).toString()).sorted().toList();
        }
    }

    /** Fails naming the paths that appeared or vanished under the data directory since {@code before}. */
    static void assertSameTree(List<String> before, String what) throws IOException {
        List<String> now = dataDirTree();
        List<String> added = now.stream().filter(p -> !before.contains(p)).toList();
        List<String> removed = before.stream().filter(p -> !now.contains(p)).toList();
        assertTrue(added.isEmpty() && removed.isEmpty(), what + ": the data directory changed: added " + added + ", removed " + removed);
    }

    static void assertError(HttpResponse<String> r, int status, String... fragments) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode err = JSON.readTree(r.body()).get("error");
        assertTrue(err != null && err.get("message").isTextual(), r.body());
        for (String f : fragments) {
            assertTrue(err.get("message").asText().contains(f), "'" + f + "' not in: " + r.body());
        }
    }

    static void assertHealthy() throws Exception {
        HttpResponse<String> h = send(HttpRequest.newBuilder(URI.create(server.url + "/health")).GET().build());
        assertEquals(200, h.statusCode(), h.body());
    }

    // ---- tests ----------------------------------------------------------------------------------

    @Test
    void uploadListUseDeleteAndUploadAgainWithNewWeights() throws Exception {
        String base = output("acme", "demo");
        Files2 r4 = UploadFixtures.demo(dir, "demo-r4");
        long before = System.currentTimeMillis() / 1000;
        JsonNode a = created(upload("acme", "mine", r4));
        assertEquals("mine", a.get("id").asText());
        assertEquals("adapter", a.get("object").asText());
        assertEquals("acme", a.get("owned_by").asText());
        assertEquals("demo", a.get("parent").asText());
        assertEquals(4, a.get("rank").asInt());
        assertEquals(8, a.get("alpha").asInt());
        assertEquals("[\"q_proj\",\"v_proj\"]", a.get("target_modules").toString());
        int[] q = DemoAdapters.outIn("q_proj", UploadFixtures.MODEL);
        int[] v = DemoAdapters.outIn("v_proj", UploadFixtures.MODEL);
        assertEquals(2L * 4 * 4 * (q[0] + q[1] + v[0] + v[1]), a.get("bytes").asLong(), "2 layers × rank 4 × (in + out) floats");
        assertTrue(a.get("created").asLong() >= before, a.toString());

        assertTrue(listed("acme").contains("acme:mine"), listed("acme").toString());
        assertTrue(listed("acme").containsAll(List.of("system:demo-r4", "system:demo-r8")), listed("acme").toString());
        HttpResponse<String> one = get("acme", "/v1/adapters/mine");
        assertEquals(200, one.statusCode(), one.body());
        assertEquals(a, JSON.readTree(one.body()));
        assertTrue(get("acme", "/v1/models").body().contains("\"id\":\"mine\""));

        String mine = output("acme", "mine");
        assertNotEquals(base, mine, "the uploaded adapter does not change the base model's output");
        assertEquals(output("acme", "demo-r4"), mine, "the upload runs differently from the same files as --lora-modules");

        HttpResponse<String> del = delete("acme", "mine");
        assertEquals(200, del.statusCode(), del.body());
        assertEquals(JSON.readTree("{\"id\":\"mine\",\"object\":\"adapter\",\"deleted\":true}"), JSON.readTree(del.body()));
        assertError(get("acme", "/v1/adapters/mine"), 404, "mine");
        assertError(completion("acme", "mine"), 404, "mine");
        assertError(delete("acme", "mine"), 404, "mine");
        assertFalse(listed("acme").contains("acme:mine"));

        created(upload("acme", "mine", UploadFixtures.demo(dir, "demo-r16")));
        String again = output("acme", "mine");
        assertNotEquals(mine, again, "stale weights: the name uploaded again still runs the deleted adapter");
        assertEquals(output("acme", "demo-r16"), again);
        assertEquals(0, server.device.totalPins(), "a pin leaked");
    }

    @Test
    void badUploadsAreRefusedNamingTheProblemAndLeaveNothingBehind() throws Exception {
        created(upload("refused", "kept", UploadFixtures.demo(dir, "demo-r8"))); // a committed adapter that must stay
        List<String> tree = dataDirTree();
        List<String> list = listed("refused");
        Files2 good = Peft.random(4, 8, 7, "q_proj", "down_proj").files();
        String qa = DemoAdapters.tensorName(0, "q_proj", 'A');
        String qb = DemoAdapters.tensorName(0, "q_proj", 'B');

        record Case(String what, int status, Multipart form, String... says) {
        }
        List<Case> cases = new ArrayList<>();
        cases.add(new Case("no adapter_model", 400, new Multipart().field("name", "x").file("adapter_config", "adapter_config.json",
            good.config()), "adapter_model"));
        cases.add(new Case("no adapter_config", 400, new Multipart().field("name", "x").file("adapter_model", "adapter_model.safetensors",
            good.model()), "adapter_config"));
        cases.add(new Case("no name", 400, new Multipart().file("adapter_config", "adapter_config.json", good.config())
            .file("adapter_model", "adapter_model.safetensors", good.model()), "'name'"));
        byte[] m = good.model();
        cases.add(new Case("truncated safetensors", 400, new Files2(good.config(), java.util.Arrays.copyOf(m, m.length - 100)).form("x"),
            "invalid adapter_model.safetensors", "out of range"));
        byte[] longHeader = m.clone();
        java.nio.ByteBuffer.wrap(longHeader).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(0, m.length * 2L);
        cases.add(new Case("header length past the end", 400, new Files2(good.config(), longHeader).form("x"),
            "header length " + m.length * 2L, "runs past the end"));
        cases.add(new Case("overlapping offsets", 400, Peft.random(4, 8, 7, "q_proj").edit(p -> p.headerTweak = h -> {
            long len = h.get(qb).get("data_offsets").get(1).asLong() - h.get(qb).get("data_offsets").get(0).asLong();
            h.withObject(qb).putArray("data_offsets").add(16).add(16 + len);
        }).files().form("x"), "overlap"));
        cases.add(new Case("a shape that does not fit the model", 400, Peft.random(4, 8, 7, "q_proj")
            .edit(p -> p.tensors.put(qb, UploadFixtures.gaussian(new java.util.Random(1), 0.1, 63, 4))).files().form("x"),
            qb, "has shape [63, 4]"));
        cases.add(new Case("tensor rank ≠ config r", 400, Peft.random(4, 8, 7, "q_proj").edit(p -> p.config.put("r", 8)).files().form("x"),
            "has rank 4", "r=8"));
        cases.add(new Case("a NaN", 400, Peft.random(4, 8, 7, "q_proj").edit(p -> p.tensors.get(qa).values()[5] = Float.NaN)
            .files().form("x"), qa, "element 5", "NaN"));
        cases.add(new Case("an infinity", 400, Peft.random(4, 8, 7, "q_proj").edit(p -> p.tensors.get(qb).values()[9] = Float.NEGATIVE_INFINITY)
            .files().form("x"), qb, "Infinity", "finite"));
        cases.add(new Case("an unknown target module", 400, Peft.random(4, 8, 7, "q_proj")
            .edit(p -> p.config.withArray("target_modules").add("fc9")).files().form("x"), "unknown target module fc9"));
        cases.add(new Case("lora_A without lora_B", 400, Peft.random(4, 8, 7, "q_proj").edit(p -> p.tensors.remove(qb)).files().form("x"),
            qa, "no matching lora_B"));
        cases.add(new Case("DoRA", 400, Peft.random(4, 8, 7, "q_proj").edit(p -> p.config.put("use_dora", true)).files().form("x"),
            "DoRA"));
        cases.add(new Case("rank over --max-lora-rank", 400, Peft.random(65, 65, 7, "q_proj").files().form("x"),
            "rank 65 exceeds --max-lora-rank 64"));
        byte[] pickle = {(byte) 0x80, 0x02, '}', 'q', 0, '(', 'X', 5, 0, 0, 0};
        cases.add(new Case("adapter_model.bin", 400, new Multipart().field("name", "x").file("adapter_config", "adapter_config.json",
            good.config()).file("adapter_model", "adapter_model.bin", pickle), "adapter_model.bin", "never loaded"));
        cases.add(new Case("pickle bytes named .safetensors", 400, new Files2(good.config(), pickle).form("x"), "pickle", "never loaded"));
        cases.add(new Case("a name with /", 400, good.form("a/b"), "invalid adapter name 'a/b'"));
        cases.add(new Case("the name ..", 400, good.form(".."), "invalid adapter name '..'"));
        cases.add(new Case("an empty name", 400, good.form(""), "invalid adapter name ''"));
        String long65 = "n".repeat(65);
        cases.add(new Case("a 65-character name", 400, good.form(long65), "invalid adapter name '" + long65 + "'"));
        cases.add(new Case("a name the tenant has", 409, good.form("kept"), "'kept' already exists"));
        cases.add(new Case("a system adapter's name", 409, good.form("demo-r8"), "system adapter"));
        cases.add(new Case("an unexpected file part", 400, good.form("x").file("extra", "x.txt", new byte[] {1}), "'extra'"));

        for (Case c : cases) {
            assertError(upload("refused", c.form()), c.status(), c.says());
            assertEquals(list, listed("refused"), c.what() + ": the list changed");
            assertSameTree(tree, c.what());
            assertHealthy();
        }
        HttpResponse<String> json = send(req("/v1/adapters", "refused").header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString("{\"name\":\"x\"}")).build());
        assertError(json, 400, "multipart/form-data", "application/json");
        assertSameTree(tree, "a JSON body");
        HttpResponse<String> garbage = send(req("/v1/adapters", "refused").header("Content-Type", "multipart/form-data; boundary=xyz")
            .POST(HttpRequest.BodyPublishers.ofString("this is not multipart at all")).build());
        assertEquals(400, garbage.statusCode(), garbage.body());
        assertSameTree(tree, "a body that is not multipart");
        assertEquals(201, upload("refused", "x", good).statusCode(), "a good upload after all the bad ones");
    }

    @Test
    void bodiesOverMaxAdapterMbAre413WithAndWithoutContentLength() throws Exception {
        List<String> tree = dataDirTree();
        Files2 big = new Files2(UploadFixtures.demo(dir, "demo-r4").config(), new byte[2 << 20]);
        Multipart form = big.form("huge");
        HttpResponse<String> sized = send(req("/v1/adapters", "acme").header("Content-Type", form.contentType())
            .POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())).build());
        assertError(sized, 413, "the upload is " + form.bytes().length + " bytes", "--max-adapter-mb allows " + MAX_UPLOAD + " bytes");
        assertSameTree(tree, "413 on Content-Length");
        HttpResponse<String> chunked = send(req("/v1/adapters", "acme").header("Content-Type", form.contentType())
            .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(form.bytes()))).build());
        assertTrue(chunked.request().bodyPublisher().orElseThrow().contentLength() < 0, "sent without Content-Length");
        assertError(chunked, 413, "the upload is larger", "--max-adapter-mb allows " + MAX_UPLOAD + " bytes"); // caught while streaming
        assertSameTree(tree, "413 while streaming");
        // Expect: 100-continue over the cap: a final 413 instead of 100, then the connection closes (no body will come).
        // By hand: JDK 17's HttpClient waits forever for a 100 when the answer is final (JDK-8286171).
        URI u = URI.create(server.url);
        try (java.net.Socket s = new java.net.Socket(u.getHost(), u.getPort())) {
            s.setSoTimeout(5000);
            s.getOutputStream().write(("POST /v1/adapters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-acme\r\nExpect: 100-continue\r\n"
                + "Content-Type: " + form.contentType() + "\r\nContent-Length: " + form.bytes().length + "\r\n\r\n")
                .getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            String answer = new String(s.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8); // to the close
            assertTrue(answer.startsWith("HTTP/1.1 413 "), answer);
            assertTrue(answer.contains("--max-adapter-mb allows"), answer);
        }
        Multipart continued = UploadFixtures.demo(dir, "demo-r4").form("continued");
        created(send(req("/v1/adapters", "acme").header("Content-Type", continued.contentType()).expectContinue(true)
            .POST(HttpRequest.BodyPublishers.ofByteArray(continued.bytes())).build()));
        assertEquals(200, delete("acme", "continued").statusCode());
        assertSameTree(tree, "Expect: 100-continue");
        assertHealthy();
        assertFalse(listed("acme").contains("acme:huge"));
    }

    @Test
    void aClientThatGoesAwayMidUploadLeavesNothingBehind() throws Exception {
        List<String> tree = dataDirTree();
        Multipart form = new Files2(UploadFixtures.demo(dir, "demo-r4").config(), new byte[800 << 10]).form("gone");
        byte[] body = form.bytes();
        URI u = URI.create(server.url);
        try (java.net.Socket s = new java.net.Socket(u.getHost(), u.getPort())) {
            var out = s.getOutputStream();
            out.write(("POST /v1/adapters HTTP/1.1\r\nHost: " + u.getHost() + "\r\nAuthorization: Bearer sk-acme\r\n"
                + "Content-Type: " + form.contentType() + "\r\nContent-Length: " + body.length + "\r\n\r\n")
                .getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            out.write(body, 0, body.length / 2);
            out.flush();
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (stagedFiles() == 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertTrue(stagedFiles() > 0, "the upload never reached the staging directory");
        } // the client goes away mid-body
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (!dataDirTree().equals(tree) && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertSameTree(tree, "an upload broken off by the client");
        assertHealthy();
        assertFalse(listed("acme").contains("acme:gone"));
    }

    private static long stagedFiles() throws IOException {
        try (Stream<Path> s = Files.walk(data.resolve("tmp"))) {
            return s.filter(Files::isRegularFile).count();
        }
    }

    @Test
    void tenantsAreIsolated() throws Exception {
        created(upload("globex", "support-bot", UploadFixtures.demo(dir, "demo-r8")));
        created(upload("initech", "support-bot", UploadFixtures.demo(dir, "demo-r8-mlp")));
        assertEquals(output("globex", "demo-r8"), output("globex", "support-bot"));
        assertEquals(output("initech", "demo-r8-mlp"), output("initech", "support-bot"));
        assertNotEquals(output("globex", "support-bot"), output("initech", "support-bot"));

        created(upload("globex", "globex-only", UploadFixtures.demo(dir, "demo-r4")));
        assertError(get("initech", "/v1/adapters/globex-only"), 404, "globex-only");
        assertError(completion("initech", "globex-only"), 404, "globex-only");
        assertError(delete("initech", "globex-only"), 404, "globex-only");
        assertFalse(listed("initech").contains("globex:globex-only"));
        assertFalse(get("initech", "/v1/models").body().contains("globex-only"));
        assertEquals(200, get("globex", "/v1/adapters/globex-only").statusCode(), "another tenant's DELETE removed it");

        assertEquals(200, delete("globex", "support-bot").statusCode());
        assertEquals(output("initech", "demo-r8-mlp"), output("initech", "support-bot"), "one tenant's delete touched the other's");
    }

    @Test
    void systemAdaptersCannotBeDeletedAndRoutesKeep404And405() throws Exception {
        assertError(delete("acme", "demo-r8"), 400, "system adapters cannot be deleted");
        assertTrue(listed("acme").contains("system:demo-r8"));
        assertError(send(req("/v1/adapters", "acme").PUT(HttpRequest.BodyPublishers.noBody()).build()), 405, "PUT");
        assertError(send(req("/v1/adapters/x", "acme").POST(HttpRequest.BodyPublishers.noBody()).build()), 405, "POST");
        assertError(get("acme", "/v1/adapterz"), 404, "no route");
        HttpResponse<String> anon = send(HttpRequest.newBuilder(URI.create(server.url + "/v1/adapters")).GET().build());
        assertEquals(401, anon.statusCode(), anon.body());
    }

    @Test
    void quotaRefusesTheUploadPastMaxAdapters() throws Exception {
        Files2 f = Peft.random(2, 4, 3, "k_proj").files();
        created(upload("small", "one", f));
        created(upload("small", "two", f));
        List<String> tree = dataDirTree();
        HttpResponse<String> third = upload("small", "three", f);
        assertError(third, 429, "max_adapters is 2");
        assertTrue(third.headers().firstValue("Retry-After").isPresent(), "429 without Retry-After");
        assertSameTree(tree, "429");
        assertEquals(200, delete("small", "one").statusCode());
        created(upload("small", "three", f));
    }

    @Test
    void concurrentUploadsCannotExceedTheQuota() throws Exception {
        Files2 f = Peft.random(2, 4, 5, "o_proj").files();
        List<CompletableFuture<HttpResponse<String>>> all = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            Multipart form = f.form("race-" + i);
            all.add(HTTP.sendAsync(req("/v1/adapters", "racer").header("Content-Type", form.contentType())
                .POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())).build(), HttpResponse.BodyHandlers.ofString()));
        }
        int ok = 0;
        int over = 0;
        for (CompletableFuture<HttpResponse<String>> r : all) {
            HttpResponse<String> resp = r.get();
            if (resp.statusCode() == 201) {
                ok++;
            } else {
                assertError(resp, 429, "max_adapters is 3");
                over++;
            }
        }
        assertEquals(3, ok, "uploads accepted past max_adapters 3");
        assertEquals(5, over);
        assertEquals(3, listed("racer").stream().filter(s -> s.startsWith("racer:")).count());
        try (Stream<Path> d = Files.list(data.resolve("adapters/racer"))) {
            assertEquals(3, d.count());
        }
        try (Stream<Path> t = Files.list(data.resolve("tmp"))) {
            assertEquals(0, t.count(), "staging left behind");
        }
    }

    @Test
    void deletingWhileARequestRunsLetsItFinishAndTheNewUploadRunsNewWeights() throws Exception {
        created(upload("acme", "busy", UploadFixtures.demo(dir, "demo-r8")));
        String body = "{\"model\":\"busy\",\"prompt\":" + JSON.writeValueAsString(PROMPT) + ",\"max_tokens\":200,\"temperature\":0,\"stream\":true}";
        HttpResponse<Stream<String>> stream = HTTP.send(req("/v1/completions", "acme").header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, stream.statusCode());
        Iterator<String> lines = stream.body().iterator();
        StringBuilder text = new StringBuilder();
        String first = nextData(lines);
        text.append(JSON.readTree(first).get("choices").get(0).get("text").asText());
        assertEquals(200, delete("acme", "busy").statusCode()); // while the stream runs (or just after it ended)
        int pinned = server.device.pins(AdapterKey.of("acme", "busy"));
        System.out.println("DELETE of a running adapter: " + pinned + " pin(s) still held when it returned");
        for (String d = nextData(lines); !d.equals("[DONE]"); d = nextData(lines)) {
            JsonNode chunk = JSON.readTree(d);
            assertFalse(chunk.has("error"), "the running request failed when its adapter was deleted: " + d);
            text.append(chunk.get("choices").get(0).get("text").asText());
        }
        String sys = JSON.readTree(send(req("/v1/completions", "acme").header("Content-Type", "application/json").POST(
            HttpRequest.BodyPublishers.ofString(body.replace("\"busy\"", "\"demo-r8\"").replace(",\"stream\":true", ""))).build()).body())
            .get("choices").get(0).get("text").asText();
        assertEquals(sys, text.toString(), "the running request did not finish on the adapter it started with");
        assertError(completion("acme", "busy"), 404, "busy");
        created(upload("acme", "busy", UploadFixtures.demo(dir, "demo-r8-mlp")));
        assertEquals(output("acme", "demo-r8-mlp"), output("acme", "busy"));
        assertEquals(0, server.device.totalPins(), "a pin leaked");
    }

    private static String nextData(Iterator<String> lines) {
        while (lines.hasNext()) {
            String l = lines.next();
            if (l.startsWith("data: ")) {
                return l.substring(6);
            }
        }
        throw new AssertionError("the stream ended without [DONE]");
    }

    @Test
    void uploadsSurviveARestart() throws Exception {
        JsonNode a = created(upload("acme", "durable", UploadFixtures.demo(dir, "demo-r16")));
        String out = output("acme", "durable");
        Server first = server;
        Server second = startServer();
        try {
            server = second;
            HttpResponse<String> r = get("acme", "/v1/adapters/durable");
            assertEquals(200, r.statusCode(), r.body());
            assertEquals(a, JSON.readTree(r.body()), "the adapter object changed across the restart");
            assertEquals(out, output("acme", "durable"));
        } finally {
            server = first;
        }
    }
}
