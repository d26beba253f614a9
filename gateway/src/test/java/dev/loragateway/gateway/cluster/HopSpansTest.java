package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.LocalExecutor;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.http.ApiServer;
import dev.loragateway.gateway.telemetry.Telemetry;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.cluster.ClusterView;
import dev.loragateway.scheduler.placement.Placements;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two nodes in one JVM, wired as {@code serve} wires a cluster ({@link Hops} around the executors),
 * each with its own OpenTelemetry SDK exporting to one in-memory list: node A's HTTP API with a
 * {@link ClusterExecutor} whose view sends every request to B (A is full), B's {@link InternalApi}
 * on 127.0.0.1. A request to A, carrying a caller's {@code traceparent}, is one trace over both
 * nodes: A's request span, its forward span, B's internal span, B's engine spans, each the parent
 * of the next; A's access log names B as the node that ran it.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class HopSpansTest {
    private static final byte[] SECRET = "hop secret".getBytes(StandardCharsets.UTF_8);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final String TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4736";
    private static final String CALLER_SPAN = "10f067aa0ba902b7";

    @TempDir
    static Path dir;
    static final InMemorySpanExporter SPANS = InMemorySpanExporter.create();
    static final List<String> ACCESS_A = new CopyOnWriteArrayList<>();
    static Telemetry telA;
    static Telemetry telB;
    static Engine engineA;
    static Engine engineB;
    static Vertx vertxA;
    static Vertx vertxB;
    static RemoteExecutors remotes;
    static String forwardingA; // A full: everything goes to B
    static String roomyA;      // A with room: everything runs on A

    /** A fixed view: A (full or not) and B (room), B at {@code addressB}. */
    record View(boolean aFull, String addressB) implements ClusterView {
        @Override
        public String localNodeId() {
            return "a";
        }

        @Override
        public List<NodeState> nodes() {
            int running = aFull ? 8 : 0;
            return List.of(new NodeState("a", "http://127.0.0.1:1", "cpu", running, 0, 8, 1000, 1000, 16, Set.of(), Set.of(), 1, false, 1),
                new NodeState("b", addressB, "cpu", 0, 0, 64, 1000, 1000, 16, Set.of(), Set.of(), 1, false, 1));
        }

        @Override
        public void addListener(Runnable onChange) {
        }
    }

    @BeforeAll
    static void start() throws Exception {
        DemoModel.write(dir, DemoModel.Options.tiny());
        TextTokenizer tokenizer = TextTokenizer.load(dir);
        telA = Telemetry.builder().addSpanProcessor(SimpleSpanProcessor.create(SPANS)).accessLog(ACCESS_A::add).build();
        telB = Telemetry.builder().addSpanProcessor(SimpleSpanProcessor.create(SPANS)).accessLog(line -> { }).build();
        engineA = new Engine(LlamaModel.load(dir), new CpuBackend(1), null, Engine.Options.builder().maxBatch(8).maxQueued(64)
            .tracer(telA.tracer()).build());
        engineB = new Engine(LlamaModel.load(dir), new CpuBackend(1), null, Engine.Options.builder().maxBatch(8).maxQueued(64)
            .tracer(telB.tracer()).build());
        vertxA = Vertx.vertx();
        vertxB = Vertx.vertx(); // its own event loops: A's waits for B's admission
        InternalApi apiB = new InternalApi(vertxB, Hops.serving(new LocalExecutor(engineB), "b", telB.tracer()), SECRET);
        String addressB = "http://127.0.0.1:" + apiB.listen("127.0.0.1", 0).await();
        LocalExecutor localA = new LocalExecutor(engineA);
        remotes = new RemoteExecutors(localA.config(), SECRET, 16);
        for (boolean full : new boolean[] {true, false}) {
            View view = new View(full, addressB);
            ClusterExecutor ex = new ClusterExecutor(Hops.ranHere(localA, "a"), view, Placements.defaultPlacement(),
                Hops.forwarding(remotes, view, telA.tracer()));
            String url = "http://127.0.0.1:" + new ApiServer(vertxA, ex, tokenizer, "demo", 256, null).cluster(view, "consolidate")
                .observer(telA.requests()).tracer(telA.tracer()).listen("127.0.0.1", 0).await();
            if (full) {
                forwardingA = url;
            } else {
                roomyA = url;
            }
        }
    }

    @AfterAll
    static void stop() {
        remotes.close();
        vertxA.close().await();
        vertxB.close().await();
        engineA.close();
        engineB.close();
        telA.close();
        telB.close();
    }

    private static HttpResponse<String> complete(String base, String traceId, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body));
        if (traceId != null) {
            b.header("traceparent", "00-" + traceId + "-" + CALLER_SPAN + "-01");
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static List<SpanData> trace(String traceId) {
        return SPANS.getFinishedSpanItems().stream().filter(s -> s.getTraceId().equals(traceId)).toList();
    }

    private static SpanData only(List<SpanData> spans, String name) {
        List<SpanData> named = spans.stream().filter(s -> s.getName().equals(name)).toList();
        assertEquals(1, named.size(), name + " in " + spans);
        return named.get(0);
    }

    private static JsonNode accessLine(String requestId) throws Exception {
        await(() -> ACCESS_A.stream().anyMatch(l -> l.contains(requestId)), "the access-log line of " + requestId);
        for (String l : ACCESS_A) {
            JsonNode j = JSON.readTree(l);
            if (j.path("request_id").asText().equals(requestId)) {
                return j;
            }
        }
        throw new AssertionError("unreachable");
    }

    @Test
    void aForwardedRequestIsOneTraceOverBothNodesAndItsLogLineNamesTheExecutingNode() throws Exception {
        HttpResponse<String> r = complete(forwardingA, TRACE_ID, "{\"model\":\"demo\",\"prompt\":\"The hop\",\"max_tokens\":5,\"n\":2,"
            + "\"temperature\":0.7,\"seed\":3}");
        assertEquals(200, r.statusCode(), r.body());
        await(() -> trace(TRACE_ID).size() >= 5, "request, forward, internal and two engine spans");
        List<SpanData> spans = trace(TRACE_ID);
        SpanData request = only(spans, "POST /v1/completions");
        SpanData forward = only(spans, Hops.FORWARD_SPAN);
        SpanData internal = only(spans, Hops.INTERNAL_SPAN);
        List<SpanData> engine = spans.stream().filter(s -> s.getName().equals("engine.generate")).toList();
        assertEquals(2, engine.size(), "one engine span per choice: " + spans);

        assertEquals(CALLER_SPAN, request.getParentSpanId(), "the caller's trace continues");
        assertEquals(request.getSpanId(), forward.getParentSpanId(), "the forward hangs under the request");
        assertEquals(forward.getSpanId(), internal.getParentSpanId(), "the executing node's span under the forward (traceparent)");
        for (SpanData e : engine) {
            assertEquals(internal.getSpanId(), e.getParentSpanId(), "the executing node's engine spans under its internal span");
        }
        assertEquals(SpanKind.CLIENT, forward.getKind());
        assertEquals(SpanKind.SERVER, internal.getKind());
        assertEquals("a", forward.getAttributes().get(AttributeKey.stringKey("lora_gateway.node.id")));
        assertEquals("b", forward.getAttributes().get(AttributeKey.stringKey("lora_gateway.target_node.id")));
        assertEquals("b", internal.getAttributes().get(AttributeKey.stringKey("lora_gateway.node.id")));
        assertEquals("b", request.getAttributes().get(AttributeKey.stringKey("lora_gateway.executing_node.id")));
        String requestId = r.headers().firstValue("X-Request-Id").orElseThrow();
        assertEquals(requestId, internal.getAttributes().get(AttributeKey.stringKey("lora_gateway.request_id")));
        // in order in time (the ends are not ordered: the forward span ends on the stream's thread as the last
        // choice finishes, while the response that ends the request span is written on A's event loop)
        assertTrue(forward.getStartEpochNanos() >= request.getStartEpochNanos(), "the forward starts inside the request");
        assertTrue(internal.getStartEpochNanos() >= forward.getStartEpochNanos(), "B starts after A sent it");

        assertEquals("b", accessLine(requestId).get("node").asText(), "the front node's access log names the node that ran it");
    }

    @Test
    void aRequestThatRunsWhereItEnteredHasNoHopAndNamesThisNode() throws Exception {
        String traceId = "6bf92f3577b34da6a3ce929d0e0e4736";
        HttpResponse<String> r = complete(roomyA, traceId, "{\"model\":\"demo\",\"prompt\":\"Stay\",\"max_tokens\":3,\"temperature\":0}");
        assertEquals(200, r.statusCode(), r.body());
        await(() -> trace(traceId).size() >= 2, "request and engine spans");
        List<SpanData> spans = trace(traceId);
        SpanData request = only(spans, "POST /v1/completions");
        assertEquals(request.getSpanId(), only(spans, "engine.generate").getParentSpanId());
        assertFalse(spans.stream().anyMatch(s -> s.getName().startsWith("lora_gateway.")), "no hop: " + spans);
        assertEquals("a", accessLine(r.headers().firstValue("X-Request-Id").orElseThrow()).get("node").asText());

        HttpResponse<String> bad = complete(forwardingA, null, "{\"model\":\"demo\",\"prompt\":\"x\",\"max_tokens\":-1}");
        assertEquals(400, bad.statusCode(), bad.body());
        assertEquals("a", accessLine(bad.headers().firstValue("X-Request-Id").orElseThrow()).get("node").asText(),
            "refused before it ran anywhere: the node that answered");
    }

    private static void await(BooleanSupplier condition, String what) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > until) {
                fail(what + ": not within 20 s");
            }
            Thread.sleep(10);
        }
    }
}
