package dev.loragateway.gateway.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.HostTier;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.http.DemoStack;
import dev.loragateway.gateway.http.ApiServer;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.data.EventData;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real server with telemetry (the demo model, its adapters, an in-memory span exporter, a list as
 * the access log) driven over HTTP: plain, streamed and adapter completions, a 400 and a 404, then
 * {@code /metrics}, the spans and the access log must agree with what was sent.
 */
class TelemetryHttpTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final String ADAPTER = "demo-r8";
    private static final String TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
    private static final String PARENT_SPAN = "00f067aa0ba902b7";
    /** The engine's TTFT/TPOT buckets (seconds). */
    private static final List<Double> ENGINE_LATENCY_BUCKETS = List.of(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15,
        0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0);

    @TempDir
    static Path dir;
    static Vertx vertx;
    static Engine engine;
    static ExecutorService loader;
    static Telemetry telemetry;
    static String base;
    static final InMemorySpanExporter SPANS = InMemorySpanExporter.create();
    static final List<String> ACCESS = new CopyOnWriteArrayList<>();

    /** What the workload did. */
    record Sent(String requestId, int status, String model, int promptTokens, int completionTokens, boolean traced) {
    }

    static final List<Sent> completions = new ArrayList<>(); // every POST /v1/completions, in the order sent
    static int requests;                                      // every HTTP request sent
    static PrometheusText before;                             // /metrics before any adapter was used
    static PrometheusText after;                              // /metrics after everything else
    static HttpResponse<String> afterResponse;

    @BeforeAll
    static void start() throws Exception {
        DemoStack stack = DemoStack.create(dir, 2, true);
        LlamaModel model = stack.model;
        ModelConfig cfg = stack.cfg;
        TextTokenizer tokenizer = stack.tokenizer;
        AdapterRegistry registry = stack.registry;
        loader = stack.loader;
        HostTier<AdapterKey> host = stack.host;
        DeviceTier<AdapterKey> device = stack.device;
        telemetry = Telemetry.builder().addSpanProcessor(SimpleSpanProcessor.create(SPANS)).accessLog(ACCESS::add).build();
        telemetry.adapterTiers(host, device);
        engine = new Engine(model, new CpuBackend(2), device, Engine.Options.builder().maxBatch(8).maxQueued(64)
            .meter(telemetry.meter()).tracer(telemetry.tracer()).build());
        vertx = Vertx.vertx();
        int port = new ApiServer(vertx, engine, tokenizer, "demo", 256, registry).observer(telemetry.requests())
            .metrics(telemetry::scrape, telemetry::scrapeTenantFree).tracer(telemetry.tracer()).listen("127.0.0.1", 0).await();
        base = "http://127.0.0.1:" + port;
        workload();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        engine.close();
        loader.shutdownNow();
        telemetry.close();
    }

    private static void workload() throws Exception {
        before = PrometheusText.parse(get("/metrics").body());
        List<CompletableFuture<Sent>> base = new ArrayList<>();
        base.add(complete("demo", false, true));
        base.add(complete("demo", false, false));
        base.add(complete("demo", false, false));
        base.add(complete("demo", true, false));
        base.add(complete("demo", true, false));
        for (var f : base) {
            completions.add(f.get());
        }
        completions.add(complete(ADAPTER, false, false).get());
        completions.add(complete(ADAPTER, true, false).get());
        completions.add(send("{\"model\":\"demo\",\"prompt\":\"x\",\"max_tokens\":-1}", false, "demo").get());
        completions.add(send("{\"model\":\"no-such-model\",\"prompt\":\"x\"}", false, "no-such-model").get());
        // everything so far is logged (and so counted) before /metrics is read
        await(() -> ACCESS.size() == requests, "an access-log line for each of " + requests + " requests, got " + ACCESS.size());
        afterResponse = get("/metrics");
        after = PrometheusText.parse(afterResponse.body());
        await(() -> ACCESS.size() == requests, "the last /metrics logged");
    }

    static HttpResponse<String> get(String path) throws Exception {
        requests++;
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + path)).GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    static CompletableFuture<Sent> complete(String model, boolean stream, boolean traced) throws Exception {
        ObjectNode body = JSON.createObjectNode().put("model", model).put("prompt", "The gateway serves adapters to")
            .put("max_tokens", 6).put("temperature", 0).put("stream", stream);
        if (stream) {
            body.putObject("stream_options").put("include_usage", true);
        }
        return send(body.toString(), traced, model);
    }

    static CompletableFuture<Sent> send(String body, boolean traced, String model) {
        requests++;
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body));
        if (traced) {
            b.header("traceparent", "00-" + TRACE_ID + "-" + PARENT_SPAN + "-01");
        }
        return HTTP.sendAsync(b.build(), HttpResponse.BodyHandlers.ofString()).thenApply(r -> {
            String id = r.headers().firstValue("X-Request-Id").orElseThrow();
            if (r.statusCode() != 200) {
                return new Sent(id, r.statusCode(), model, 0, 0, traced);
            }
            JsonNode usage = null;
            try {
                if (r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream")) {
                    for (String ev : r.body().split("\n\n")) {
                        if (ev.startsWith("data: {")) {
                            JsonNode c = JSON.readTree(ev.substring("data: ".length()));
                            if (c.hasNonNull("usage")) {
                                usage = c.get("usage");
                            }
                        }
                    }
                } else {
                    usage = JSON.readTree(r.body()).get("usage");
                }
            } catch (Exception e) {
                throw new IllegalStateException(r.body(), e);
            }
            assertNotNull(usage, "usage in " + r.body());
            return new Sent(id, 200, model, usage.get("prompt_tokens").asInt(), usage.get("completion_tokens").asInt(), traced);
        });
    }

    static void await(BooleanSupplier done, String what) throws InterruptedException {
        long until = System.nanoTime() + 5_000_000_000L;
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > until) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    static List<Sent> ok() {
        return completions.stream().filter(s -> s.status() == 200).toList();
    }

    @Test
    void requestCountersAndLatencyHistogramByRouteStatusAndTenant() {
        assertTrue(afterResponse.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"),
            "content type " + afterResponse.headers().firstValue("Content-Type"));
        assertEquals("counter", after.types.get("lora_gateway_http_requests_total"));
        Map<String, String> completions200 = Map.of("route", "/v1/completions", "status", "200", "method", "POST", "tenant", "default");
        assertEquals(7, ok().size(), "the workload's successes");
        assertEquals(ok().size(), after.sum("lora_gateway_http_requests_total", completions200));
        assertEquals(1, after.sum("lora_gateway_http_requests_total", Map.of("route", "/v1/completions", "status", "400")));
        assertEquals(1, after.sum("lora_gateway_http_requests_total", Map.of("route", "/v1/completions", "status", "404")));
        assertEquals(1, after.sum("lora_gateway_http_requests_total", Map.of("route", "/metrics", "status", "200", "tenant", "none")),
            "the first /metrics (the second is still running while it is read)");
        assertEquals(requests - 1, after.sum("lora_gateway_http_requests_total", Map.of()), "every request but the last");

        String h = "lora_gateway_http_request_duration_seconds";
        assertEquals("histogram", after.types.get(h));
        assertEquals(ok().size(), after.sum(h + "_count", completions200));
        assertTrue(after.sum(h + "_sum", completions200) > 0);
        assertEquals(HttpMetrics.LATENCY_BUCKETS, after.boundaries(h), "explicit latency buckets");

        int prompt = ok().stream().mapToInt(Sent::promptTokens).sum();
        int completion = ok().stream().mapToInt(Sent::completionTokens).sum();
        assertEquals(prompt, after.sum("lora_gateway_tokens_total", Map.of("type", "prompt", "tenant", "default")));
        assertEquals(completion, after.sum("lora_gateway_tokens_total", Map.of("type", "completion", "tenant", "default")));
    }

    @Test
    void engineHistogramsAndGaugesAreExposed() {
        String ttft = "lora_gateway_engine_time_to_first_token_seconds";
        String tpot = "lora_gateway_engine_time_per_output_token_seconds";
        assertEquals("histogram", after.types.get(ttft));
        assertEquals(ok().size(), after.sum(ttft + "_count", Map.of("tenant", "default")), "one first token per request");
        assertEquals(ok().stream().filter(s -> s.completionTokens() > 1).count(), after.sum(tpot + "_count", Map.of("tenant", "default")),
            "a time per output token for each request of 2 tokens or more");
        assertEquals(ENGINE_LATENCY_BUCKETS, after.boundaries(ttft));
        assertEquals(ENGINE_LATENCY_BUCKETS, after.boundaries(tpot));
        assertTrue(after.sum("lora_gateway_engine_batch_size_count", Map.of()) > 0, "forward steps counted");
        assertEquals(0, after.sum("lora_gateway_engine_queue_depth", Map.of()), "nothing queued once all finished");
        assertTrue(after.has("lora_gateway_engine_running"));
        double used = after.sum("lora_gateway_engine_kv_blocks", Map.of("state", "used"));
        double free = after.sum("lora_gateway_engine_kv_blocks", Map.of("state", "free"));
        assertEquals(engine.kvBlocksTotal(), used + free, "used + free KV blocks");
        assertEquals("gauge", after.types.get("lora_gateway_engine_kv_blocks"));
    }

    @Test
    void adapterTierCountersMoveWhenAnAdapterIsUsed() {
        for (String tier : List.of("host", "device")) {
            Map<String, String> t = Map.of("tier", tier);
            assertEquals(0, before.sum("lora_gateway_adapter_cache_misses_total", t), tier + " misses before any adapter request");
            assertEquals(0, before.sum("lora_gateway_adapter_cache_loads_total", t), tier);
            assertEquals(1, after.sum("lora_gateway_adapter_cache_misses_total", t), tier + ": one adapter loaded once");
            assertEquals(1, after.sum("lora_gateway_adapter_cache_loads_total", t), tier);
            assertTrue(after.sum("lora_gateway_adapter_cache_load_time_seconds_total", t) > 0, tier + " load time");
            assertTrue(after.sum("lora_gateway_adapter_cache_load_time_max_seconds", t) > 0, tier + " slowest load");
            assertTrue(after.sum("lora_gateway_adapter_cache_size_bytes", t) > 0, tier + " holds the adapter");
            assertEquals(0, after.sum("lora_gateway_adapter_cache_evictions_total", t), tier);
        }
        assertEquals(0, before.sum("lora_gateway_adapter_cache_hits_total", Map.of("tier", "device")));
        assertTrue(after.sum("lora_gateway_adapter_cache_hits_total", Map.of("tier", "device")) >= 2,
            "each of the 2 adapter requests pinned the resident adapter");
    }

    @Test
    void oneServerSpanPerRequestWithEngineChildren() throws Exception {
        telemetry.flush(java.time.Duration.ofSeconds(5));
        List<SpanData> spans = SPANS.getFinishedSpanItems();
        List<SpanData> server = spans.stream().filter(s -> s.getKind() == SpanKind.SERVER).toList();
        assertEquals(requests, server.size(), "server spans: " + server);
        for (Sent sent : completions) {
            List<SpanData> mine = server.stream()
                .filter(s -> sent.requestId().equals(s.getAttributes().get(AttributeKey.stringKey("lora_gateway.request_id")))).toList();
            assertEquals(1, mine.size(), "one server span for " + sent);
            SpanData s = mine.get(0);
            assertEquals("POST /v1/completions", s.getName());
            assertEquals("/v1/completions", s.getAttributes().get(AttributeKey.stringKey("http.route")));
            assertEquals(sent.status(), s.getAttributes().get(AttributeKey.longKey("http.response.status_code")));
            assertEquals("default", s.getAttributes().get(AttributeKey.stringKey("lora_gateway.tenant")));
            assertEquals(sent.model(), s.getAttributes().get(AttributeKey.stringKey("gen_ai.request.model")));
            if (sent.traced()) {
                assertEquals(TRACE_ID, s.getTraceId(), "the caller's traceparent continues");
                assertEquals(PARENT_SPAN, s.getParentSpanId());
            } else {
                assertFalse(s.getParentSpanContext().isValid(), "a root span without traceparent");
            }
            List<SpanData> engineSpans = spans.stream().filter(e -> e.getParentSpanId().equals(s.getSpanId())).toList();
            if (sent.status() != 200) {
                assertEquals(List.of(), engineSpans, "no engine work for a " + sent.status());
                continue;
            }
            assertEquals(1, engineSpans.size(), "one engine span per choice");
            SpanData e = engineSpans.get(0);
            assertEquals("engine.generate", e.getName());
            assertEquals(s.getTraceId(), e.getTraceId());
            assertEquals(List.of("admitted", "first_token"), e.getEvents().stream().map(EventData::getName).toList());
            double queue = e.getAttributes().get(AttributeKey.doubleKey("lora_gateway.queue_seconds"));
            double ttft = e.getAttributes().get(AttributeKey.doubleKey("lora_gateway.time_to_first_token_seconds"));
            assertTrue(queue >= 0 && ttft >= queue, "queue " + queue + " s, then the first token at " + ttft + " s");
            assertEquals(sent.completionTokens(), e.getAttributes().get(AttributeKey.longKey("gen_ai.usage.output_tokens")));
            assertEquals(sent.promptTokens(), e.getAttributes().get(AttributeKey.longKey("gen_ai.usage.input_tokens")));
            assertEquals(sent.model().equals(ADAPTER), e.getAttributes().get(AttributeKey.stringKey("lora_gateway.adapter")) != null);
            assertTrue(e.getStartEpochNanos() >= s.getStartEpochNanos() && e.getEndEpochNanos() <= s.getEndEpochNanos(),
                "the engine span lies inside the request's");
        }
        long metricsSpans = server.stream().filter(s -> s.getName().equals("GET /metrics")).count();
        assertEquals(2, metricsSpans);
    }

    @Test
    void oneJsonAccessLogLinePerRequest() throws Exception {
        assertEquals(requests, ACCESS.size());
        List<JsonNode> lines = new ArrayList<>();
        for (String line : ACCESS) {
            assertFalse(line.contains("\n"), "one line: " + line);
            lines.add(JSON.readTree(line));
        }
        for (JsonNode l : lines) {
            for (String field : List.of("time", "request_id", "tenant", "method", "route", "model", "status", "prompt_tokens",
                "completion_tokens", "latency_ms")) {
                assertTrue(l.has(field), field + " in " + l);
            }
            assertTrue(l.get("latency_ms").asDouble() >= 0, l.toString());
            assertFalse(l.has("node"), "no cluster, no node: the line is as it was: " + l);
        }
        for (Sent sent : completions) {
            List<JsonNode> mine = lines.stream().filter(l -> l.get("request_id").asText().equals(sent.requestId())).toList();
            assertEquals(1, mine.size(), "one line for " + sent);
            JsonNode l = mine.get(0);
            assertEquals("default", l.get("tenant").asText());
            assertEquals("POST", l.get("method").asText());
            assertEquals("/v1/completions", l.get("route").asText());
            assertEquals(sent.model(), l.get("model").asText(), "the model the request named, also when unknown");
            assertEquals(sent.status(), l.get("status").asInt());
            assertEquals(sent.promptTokens(), l.get("prompt_tokens").asInt());
            assertEquals(sent.completionTokens(), l.get("completion_tokens").asInt());
        }
        List<JsonNode> scrapes = lines.stream().filter(l -> l.get("route").asText().equals("/metrics")).toList();
        assertEquals(2, scrapes.size());
        assertTrue(scrapes.get(0).get("tenant").isNull() && scrapes.get(0).get("model").isNull(), scrapes.get(0).toString());
    }

    @Test
    void accessLogEscapesWhatCallersSent() throws Exception {
        var r = new dev.loragateway.gateway.http.RequestObserver.Record("req-1", "acme", "POST", "/v1/completions", 404,
            "evil\"}\n{\"status\":200", 3, 0, 1_234_567);
        JsonNode l = JSON.readTree(AccessLog.line(r, java.time.Instant.EPOCH));
        assertEquals("evil\"}\n{\"status\":200", l.get("model").asText());
        assertEquals(404, l.get("status").asInt());
        assertEquals(1.235, l.get("latency_ms").asDouble());
        assertEquals("1970-01-01T00:00:00Z", l.get("time").asText());
    }
}
