package dev.loragateway.gateway.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Engine;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.gateway.http.ApiServer;
import dev.loragateway.gateway.http.DemoStack;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The vLLM-named gauges ({@link VllmMetrics}) on a real server under a mixed-adapter load: six
 * streamed completions (three adapters of two tenants and the system, and the base model) on an
 * engine of two batch places. The engine is held between steps (its step listener waits for a
 * permit), so that the running batch and the queue stand still while {@code /metrics} is read and
 * compared with the engine's own state; nothing finishes meanwhile (each request wants 40 tokens
 * and the test lets fewer steps run).
 */
class VllmMetricsHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final String OPERATOR_KEY = "sk-ops-vllm";
    private static final int SLOTS = 4;
    /** key, model of each request, in the order sent. */
    private static final String[][] LOAD = {{"sk-acme", "acme-secret-bot"}, {"sk-globex", "globex-hidden-model"},
        {"sk-acme", "shared-sys-lora"}, {"sk-acme", "demo"}, {"sk-globex", "globex-hidden-model"}, {"sk-acme", "acme-secret-bot"}};
    private static final Set<String> ADAPTERS = Set.of("acme-secret-bot", "globex-hidden-model", "shared-sys-lora");

    @TempDir
    static Path dir;
    static DemoStack stack;
    static Telemetry telemetry;
    static Engine engine;
    static Vertx vertx;
    static String api;
    static String metricsPort;
    static final Semaphore permits = new Semaphore(0);
    static final Semaphore arrived = new Semaphore(0);
    static volatile boolean held = true;
    static final List<CompletableFuture<HttpResponse<String>>> sent = new ArrayList<>();
    static long started;

    @BeforeAll
    static void start() throws Exception {
        started = System.currentTimeMillis();
        stack = DemoStack.create(dir, SLOTS, false);
        Path demo = dir.resolve("adapters");
        stack.registry.register("acme-corp", "acme-secret-bot", demo.resolve("demo-r4/adapter_config.json"),
            demo.resolve("demo-r4/adapter_model.safetensors"));
        stack.registry.register("globex", "globex-hidden-model", demo.resolve("demo-r8/adapter_config.json"),
            demo.resolve("demo-r8/adapter_model.safetensors"));
        stack.registry.registerSystem("shared-sys-lora", demo.resolve("demo-r16"));
        Path keys = dir.resolve("api-keys.json");
        Files.writeString(keys, """
            { "tenants": [ { "id": "acme-corp", "keys": ["sk-acme"] }, { "id": "globex", "keys": ["sk-globex"] } ],
              "operator_keys": ["%s"] }""".formatted(OPERATOR_KEY));
        telemetry = Telemetry.builder().accessLog(line -> { }).build();
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, Engine.Options.builder().maxBatch(2).maxQueued(64)
            .meter(telemetry.meter()).tracer(telemetry.tracer()).prefixCaching(true).build());
        telemetry.vllm(VllmMetrics.of(engine, "demo", SLOTS));
        engine.onStep((shape, nanos) -> { // the engine thread waits here after each step while held
            if (held) {
                arrived.release();
                permits.acquireUninterruptibly();
            }
        });
        vertx = Vertx.vertx();
        ApiServer server = new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry).tenants(Tenants.load(keys))
            .deviceTier(stack.device).observer(telemetry.requests()).metrics(telemetry::scrape, telemetry::scrapeTenantFree);
        api = "http://127.0.0.1:" + server.listen("127.0.0.1", 0).await();
        metricsPort = "http://127.0.0.1:" + server.listenMetrics("127.0.0.1", 0).await();
        hold();
    }

    /** Sends the load and lets steps run one at a time until two run and four wait, then holds the engine there. */
    private static void hold() throws Exception {
        sent.add(completion(LOAD[0][0], LOAD[0][1]));
        assertTrue(arrived.tryAcquire(60, TimeUnit.SECONDS), "the first request's first step");
        for (int i = 1; i < LOAD.length; i++) {
            sent.add(completion(LOAD[i][0], LOAD[i][1]));
        }
        waitFor(() -> engine.queued() == LOAD.length - 1, "the other five requests submitted");
        for (int step = 0; step < 30; step++) { // each step is one token of the running requests: at most 31 of their 40
            Thread.sleep(100); // adapters page in meanwhile
            permits.release();
            assertTrue(arrived.tryAcquire(60, TimeUnit.SECONDS), "a step");
            Engine.AdapterUse use = engine.adapterUse();
            if (engine.running() == 2 && engine.queued() + engine.preemptedWaiting() == 4 && !use.waiting().isEmpty()) {
                return;
            }
        }
        throw new AssertionError("the engine never held two running and four waiting requests: running " + engine.running()
            + ", queued " + engine.queued() + ", preempted " + engine.preemptedWaiting());
    }

    private static void waitFor(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    @AfterAll
    static void stop() throws Exception {
        held = false;
        permits.release(1000);
        try {
            for (var f : sent) {
                HttpResponse<String> r = f.get(120, TimeUnit.SECONDS);
                assertEquals(200, r.statusCode(), r.body());
                assertTrue(r.body().contains("[DONE]"), "every stream ran to its end once released");
            }
        } finally {
            vertx.close().await();
            engine.close();
            stack.loader.shutdownNow();
            telemetry.close();
        }
    }

    private static CompletableFuture<HttpResponse<String>> completion(String key, String model) {
        ObjectNode body = JSON.createObjectNode().put("model", model).put("prompt", "The gateway serves adapters to")
            .put("max_tokens", 40).put("temperature", 0).put("stream", true);
        return HTTP.sendAsync(HttpRequest.newBuilder(URI.create(api + "/v1/completions")).header("Authorization", "Bearer " + key)
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body.toString())).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    private static String metrics(String base, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + "/metrics")).GET();
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return r.body();
    }

    private static PrometheusText.Sample only(PrometheusText p, String name) {
        List<PrometheusText.Sample> all = p.all(name, s -> true);
        assertEquals(1, all.size(), name + ": " + all);
        assertEquals("gauge", p.types.get(name), name + " is a gauge");
        return all.get(0);
    }

    private static Set<String> list(String label) {
        return label.isEmpty() ? Set.of() : new TreeSet<>(Arrays.asList(label.split(",")));
    }

    private static Set<String> names(Set<AdapterKey> keys) {
        return keys.stream().map(AdapterKey::name).collect(Collectors.toCollection(TreeSet::new));
    }

    @Test
    void theOperatorViewAndTheMetricsPortShowTheEngineStateUnderVllmNames() throws Exception {
        Engine.AdapterUse use = engine.adapterUse();
        double kv = (double) engine.kvBlocksUsed() / engine.kvBlocksTotal();
        assertTrue(kv > 0, "six prompts hold blocks");
        assertEquals(ADAPTERS, new TreeSet<>(union(names(use.running()), names(use.waiting()))),
            "every adapter of the six requests runs or waits (the base model is none)");
        assertTrue(names(use.running()).contains("acme-secret-bot"), "the first request has run since the first step");
        assertTrue(names(use.waiting()).contains("globex-hidden-model"), "of its two requests, one at most has the other place");
        for (String text : List.of(metrics(api, OPERATOR_KEY), metrics(metricsPort, null))) {
            PrometheusText p = PrometheusText.parse(text);
            PrometheusText.Sample waiting = only(p, "vllm:num_requests_waiting");
            assertEquals(engine.queued() + engine.preemptedWaiting(), waiting.value());
            assertEquals(4, waiting.value(), "six requests, two batch places");
            assertEquals("demo", waiting.label("model_name"));
            assertEquals(2, only(p, "vllm:num_requests_running").value());
            assertEquals(engine.running(), only(p, "vllm:num_requests_running").value());
            assertEquals(kv, only(p, "vllm:kv_cache_usage_perc").value(), 1e-12);
            assertEquals(kv, only(p, "vllm:gpu_cache_usage_perc").value(), 1e-12);
            PrometheusText.Sample lora = only(p, "vllm:lora_requests_info");
            assertEquals(Set.of("max_lora", "running_lora_adapters", "waiting_lora_adapters"), lora.labels().keySet(),
                "vLLM's labels, no model_name");
            assertEquals(Integer.toString(SLOTS), lora.label("max_lora"));
            assertEquals(names(use.running()), list(lora.label("running_lora_adapters")));
            assertEquals(names(use.waiting()), list(lora.label("waiting_lora_adapters")));
            assertFalse(lora.label("running_lora_adapters").isEmpty(), "an adapter runs: the base model alone holds one place");
            assertEquals(use.sinceMillis() / 1000.0, lora.value(), 1e-3);
            assertTrue(lora.value() >= started / 1000.0 - 1 && lora.value() <= System.currentTimeMillis() / 1000.0 + 1, "unix seconds");
            assertTrue(p.has("lora_gateway_engine_running"), "our own names stay");
            // prefix caching: counters, both vLLM's names and ours equal the engine's counts
            List<PrometheusText.Sample> queries = p.all("vllm:prefix_cache_queries_total", x -> true);
            assertEquals(1, queries.size(), queries.toString());
            assertEquals(engine.prefixCacheQueries(), queries.get(0).value());
            assertTrue(queries.get(0).value() > 0, "six prompts were looked up");
            assertEquals("demo", queries.get(0).label("model_name"));
            assertEquals(engine.prefixCacheHits(), p.all("vllm:prefix_cache_hits_total", x -> true).get(0).value());
        }
    }

    private static Set<String> union(Set<String> a, Set<String> b) {
        Set<String> u = new TreeSet<>(a);
        u.addAll(b);
        return u;
    }

    @Test
    void anAnonymousCallerOrATenantSeesTheGaugesButNoAdapterName() throws Exception {
        for (String key : new String[] {null, "sk-acme", "sk-wrong"}) {
            String text = metrics(api, key);
            for (String secret : union(ADAPTERS, Set.of("acme-corp", "globex"))) {
                assertFalse(text.contains(secret), key + " learns '" + secret + "' from /metrics:\n" + text);
            }
            PrometheusText p = PrometheusText.parse(text);
            assertEquals(4, only(p, "vllm:num_requests_waiting").value());
            assertEquals(2, only(p, "vllm:num_requests_running").value());
            PrometheusText.Sample lora = only(p, "vllm:lora_requests_info");
            assertEquals("", lora.label("running_lora_adapters"));
            assertEquals("", lora.label("waiting_lora_adapters"));
            assertEquals(Integer.toString(SLOTS), lora.label("max_lora"));
        }
    }
}
