package dev.loragateway.gateway.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 12 item 11: {@code /metrics} told an anonymous caller which tenants exist and their traffic.
 * Two tenants with their own adapters send traffic over real HTTP; then the API port's
 * {@code /metrics} shows no tenant id or adapter name to an anonymous caller, a tenant, or a wrong
 * key, with the same totals as the labelled view that an operator key and the {@code --metrics-port}
 * listener get.
 */
class MetricsPrivacyHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    /** Tenant ids and adapter names distinctive enough that any appearance in the text is a leak. */
    private static final List<String> SECRETS = List.of("acme-corp-7f3", "globex-9b2", "acme-secret-bot", "globex-hidden-model");
    private static final String OPERATOR_KEY = "sk-ops-metrics";

    @TempDir
    static Path dir;
    static DemoStack stack;
    static Telemetry telemetry;
    static Engine engine;
    static Vertx vertx;
    static String api;
    static String metricsPort;
    static final List<String> ACCESS = new CopyOnWriteArrayList<>();
    static int requests;
    static int completions;
    /** An anonymous caller's {@code /metrics} right after the traffic. */
    static HttpResponse<String> anonymousAfterTraffic;

    @BeforeAll
    static void start() throws Exception {
        stack = DemoStack.create(dir, 4, false);
        Path demo = dir.resolve("adapters");
        stack.registry.register("acme-corp-7f3", "acme-secret-bot", demo.resolve("demo-r4/adapter_config.json"),
            demo.resolve("demo-r4/adapter_model.safetensors"));
        stack.registry.register("globex-9b2", "globex-hidden-model", demo.resolve("demo-r8/adapter_config.json"),
            demo.resolve("demo-r8/adapter_model.safetensors"));
        Path keys = dir.resolve("api-keys.json");
        Files.writeString(keys, """
            { "tenants": [
                { "id": "acme-corp-7f3", "keys": ["sk-acme"] },
                { "id": "globex-9b2", "keys": ["sk-globex"] }
              ],
              "operator_keys": ["%s"] }""".formatted(OPERATOR_KEY));
        telemetry = Telemetry.builder().accessLog(ACCESS::add).build();
        telemetry.adapterTiers(stack.host, stack.device);
        engine = new Engine(stack.model, new CpuBackend(2), stack.device, Engine.Options.builder().maxBatch(8).maxQueued(64)
            .meter(telemetry.meter()).tracer(telemetry.tracer()).build());
        vertx = Vertx.vertx();
        ApiServer server = new ApiServer(vertx, engine, stack.tokenizer, "demo", 256, stack.registry).tenants(Tenants.load(keys))
            .deviceTier(stack.device).observer(telemetry.requests()).metrics(telemetry::scrape, telemetry::scrapeTenantFree);
        api = "http://127.0.0.1:" + server.listen("127.0.0.1", 0).await();
        metricsPort = "http://127.0.0.1:" + server.listenMetrics("127.0.0.1", 0).await();
        traffic();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        stack.loader.shutdownNow();
        telemetry.close();
    }

    /** Each tenant: completions on its adapter (one streamed) and on the base model; plus a 401. */
    private static void traffic() throws Exception {
        List<CompletableFuture<HttpResponse<String>>> sent = new ArrayList<>();
        for (String[] t : new String[][] {{"sk-acme", "acme-secret-bot"}, {"sk-globex", "globex-hidden-model"}}) {
            for (String model : List.of(t[1], t[1], "demo")) {
                sent.add(completion(t[0], model, sent.size() % 3 == 1));
            }
        }
        for (var f : sent) {
            HttpResponse<String> r = f.get(60, TimeUnit.SECONDS);
            assertEquals(200, r.statusCode(), r.body());
        }
        assertEquals(401, get(api + "/v1/models", null).statusCode());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20); // metrics are recorded as each response ends
        while (ACCESS.size() < requests && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(requests, ACCESS.size(), "every request logged, so counted");
        anonymousAfterTraffic = get(api + "/metrics", null);
    }

    private static CompletableFuture<HttpResponse<String>> completion(String key, String model, boolean stream) {
        ObjectNode body = JSON.createObjectNode().put("model", model).put("prompt", "The gateway serves adapters to")
            .put("max_tokens", 5).put("temperature", 0).put("stream", stream);
        requests++;
        completions++;
        return HTTP.sendAsync(HttpRequest.newBuilder(URI.create(api + "/v1/completions")).header("Authorization", "Bearer " + key)
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body.toString())).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> get(String url, String key) throws Exception {
        if (url.startsWith(api)) {
            requests++;
        }
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).GET();
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static void assertNoSecrets(String text, String who) {
        for (String s : SECRETS) {
            assertFalse(text.contains(s), who + " learns '" + s + "' from /metrics:\n" + text);
        }
        assertFalse(text.contains("tenant="), who + " sees a tenant label:\n" + text);
    }

    /** Totals both views must agree on: completions answered, tokens, first tokens and their latency counts. */
    private static List<Double> totals(PrometheusText p) {
        return List.of(p.sum("lora_gateway_http_requests_total", Map.of("route", "/v1/completions", "status", "200")),
            p.sum("lora_gateway_tokens_total", Map.of("type", "prompt")), p.sum("lora_gateway_tokens_total", Map.of("type", "completion")),
            p.sum("lora_gateway_engine_time_to_first_token_seconds_count", Map.of()),
            p.sum("lora_gateway_engine_time_to_first_token_seconds_bucket", Map.of("le", "0.5")),
            p.sum("lora_gateway_http_request_duration_seconds_count", Map.of("route", "/v1/completions")));
    }

    @Test
    void anAnonymousCallerLearnsNoTenantOrAdapterNameAfterTrafficFromTwoTenants() throws Exception {
        HttpResponse<String> r = anonymousAfterTraffic;
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
        assertNoSecrets(r.body(), "an anonymous caller");
        PrometheusText anonymous = PrometheusText.parse(r.body()); // well-formed: merged histograms stay cumulative
        assertEquals(completions, anonymous.sum("lora_gateway_http_requests_total", Map.of("route", "/v1/completions", "status", "200")),
            "the traffic is still counted, just not per tenant");
        assertEquals(1, anonymous.sum("lora_gateway_http_requests_total", Map.of("status", "401")), "the one 401");
        assertTrue(anonymous.sum("lora_gateway_tokens_total", Map.of("type", "completion")) > 0);
    }

    @Test
    void aTenantsKeyOrAWrongKeyGetsTheTenantFreeViewToo() throws Exception {
        for (String key : new String[] {"sk-acme", "sk-globex", "sk-wrong", "sk-ops-metric"}) {
            HttpResponse<String> r = get(api + "/metrics", key);
            assertEquals(200, r.statusCode(), key);
            assertNoSecrets(r.body(), "key " + key);
        }
    }

    @Test
    void anOperatorKeyAndTheMetricsPortSeeEveryTenantWithTheSameTotals() throws Exception {
        PrometheusText anonymous = PrometheusText.parse(get(api + "/metrics", null).body());
        for (HttpResponse<String> r : List.of(get(api + "/metrics", OPERATOR_KEY), get(metricsPort + "/metrics", null))) {
            assertEquals(200, r.statusCode());
            String text = r.body();
            assertTrue(text.contains("tenant=\"acme-corp-7f3\"") && text.contains("tenant=\"globex-9b2\""), text);
            PrometheusText full = PrometheusText.parse(text);
            assertEquals(totals(full), totals(anonymous), "the tenant-free view sums the labelled one");
            assertEquals(3, full.sum("lora_gateway_http_requests_total", Map.of("route", "/v1/completions", "status", "200",
                "tenant", "globex-9b2")));
        }
        assertEquals(401, get(api + "/v1/models", OPERATOR_KEY).statusCode(), "an operator key is no tenant's key");
        assertEquals(404, get(metricsPort + "/v1/models", "sk-acme").statusCode(), "the metrics port routes nothing else");
    }
}
