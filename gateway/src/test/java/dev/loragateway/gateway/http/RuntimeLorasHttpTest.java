package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Engine;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * vLLM's {@code POST /v1/load_lora_adapter} and {@code /v1/unload_lora_adapter} ({@link RuntimeLoras})
 * over real HTTP on the demo model, with real PEFT directories: a loaded adapter answers exactly as
 * the same files registered as a {@code --lora-modules} adapter do, and is gone after unload; paths
 * outside the allowed root, as written or through a symlink, load nothing; a bad adapter gets the
 * upload's 400; only an operator key may call them; without the flag they do not exist.
 *
 * <p>Three servers share one engine and registry: {@code secured} (keys, the flag, one allowed
 * root), {@code off} (no flag) and {@code noDir} (the flag, no key, no allowed root).
 */
class RuntimeLorasHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private static final String OPS = "sk-ops-lora";
    private static final String TENANT = "sk-acme";

    @TempDir
    static Path dir;
    static Path root;
    static DemoStack stack;
    static Engine engine;
    static Vertx vertx;
    static String secured;
    static String off;
    static String noDir;

    @BeforeAll
    static void start() throws Exception {
        stack = DemoStack.create(dir, 4, false);
        Path demo = dir.resolve("adapters");
        stack.registry.registerSystem("static-r4", demo.resolve("demo-r4")); // what --lora-modules static-r4=DIR does
        root = Files.createDirectories(dir.resolve("allowed"));
        for (String name : List.of("demo-r4", "demo-r8")) {
            copyDir(demo.resolve(name), root.resolve(name));
        }
        Path keys = dir.resolve("api-keys.json");
        Files.writeString(keys, """
            { "tenants": [ { "id": "acme", "keys": ["%s"] } ], "operator_keys": ["%s"] }""".formatted(TENANT, OPS));
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, Engine.Options.builder().maxBatch(4).maxQueued(64).build());
        vertx = Vertx.vertx();
        secured = listen(new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry).tenants(Tenants.load(keys))
            .deviceTier(stack.device).maxAdapterBytes(1 << 20).runtimeLoraUpdating(List.of(root)));
        off = listen(new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry).deviceTier(stack.device));
        noDir = listen(new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry).deviceTier(stack.device)
            .runtimeLoraUpdating(List.of()));
    }

    private static String listen(ApiServer s) {
        return "http://127.0.0.1:" + s.listen("127.0.0.1", 0).await();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        stack.loader.shutdownNow();
    }

    private static void copyDir(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from)) {
            for (Path f : files.toList()) {
                Files.copy(f, to.resolve(f.getFileName()));
            }
        }
    }

    private static HttpResponse<String> post(String base, String path, String key, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> load(String key, String name, Path path) throws Exception {
        return post(secured, "/v1/load_lora_adapter", key, JSON.createObjectNode().put("lora_name", name)
            .put("lora_path", path.toString()).toString());
    }

    private static HttpResponse<String> unload(String key, String name) throws Exception {
        return post(secured, "/v1/unload_lora_adapter", key, JSON.createObjectNode().put("lora_name", name).toString());
    }

    /** A tenant's greedy completion on {@code model}: its text, or the error status and body. */
    private static String complete(String model) throws Exception {
        ObjectNode body = JSON.createObjectNode().put("model", model).put("prompt", "The gateway serves adapters to")
            .put("max_tokens", 12).put("temperature", 0);
        HttpResponse<String> r = post(secured, "/v1/completions", TENANT, body.toString());
        return r.statusCode() == 200 ? JSON.readTree(r.body()).at("/choices/0/text").asText() : r.statusCode() + " " + r.body();
    }

    private static JsonNode error(HttpResponse<String> r, int status) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        return JSON.readTree(r.body()).get("error");
    }

    private static boolean listed(String name) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create(secured + "/v1/models")).header("Authorization", "Bearer " + TENANT).GET().build();
        for (JsonNode m : JSON.readTree(HTTP.send(req, HttpResponse.BodyHandlers.ofString()).body()).get("data")) {
            if (m.get("id").asText().equals(name)) {
                assertEquals("system", m.get("owned_by").asText(), "visible to every tenant as a system adapter");
                return true;
            }
        }
        return false;
    }

    private static void assertNotLoaded(String name) throws Exception {
        assertFalse(listed(name), name + " is not in /v1/models");
        assertTrue(stack.registry.get(AdapterKey.system(name)).isEmpty(), name + " is not registered");
        assertTrue(complete(name).startsWith("404 "), name + " cannot be used");
    }

    @Test
    void aLoadedAdapterAnswersAsTheSameFilesFromLoraModulesAndIsGoneAfterUnload() throws Exception {
        String base = complete("demo");
        String viaLoraModules = complete("static-r4");
        assertNotEquals(base, viaLoraModules, "the adapter changes the output");
        assertFalse(listed("dyn-r4"));

        HttpResponse<String> r = load(OPS, "dyn-r4", root.resolve("demo-r4"));
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("Success: LoRA adapter 'dyn-r4' added successfully.", r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain"));
        assertTrue(listed("dyn-r4"));
        assertEquals(viaLoraModules, complete("dyn-r4"), "the same weights give the same greedy text");

        // what was validated is what is served: changing the source afterwards changes nothing
        Files.copy(root.resolve("demo-r8/adapter_model.safetensors"), root.resolve("demo-r4/adapter_model.safetensors"),
            java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.copy(root.resolve("demo-r8/adapter_config.json"), root.resolve("demo-r4/adapter_config.json"),
            java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        stack.device.invalidate(AdapterKey.system("dyn-r4")); // force a reload from its files
        assertEquals(viaLoraModules, complete("dyn-r4"));

        JsonNode again = error(load(OPS, "dyn-r4", root.resolve("demo-r8")), 400);
        assertEquals("The lora adapter 'dyn-r4' has already been loaded.", again.get("message").asText());
        assertEquals("lora_name", again.get("param").asText());
        assertEquals(viaLoraModules, complete("dyn-r4"), "the refused load replaced nothing");

        r = unload(OPS, "dyn-r4");
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("Success: LoRA adapter 'dyn-r4' removed successfully.", r.body());
        assertNotLoaded("dyn-r4");
        JsonNode gone = error(unload(OPS, "dyn-r4"), 404);
        assertEquals("The lora adapter 'dyn-r4' cannot be found.", gone.get("message").asText());
        assertEquals(viaLoraModules, complete("static-r4"), "the other adapter of the same files is untouched");
        try (Stream<Path> left = Files.list(dir.resolve("data").resolve("tmp"))) {
            assertEquals(List.of(), left.toList(), "the staging copy is removed on unload");
        }
    }

    @Test
    void aPathOutsideTheRootLoadsNothingAsWrittenOrThroughASymlink() throws Exception {
        Path outside = dir.resolve("adapters").resolve("demo-r8");
        JsonNode e = error(load(OPS, "escape-1", outside), 400);
        assertEquals("lora_path", e.get("param").asText());
        assertTrue(e.get("message").asText().contains("--allowed-lora-dir"), e.toString());
        error(load(OPS, "escape-2", root.resolve("..").resolve("adapters").resolve("demo-r8")), 400);
        Path link = Files.createSymbolicLink(root.resolve("link-out"), outside);
        assertTrue(error(load(OPS, "escape-3", link), 400).get("message").asText().contains("once its links are resolved"));
        Path half = Files.createDirectories(root.resolve("half-link"));
        Files.copy(outside.resolve("adapter_config.json"), half.resolve("adapter_config.json"));
        Files.createSymbolicLink(half.resolve("adapter_model.safetensors"), outside.resolve("adapter_model.safetensors"));
        assertTrue(error(load(OPS, "escape-4", half), 400).get("message").asText().contains("a link to a file outside"));
        for (String n : List.of("escape-1", "escape-2", "escape-3", "escape-4")) {
            assertNotLoaded(n);
        }
        assertEquals(404, load(OPS, "nowhere", root.resolve("no-such-dir")).statusCode());
        // a link that stays inside the root is fine
        Path inside = Files.createSymbolicLink(root.resolve("link-in"), root.resolve("demo-r8"));
        assertEquals(200, load(OPS, "linked-r8", inside).statusCode());
        assertEquals(200, unload(OPS, "linked-r8").statusCode());
    }

    @Test
    void aBadAdapterGetsTheSame400AsItsUploadAndBadBodiesName() throws Exception {
        UploadFixtures.Files2 bad = UploadFixtures.Peft.random(65, 65, 7, "q_proj").files(); // rank over --max-lora-rank 64
        Path badDir = Files.createDirectories(root.resolve("rank-65"));
        Files.write(badDir.resolve("adapter_config.json"), bad.config());
        Files.write(badDir.resolve("adapter_model.safetensors"), bad.model());
        JsonNode loaded = error(load(OPS, "too-big", badDir), 400);
        UploadFixtures.Multipart form = bad.form("too-big");
        HttpResponse<String> up = HTTP.send(HttpRequest.newBuilder(URI.create(secured + "/v1/adapters"))
            .header("Authorization", "Bearer " + TENANT).header("Content-Type", form.contentType())
            .POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())).build(), HttpResponse.BodyHandlers.ofString());
        JsonNode uploaded = error(up, 400);
        assertEquals(uploaded.get("message").asText(), loaded.get("message").asText());
        assertEquals(uploaded.get("code").asText(), loaded.get("code").asText());
        assertTrue(loaded.get("message").asText().contains("rank 65 exceeds --max-lora-rank 64"), loaded.toString());
        assertNotLoaded("too-big");

        Path pickled = Files.createDirectories(root.resolve("pickled"));
        Files.write(pickled.resolve("adapter_config.json"), bad.config());
        Files.write(pickled.resolve("adapter_model.bin"), new byte[] {(byte) 0x80, 2, 'x'});
        assertTrue(error(load(OPS, "pickled", pickled), 400).get("message").asText().contains("never loaded"));
        assertTrue(error(load(OPS, "demo", root.resolve("demo-r8")), 400).get("message").asText().contains("base model"));

        String path = root.resolve("demo-r8").toString();
        assertEquals("lora_path", error(post(secured, "/v1/load_lora_adapter", OPS, "{\"lora_name\": \"x\"}"), 400).get("param").asText());
        assertEquals("Both 'lora_name' and 'lora_path' must be provided.",
            error(post(secured, "/v1/load_lora_adapter", OPS, "{\"lora_path\": \"" + path + "\"}"), 400).get("message").asText());
        assertEquals("lora_name", error(post(secured, "/v1/load_lora_adapter", OPS, "{\"lora_name\": 7, \"lora_path\": \"" + path + "\"}"),
            400).get("param").asText());
        assertEquals("lora_name", error(load(OPS, "../up", root.resolve("demo-r8")), 400).get("param").asText());
        assertEquals("colour", error(post(secured, "/v1/load_lora_adapter", OPS, "{\"lora_name\": \"x\", \"lora_path\": \"" + path
            + "\", \"colour\": 1}"), 400).get("param").asText());
        error(post(secured, "/v1/load_lora_adapter", OPS, "not json"), 400);
        error(post(secured, "/v1/unload_lora_adapter", OPS, "{}"), 400);
        assertEquals("lora_name", error(post(secured, "/v1/unload_lora_adapter", OPS, "{\"lora_int_id\": 3}"), 400).get("param").asText());
        assertNotLoaded("x");
    }

    @Test
    void onlyAnOperatorKeyMayLoadOrUnload() throws Exception {
        Path r8 = root.resolve("demo-r8");
        assertEquals("invalid_api_key", error(load(null, "sneaky", r8), 401).get("code").asText());
        assertEquals("invalid_api_key", error(load("sk-wrong", "sneaky", r8), 401).get("code").asText());
        JsonNode forbidden = error(load(TENANT, "sneaky", r8), 403);
        assertTrue(forbidden.get("message").asText().contains("operator key"), forbidden.toString());
        assertNotLoaded("sneaky");
        error(unload(TENANT, "static-r4"), 403);
        error(unload(null, "static-r4"), 401);
        assertTrue(listed("static-r4"), "a tenant unloads nothing");
    }

    @Test
    void withoutTheFlagTheRoutesDoNotExistAndWithoutARootNothingLoads() throws Exception {
        for (String route : List.of("/v1/load_lora_adapter", "/v1/unload_lora_adapter")) {
            JsonNode e = error(post(off, route, null, "{\"lora_name\": \"a\", \"lora_path\": \"" + root.resolve("demo-r8") + "\"}"), 404);
            assertTrue(e.get("message").asText().contains("--allow-runtime-lora-updating"), e.toString());
        }
        JsonNode e = error(post(noDir, "/v1/load_lora_adapter", null, "{\"lora_name\": \"a\", \"lora_path\": \"" + root.resolve("demo-r8")
            + "\"}"), 403);
        assertTrue(e.get("message").asText().contains("--allowed-lora-dir"), e.toString());
        assertNotLoaded("a");
        assertEquals("The lora adapter 'a' cannot be found.",
            error(post(noDir, "/v1/unload_lora_adapter", null, "{\"lora_name\": \"a\"}"), 404).get("message").asText());
    }
}
