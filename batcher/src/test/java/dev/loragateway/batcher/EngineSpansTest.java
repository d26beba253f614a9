package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cpu.CpuBackend;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.context.Scope;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.data.EventData;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The engine's spans: one per choice, under the caller's span, with its queue, first token and end. */
class EngineSpansTest {
    private final InMemorySpanExporter exporter = InMemorySpanExporter.create();
    private final SdkTracerProvider tracers = SdkTracerProvider.builder().addSpanProcessor(SimpleSpanProcessor.create(exporter)).build();
    private final EngineFixture fx = new EngineFixture(23);

    private List<SpanData> engineSpans() {
        return exporter.getFinishedSpanItems().stream().filter(s -> s.getName().equals(EngineSpans.NAME)).toList();
    }

    private static List<String> events(SpanData s) {
        return s.getEvents().stream().map(EventData::getName).toList();
    }

    @Test
    void forkedChoicesEachGetASpanUnderTheCallersSpan() throws Exception {
        Engine.Options o = Engine.Options.builder().maxBatch(8).maxQueued(100).tracer(tracers.get("test")).build();
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), null, o)) {
            Span request = tracers.get("test").spanBuilder("request").startSpan();
            List<CompletableFuture<Generator.Finish>> fs;
            try (Scope s = request.makeCurrent()) {
                List<Engine.Choice> choices = new ArrayList<>();
                for (int i = 0; i < 3; i++) {
                    choices.add(new Engine.Choice(SamplingParams.greedy(5), (t, lp) -> true));
                }
                fs = engine.submitForks(fx.randomPrompt(new Random(1), 9), null, "acme", choices);
            }
            for (var f : fs) {
                f.get(60, TimeUnit.SECONDS);
            }
            request.end();
            List<SpanData> spans = engineSpans();
            assertEquals(3, spans.size(), "one span per choice");
            for (SpanData s : spans) {
                assertEquals(request.getSpanContext().getSpanId(), s.getParentSpanId());
                assertEquals(List.of("admitted", "first_token"), events(s));
                assertEquals("acme", s.getAttributes().get(EngineSpans.TENANT));
                assertEquals(5L, s.getAttributes().get(EngineSpans.MAX_TOKENS));
                long out = s.getAttributes().get(EngineSpans.OUTPUT_TOKENS);
                assertTrue(out >= 1 && out <= 5, "tokens " + out);
                assertEquals(out == 5 ? "length" : "stop", s.getAttributes().get(EngineSpans.FINISH));
                assertTrue(s.getAttributes().get(EngineSpans.TTFT_SECONDS) >= s.getAttributes().get(EngineSpans.QUEUE_SECONDS));
            }
        }
    }

    @Test
    void preemptionsAreEventsAndEveryPreemptionIsCounted() throws Exception {
        Engine.Options o = Engine.Options.builder().maxBatch(8).maxQueued(100).kvCacheBytes(12 * KvBlockPool.bytesPerBlock(fx.cfg, 4))
            .blockSize(4).tracer(tracers.get("test")).build();
        Random rnd = new Random(8);
        long preemptions;
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), null, o)) {
            List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
            for (int i = 0; i < 12; i++) {
                fs.add(engine.submit(new Engine.Request(fx.randomPrompt(rnd, 10), SamplingParams.greedy(1 + rnd.nextInt(20)), null,
                    "acme", (t, lp) -> true)));
            }
            for (var f : fs) {
                f.get(60, TimeUnit.SECONDS);
            }
            preemptions = engine.preemptions();
        }
        assertTrue(preemptions > 0, "12 sequences in 12 blocks of 4 never preempted");
        List<SpanData> spans = engineSpans();
        assertEquals(12, spans.size());
        long events = spans.stream().mapToLong(s -> events(s).stream().filter("preempted"::equals).count()).sum();
        long attrs = spans.stream().mapToLong(s -> {
            Long p = s.getAttributes().get(EngineSpans.PREEMPTIONS);
            return p == null ? 0 : p;
        }).sum();
        assertEquals(preemptions, events);
        assertEquals(preemptions, attrs);
    }

    @Test
    void aCancelledGenerationEndsItsSpanAsCancelled() throws Exception {
        Engine.Options o = Engine.Options.builder().tracer(tracers.get("test")).build();
        try (Engine engine = new Engine(fx.model, new CpuBackend(2), null, o)) {
            CountDownLatch first = new CountDownLatch(1);
            CountDownLatch cancelled = new CountDownLatch(1);
            CompletableFuture<Generator.Finish> f = engine.submit(new Engine.Request(fx.randomPrompt(new Random(3), 6),
                SamplingParams.greedy(400), null, "acme", (t, lp) -> {
                    first.countDown();
                    try {
                        cancelled.await(10, TimeUnit.SECONDS); // the client goes away while the engine holds its first token
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    return true;
                }));
            assertTrue(first.await(60, TimeUnit.SECONDS));
            assertTrue(f.cancel(false));
            cancelled.countDown();
        }
        List<SpanData> spans = engineSpans();
        assertEquals(1, spans.size());
        assertEquals("cancelled", spans.get(0).getAttributes().get(EngineSpans.FINISH));
        assertEquals(List.of("admitted", "first_token"), events(spans.get(0)));
    }
}
