package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.PeftAdapterReader;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.Tensor;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two tenants upload an adapter of the same name with different weights; a third uses the base
 * model. Under concurrent mixed-tenant load through few adapter slots, every answer equals the one
 * its own tenant's merged-weights twin gives: no request is ever computed with another tenant's
 * adapter.
 */
class TenantIsolationHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final String[] KEYS = {"sk-acme", "sk-globex", "sk-initech"};
    private static final String[] FILES = {"demo-r8", "demo-r16", null}; // what each tenant's support-bot is
    @TempDir
    static Path dir;
    static Vertx vertx;
    static final List<Engine> engines = new ArrayList<>();
    static ExecutorService loader;
    static String server;
    static final String[] twin = new String[3]; // per tenant: a server of its merged twin (the base for initech)

    @BeforeAll
    static void start() throws Exception {
        DemoStack stack = DemoStack.create(dir, 1, false); // one slot for two tenants' adapters: they take turns in it
        LlamaModel model = stack.model;
        ModelConfig cfg = stack.cfg;
        TextTokenizer tokenizer = stack.tokenizer;
        Files.writeString(dir.resolve("keys.json"), """
            { "tenants": [
                { "id": "acme", "keys": ["sk-acme"] }, { "id": "globex", "keys": ["sk-globex"] }, { "id": "initech", "keys": ["sk-initech"] }
            ] }""");
        AdapterRegistry registry = stack.registry;
        loader = stack.loader;
        DeviceTier<AdapterKey> device = stack.device;
        Engine engine = new Engine(model, new CpuBackend(2), device, 12, 256);
        engines.add(engine);
        vertx = Vertx.vertx();
        server = "http://127.0.0.1:" + new ApiServer(vertx, engine, tokenizer, "demo", 256, registry)
            .tenants(Tenants.load(dir.resolve("keys.json"))).deviceTier(device).listen("127.0.0.1", 0).await();

        Map<String, Tensor> weights = SafeTensors.openDirectory(dir);
        for (int t = 0; t < 3; t++) {
            LlamaModel m = model;
            if (FILES[t] != null) {
                UploadFixtures.Multipart form = UploadFixtures.demo(dir, FILES[t]).form("support-bot");
                HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(server + "/v1/adapters"))
                    .header("Authorization", "Bearer " + KEYS[t]).header("Content-Type", form.contentType())
                    .POST(HttpRequest.BodyPublishers.ofByteArray(form.bytes())).build(), HttpResponse.BodyHandlers.ofString());
                assertEquals(201, r.statusCode(), r.body());
                LoraAdapter a = PeftAdapterReader.readDirectory(FILES[t], dir.resolve("adapters").resolve(FILES[t]), cfg.shape(), 64);
                m = LlamaModel.fromWeights(cfg, LoraHttpTest.merged(cfg, weights, a));
            }
            Engine e = new Engine(m, new CpuBackend(1), 64);
            engines.add(e);
            twin[t] = "http://127.0.0.1:" + new ApiServer(vertx, e, tokenizer, "demo", 256).listen("127.0.0.1", 0).await();
        }
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engines.forEach(Engine::close);
        loader.shutdownNow();
    }

    private static JsonNode complete(String base, String key, String model, String prompt) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"" + model + "\",\"prompt\":" + JSON.writeValueAsString(prompt)
                + ",\"max_tokens\":10,\"temperature\":0,\"logprobs\":1}"));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body()).get("choices").get(0);
    }

    @Test
    void concurrentMixedTenantLoadNeverCrossesAdapters() throws Exception {
        String[] prompts = {"The adapter", "Once upon a time", "lora rank", "batch of many", "tenant says", "x"};
        Map<String, JsonNode> ref = new HashMap<>();
        for (int t = 0; t < 3; t++) {
            for (String p : prompts) {
                ref.put(t + "|" + p, complete(twin[t], null, "demo", p));
            }
        }
        int differ = 0;
        for (String p : prompts) {
            String a = ref.get("0|" + p).get("text").asText();
            String g = ref.get("1|" + p).get("text").asText();
            String base = ref.get("2|" + p).get("text").asText();
            differ += !a.equals(g) && !a.equals(base) && !g.equals(base) ? 1 : 0;
        }
        assertTrue(differ >= 4, "the two adapters and the base agree too often to tell them apart (" + differ + " of 6 prompts differ)");

        Random rnd = new Random(11);
        ExecutorService pool = Executors.newFixedThreadPool(12);
        try {
            List<Future<String>> checks = new ArrayList<>();
            for (int i = 0; i < 72; i++) {
                int t = rnd.nextInt(3);
                String p = prompts[rnd.nextInt(prompts.length)];
                String model = t == 2 ? "demo" : "support-bot";
                checks.add(pool.submit(() -> {
                    JsonNode got = complete(server, KEYS[t], model, p);
                    JsonNode want = ref.get(t + "|" + p);
                    assertEquals(want.get("text").asText(), got.get("text").asText(), "tenant " + KEYS[t] + " prompt '" + p + "'");
                    JsonNode wl = want.get("logprobs").get("token_logprobs");
                    JsonNode gl = got.get("logprobs").get("token_logprobs");
                    for (int k = 0; k < wl.size(); k++) {
                        assertEquals(wl.get(k).asDouble(), gl.get(k).asDouble(), 1e-4, "tenant " + KEYS[t] + " token " + k);
                    }
                    return KEYS[t];
                }));
            }
            int[] per = new int[3];
            for (Future<String> f : checks) {
                String k = f.get();
                per[k.equals(KEYS[0]) ? 0 : k.equals(KEYS[1]) ? 1 : 2]++;
            }
            assertTrue(per[0] > 10 && per[1] > 10 && per[2] > 10, "uneven mix: " + java.util.Arrays.toString(per));
        } finally {
            pool.shutdownNow();
        }
    }
}
