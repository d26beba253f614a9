package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.LoraModule;
import dev.loragateway.adapters.PeftAdapterReader;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.Tensor;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The demo model's four PEFT adapters served as {@code --lora-modules} would serve them: a request
 * naming an adapter gets what a server of that adapter's merged-weights twin returns for the base
 * model, over HTTP, also when requests for all adapters arrive at once and share batches.
 */
public class LoraHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final String PROMPT = "The gateway serves adapters to";
    @TempDir
    static Path dir;
    static Vertx vertx;
    static Engine engine;
    static ExecutorService loader;
    static String lora;                              // the multi-adapter server
    static final Map<String, String> twins = new HashMap<>(); // adapter → server of its merged twin
    static final List<Engine> engines = new ArrayList<>();

    @BeforeAll
    static void start() throws Exception {
        DemoStack stack = DemoStack.create(dir, 3, true); // 3 slots for 4 adapters: some requests wait for a slot
        ModelConfig cfg = stack.cfg;
        TextTokenizer tokenizer = stack.tokenizer;
        loader = stack.loader;
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, 16, 64);
        vertx = Vertx.vertx();
        lora = "http://127.0.0.1:" + new ApiServer(vertx, engine, tokenizer, "demo", 256, stack.registry).listen("127.0.0.1", 0).await();

        Map<String, Tensor> weights = SafeTensors.openDirectory(dir);
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            LoraAdapter a = PeftAdapterReader.readDirectory(s.name(), dir.resolve("adapters").resolve(s.name()), cfg.shape(), 64);
            Engine e = new Engine(LlamaModel.fromWeights(cfg, merged(cfg, weights, a)), new CpuBackend(1), 8);
            engines.add(e);
            twins.put(s.name(), "http://127.0.0.1:" + new ApiServer(vertx, e, tokenizer, "demo", 256).listen("127.0.0.1", 0).await());
        }
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        engines.forEach(Engine::close);
        loader.shutdownNow();
    }

    /** The base weights with {@code W + scaling·B·A} merged into every adapted projection (float32); also for the cluster's tests. */
    public static Map<String, Tensor> merged(ModelConfig cfg, Map<String, Tensor> base, LoraAdapter a) {
        Map<String, Tensor> w = new HashMap<>(base);
        for (int l = 0; l < cfg.numLayers(); l++) {
            for (LoraModule m : LoraModule.values()) {
                LoraAdapter.Part p = a.part(l, m);
                if (p == null) {
                    continue;
                }
                String n = "model.layers." + l + "." + m.block() + "." + m.peftName() + ".weight";
                Tensor t = base.get(n);
                float[] v = t.toFloats();
                int out = t.dim(0);
                int in = t.dim(1);
                for (int o = 0; o < out; o++) {
                    for (int j = 0; j < in; j++) {
                        double d = 0;
                        for (int k = 0; k < p.rank(); k++) {
                            d += (double) p.b()[o * p.rank() + k] * p.a()[k * in + j];
                        }
                        v[o * in + j] = (float) (v[o * in + j] + p.scaling() * d);
                    }
                }
                w.put(n, Tensor.of(n, DType.F32, v, out, in));
            }
        }
        return w;
    }

    static CompletableFuture<JsonNode> complete(String server, String model, int maxTokens) throws Exception {
        String body = "{\"model\":\"" + model + "\",\"prompt\":" + JSON.writeValueAsString(PROMPT)
            + ",\"max_tokens\":" + maxTokens + ",\"temperature\":0,\"logprobs\":1}";
        return HTTP.sendAsync(HttpRequest.newBuilder(URI.create(server + "/v1/completions")).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString())
            .thenApply(r -> {
                assertEquals(200, r.statusCode(), r.body());
                try {
                    return JSON.readTree(r.body());
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
    }

    static void assertSameChoice(JsonNode twin, JsonNode got, String who) {
        JsonNode a = twin.get("choices").get(0);
        JsonNode b = got.get("choices").get(0);
        assertEquals(a.get("text").asText(), b.get("text").asText(), who + ": text differs from the merged-weights twin");
        assertEquals(a.get("finish_reason").asText(), b.get("finish_reason").asText(), who);
        JsonNode la = a.get("logprobs").get("token_logprobs");
        JsonNode lb = b.get("logprobs").get("token_logprobs");
        assertEquals(la.size(), lb.size(), who);
        for (int i = 0; i < la.size(); i++) {
            double d = Math.abs(la.get(i).asDouble() - lb.get(i).asDouble());
            assertTrue(d <= 1e-4, who + ": token " + i + " logprob differs by " + d);
        }
    }

    @Test
    void eachAdapterEqualsItsMergedTwinAndDiffersFromTheBase() throws Exception {
        JsonNode baseOut = complete(lora, "demo", 24).get();
        int differing = 0;
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            JsonNode got = complete(lora, s.name(), 24).get();
            assertEquals(s.name(), got.get("model").asText());
            assertSameChoice(complete(twins.get(s.name()), "demo", 24).get(), got, s.name());
            if (!got.get("choices").get(0).get("text").asText().equals(baseOut.get("choices").get(0).get("text").asText())) {
                differing++;
            }
        }
        assertTrue(differing >= 3, "only " + differing + " of 4 adapters change the base model's output");
    }

    @Test
    void concurrentRequestsForDifferentAdaptersShareBatches() throws Exception {
        Map<String, JsonNode> expected = new HashMap<>();
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            expected.put(s.name(), complete(twins.get(s.name()), "demo", 32).get());
        }
        long steps0 = engine.steps();
        List<String> names = new ArrayList<>();
        List<CompletableFuture<JsonNode>> fs = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            String name = DemoAdapters.ALL.get(i % DemoAdapters.ALL.size()).name();
            names.add(name);
            fs.add(complete(lora, name, 32));
        }
        int tokens = 0;
        for (int i = 0; i < fs.size(); i++) {
            JsonNode got = fs.get(i).get();
            assertSameChoice(expected.get(names.get(i)), got, names.get(i) + " (concurrent request " + i + ")");
            tokens += got.get("usage").get("completion_tokens").asInt();
        }
        long steps = engine.steps() - steps0;
        assertTrue(steps < tokens / 2, steps + " engine steps for " + tokens + " tokens of 12 concurrent requests: not batched");
    }

    @Test
    void modelsListsTheAdaptersAndUnknownModelsAre404() throws Exception {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(lora + "/v1/models")).build(), HttpResponse.BodyHandlers.ofString());
        JsonNode data = JSON.readTree(r.body()).get("data");
        assertEquals(1 + DemoAdapters.ALL.size(), data.size(), r.body());
        JsonNode r8 = null;
        for (JsonNode m : data) {
            if (m.get("id").asText().equals("demo-r8")) {
                r8 = m;
            }
        }
        assertNotEquals(null, r8, r.body());
        assertEquals("demo", r8.get("parent").asText());
        assertEquals("system", r8.get("owned_by").asText());
        HttpResponse<String> nf = HTTP.send(HttpRequest.newBuilder(URI.create(lora + "/v1/completions")).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"demo-r99\",\"prompt\":\"x\"}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(404, nf.statusCode());
        assertTrue(nf.body().contains("demo-r99"), nf.body());
    }
}
