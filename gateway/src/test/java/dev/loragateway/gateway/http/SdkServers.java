package dev.loragateway.gateway.http;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.PeftAdapterReader;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.SafeTensors;
import io.vertx.core.Vertx;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;

/**
 * The servers the SDK tests talk to, on the demo model written into {@code dir}:
 * <ul>
 *   <li>{@link #openBase}: auth off, the four demo adapters registered as {@code --lora-modules}
 *   would register them;
 *   <li>{@link #authBase}: the same engine and adapters behind an {@code --api-keys} file with one
 *   tenant whose key is {@link #KEY};
 *   <li>{@link #twinBase}: a base-model-only server whose weights are the base with {@link #ADAPTER}
 *   merged in, the reference for what a request naming that adapter must return.
 * </ul>
 */
final class SdkServers implements AutoCloseable {
    static final String ADAPTER = "demo-r8";
    static final String KEY = "sk-acme-test-1";
    static final int MAX_LEN = 256;

    final TextTokenizer tokenizer;
    final String openBase;
    final String authBase;
    final String twinBase;
    private final Vertx vertx;
    private final Engine engine;
    private final Engine twinEngine;
    private final ExecutorService loader;
    private final List<OpenAIClient> clients = new ArrayList<>();

    SdkServers(Path dir) throws Exception {
        DemoStack stack = DemoStack.create(dir, 4, true);
        ModelConfig cfg = stack.cfg;
        tokenizer = stack.tokenizer;
        AdapterRegistry registry = stack.registry;
        loader = stack.loader;
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, 16, 64);
        vertx = Vertx.vertx();
        openBase = "http://127.0.0.1:" + new ApiServer(vertx, engine, tokenizer, "demo", MAX_LEN, registry).listen("127.0.0.1", 0).await();
        Path keys = dir.resolve("api-keys.json");
        Files.writeString(keys, "{\"tenants\":[{\"id\":\"acme\",\"keys\":[\"" + KEY + "\"]}]}");
        authBase = "http://127.0.0.1:" + new ApiServer(vertx, engine, tokenizer, "demo", MAX_LEN, registry)
            .tenants(Tenants.load(keys)).listen("127.0.0.1", 0).await();
        LoraAdapter a = PeftAdapterReader.readDirectory(ADAPTER, dir.resolve("adapters").resolve(ADAPTER), cfg.shape(), 64);
        twinEngine = new Engine(LlamaModel.fromWeights(cfg, LoraHttpTest.merged(cfg, SafeTensors.openDirectory(dir), a)),
            new CpuBackend(1), 8);
        twinBase = "http://127.0.0.1:" + new ApiServer(vertx, twinEngine, tokenizer, "demo", MAX_LEN).listen("127.0.0.1", 0).await();
    }

    /** An SDK client of {@code base} (no retries, so a status reaches the test as it was sent); closed with the servers. */
    OpenAIClient client(String base, String apiKey) {
        OpenAIClient c = OpenAIOkHttpClient.builder().baseUrl(base + "/v1").apiKey(apiKey).maxRetries(0)
            .timeout(Duration.ofSeconds(60)).build();
        synchronized (clients) {
            clients.add(c);
        }
        return c;
    }

    @Override
    public void close() {
        synchronized (clients) {
            clients.forEach(OpenAIClient::close);
        }
        vertx.close().await();
        engine.close();
        twinEngine.close();
        loader.shutdownNow();
    }
}
