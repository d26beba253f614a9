package dev.loragateway.gateway.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.opentelemetry.api.trace.Span;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/** {@code --otlp-endpoint}: spans and metrics pushed as OTLP/HTTP protobuf; without it, nothing is. */
class TelemetryOtlpTest {
    /** One POST a fake collector received. */
    record Post(String path, String contentType, int bytes) {
    }

    @Test
    void withAnEndpointSpansAndMetricsArePushedAsProtobuf() throws Exception {
        Vertx vertx = Vertx.vertx();
        List<Post> posts = new CopyOnWriteArrayList<>();
        try {
            HttpServer collector = vertx.createHttpServer().requestHandler(req -> req.body().onSuccess(body -> {
                posts.add(new Post(req.path(), req.getHeader("Content-Type"), body.length()));
                req.response().putHeader("Content-Type", "application/x-protobuf").end();
            })).listen(0, "127.0.0.1").await();
            try (Telemetry t = Telemetry.builder().otlpEndpoint("http://127.0.0.1:" + collector.actualPort() + "/")
                .accessLog(line -> { }).build()) {
                Span span = t.tracer().spanBuilder("probe").startSpan();
                assertTrue(span.isRecording());
                span.end();
                t.meter().counterBuilder("lora_gateway.probe").build().add(3);
                t.flush(Duration.ofSeconds(10));
                assertTrue(posts.stream().anyMatch(p -> p.path().equals("/v1/traces") && p.bytes() > 0), "spans pushed: " + posts);
                assertTrue(posts.stream().anyMatch(p -> p.path().equals("/v1/metrics") && p.bytes() > 0), "metrics pushed: " + posts);
                for (Post p : posts) {
                    assertEquals("application/x-protobuf", p.contentType(), p.toString());
                }
                assertTrue(t.scrape().contains("lora_gateway_probe_total 3.0"), "and still on /metrics");
            }
        } finally {
            vertx.close().await();
        }
    }

    @Test
    void withoutAnEndpointNothingIsRecordedOrPushed() {
        try (Telemetry t = Telemetry.builder().accessLog(line -> { }).build()) {
            assertEquals(null, t.otlpEndpoint());
            Span span = t.tracer().spanBuilder("probe").startSpan();
            assertFalse(span.isRecording(), "no span processor: a no-op tracer");
            span.end();
            t.meter().counterBuilder("lora_gateway.probe").build().add(1);
            assertTrue(t.scrape().contains("lora_gateway_probe_total 1.0"), "metrics are still pulled from /metrics");
        }
    }

    @Test
    void endpointUrlsAreBaseUrlsAsInTheOtelSpec() {
        assertEquals("http://c:4318/v1/traces", Telemetry.signalUrl("http://c:4318", "traces"));
        assertEquals("http://c:4318/v1/metrics", Telemetry.signalUrl("http://c:4318/", "metrics"));
        assertEquals("https://c/otlp/v1/metrics", Telemetry.signalUrl("https://c/otlp/v1/traces", "metrics"));
        for (String bad : List.of("localhost:4318", "ftp://c/", "http://", "not a url")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Telemetry.builder().otlpEndpoint(bad));
            assertTrue(e.getMessage().contains(bad), e.getMessage());
        }
    }
}
