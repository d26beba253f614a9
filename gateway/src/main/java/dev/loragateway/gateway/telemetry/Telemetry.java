package dev.loragateway.gateway.telemetry;

import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.HostTier;
import dev.loragateway.gateway.http.RequestObserver;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.TracerProvider;
import io.opentelemetry.exporter.otlp.http.metrics.OtlpHttpMetricExporter;
import io.opentelemetry.exporter.otlp.http.trace.OtlpHttpSpanExporter;
import io.opentelemetry.exporter.prometheus.PrometheusMetricReader;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.SdkMeterProviderBuilder;
import io.opentelemetry.sdk.metrics.export.PeriodicMetricReader;
import io.opentelemetry.sdk.resources.Resource;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.SpanProcessor;
import io.opentelemetry.sdk.trace.export.BatchSpanProcessor;
import io.prometheus.metrics.config.EscapingScheme;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The server's OpenTelemetry SDK, configured once by {@code serve} (never the global singleton):
 *
 * <pre>
 * SdkMeterProvider ─┬─ PrometheusMetricReader ─┬─ {@link #scrape()} ──────────── GET /metrics (text 0.0.4), every label
 *                   │                          └─ {@link #scrapeTenantFree()} ── the same, no tenant or adapter label
 *                   │      + {@link VllmMetrics} (engine gauges under vLLM's names, added to each scrape when set)
 *                   └─ PeriodicMetricReader(OtlpHttpMetricExporter)      only with --otlp-endpoint
 * SdkTracerProvider ── BatchSpanProcessor(OtlpHttpSpanExporter)          only with --otlp-endpoint
 *                      (+ processors a test adds); with none, a no-op tracer
 * {@link #requests()} ── {@link HttpMetrics} (counters, latency histogram) + {@link AccessLog}
 * </pre>
 *
 * Without an OTLP endpoint nothing leaves the process: metrics are pulled from {@code /metrics}
 * and spans are not even recorded. Instruments of the engine (given {@link #meter()} and
 * {@link #tracer()}), of the adapter tiers ({@link #adapterTiers}) and of HTTP requests all live
 * on the one meter provider.
 */
public final class Telemetry implements AutoCloseable {
    /** The instrumentation scope of every meter and tracer of the server. */
    public static final String SCOPE = "lora-gateway";
    /** What {@link #scrape()} returns: Prometheus text format 0.0.4. */
    public static final String CONTENT_TYPE = PrometheusTextFormatWriter.CONTENT_TYPE;

    private final SdkMeterProvider meters;
    private final SdkTracerProvider traces; // null: no span processor, no-op tracer
    private final PrometheusMetricReader prometheus;
    private final PrometheusTextFormatWriter text = PrometheusTextFormatWriter.create();
    private final Meter meter;
    private final Tracer tracer;
    private final RequestObserver requests;
    private final String otlp;
    private volatile VllmMetrics vllm; // null: no vLLM-named gauges

    private Telemetry(Builder b) {
        Resource resource = Resource.getDefault()
            .merge(Resource.create(Attributes.of(AttributeKey.stringKey("service.name"), SCOPE)));
        this.otlp = b.otlpEndpoint;
        this.prometheus = PrometheusMetricReader.builder().setOtelScopeLabelsEnabled(false).build();
        SdkMeterProviderBuilder mb = SdkMeterProvider.builder().setResource(resource).registerMetricReader(prometheus);
        List<SpanProcessor> processors = new ArrayList<>(b.spanProcessors);
        if (otlp != null) {
            mb.registerMetricReader(PeriodicMetricReader.builder(
                OtlpHttpMetricExporter.builder().setEndpoint(signalUrl(otlp, "metrics")).build()).setInterval(b.otlpInterval).build());
            processors.add(BatchSpanProcessor.builder(OtlpHttpSpanExporter.builder().setEndpoint(signalUrl(otlp, "traces")).build())
                .build());
        }
        this.meters = mb.build();
        this.meter = meters.get(SCOPE);
        if (processors.isEmpty()) {
            this.traces = null;
            this.tracer = TracerProvider.noop().get(SCOPE);
        } else {
            var tb = SdkTracerProvider.builder().setResource(resource);
            processors.forEach(tb::addSpanProcessor);
            this.traces = tb.build();
            this.tracer = traces.get(SCOPE);
        }
        HttpMetrics http = new HttpMetrics(meter);
        AccessLog log = new AccessLog(b.accessLog);
        this.requests = r -> {
            http.finished(r);
            log.finished(r);
        };
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Where instruments go: give it to the engine ({@code Engine.Options.builder().meter}). */
    public Meter meter() {
        return meter;
    }

    /** Where spans go (a no-op tracer when nothing would receive them). */
    public Tracer tracer() {
        return tracer;
    }

    /** Told about every finished HTTP request: request metrics and the access log. */
    public RequestObserver requests() {
        return requests;
    }

    /** The OTLP base URL spans and metrics are pushed to, or null. */
    public String otlpEndpoint() {
        return otlp;
    }

    /** Observable instruments over both adapter tiers' stats; call once. */
    public void adapterTiers(HostTier<?> host, DeviceTier<?> device) {
        AdapterTierMetrics.register(meter, host, device);
    }

    /**
     * Cluster mode: {@code lora_gateway_cluster_nodes} (live members), {@code ..._nodes_busy} (running
     * or queueing work) and {@code ..._nodes_idle} (empty: consolidation left them nothing, so they
     * are safe to release, the autoscaling signal), read from {@code nodes} at each collection; and
     * {@code lora_gateway_cluster_requests_forwarded_total}.
     */
    public void cluster(java.util.function.Supplier<List<dev.loragateway.scheduler.NodeState>> nodes,
                        java.util.function.LongSupplier forwarded,
                        java.util.function.Supplier<java.util.Map<String, Long>> migrated,
                        java.util.function.IntSupplier waiting) {
        meter.gaugeBuilder("lora_gateway.cluster.requests_waiting").ofLongs()
            .setDescription("Requests waiting at this node until some node of the cluster has room").setUnit("{request}")
            .buildWithCallback(m -> m.record(waiting.getAsInt()));
        meter.counterBuilder("lora_gateway.cluster.requests_forwarded").setDescription("Requests this node placed on another node")
            .setUnit("{request}").buildWithCallback(m -> m.record(forwarded.getAsLong()));
        io.opentelemetry.api.common.AttributeKey<String> reason = io.opentelemetry.api.common.AttributeKey.stringKey("reason");
        meter.counterBuilder("lora_gateway.cluster.requests_migrated")
            .setDescription("Forwarded requests this node moved off their executing node (reason: node_lost, drain, kv)")
            .setUnit("{request}").buildWithCallback(m -> {
                java.util.Map<String, Long> now = migrated.get();
                for (String r : List.of("node_lost", "drain", "kv")) { // every reason from the start, so rates have a base
                    m.record(now.getOrDefault(r, 0L), io.opentelemetry.api.common.Attributes.of(reason, r));
                }
            });
        meter.gaugeBuilder("lora_gateway.cluster.nodes").ofLongs().setDescription("Live members of the cluster").setUnit("{node}")
            .buildWithCallback(m -> m.record(nodes.get().size()));
        meter.gaugeBuilder("lora_gateway.cluster.nodes_busy").ofLongs().setDescription("Members running or queueing work")
            .setUnit("{node}").buildWithCallback(m -> m.record(nodes.get().stream().filter(n -> !n.idle()).count()));
        meter.gaugeBuilder("lora_gateway.cluster.nodes_idle").ofLongs()
            .setDescription("Members with nothing running or queued: safe to release").setUnit("{node}")
            .buildWithCallback(m -> m.record(nodes.get().stream().filter(dev.loragateway.scheduler.NodeState::idle).count()));
    }

    /**
     * Also exposes the engine gauges under vLLM's names ({@link VllmMetrics}) on every scrape; the
     * tenant-free view shows them without adapter names. Call once.
     */
    public void vllm(VllmMetrics metrics) {
        this.vllm = metrics;
    }

    /** Every instrument's current value as Prometheus text ({@link #CONTENT_TYPE}), and the vLLM gauges. */
    public String scrape() {
        return write(withVllm(prometheus.collect(), true));
    }

    /**
     * {@link #scrape()} for callers who may not learn which tenants or adapters exist: series that
     * differ only by a tenant or adapter label merged into one ({@link TenantFreeMetrics}).
     */
    public String scrapeTenantFree() {
        return write(withVllm(TenantFreeMetrics.of(prometheus.collect()), false));
    }

    /** {@code snapshots} plus the vLLM gauges when set (a name in both would fail here: each name is written once). */
    private MetricSnapshots withVllm(MetricSnapshots snapshots, boolean adapterNames) {
        VllmMetrics v = vllm;
        if (v == null) {
            return snapshots;
        }
        List<MetricSnapshot> all = new ArrayList<>(snapshots.size() + 5);
        snapshots.forEach(all::add);
        all.addAll(v.snapshots(adapterNames));
        return new MetricSnapshots(all);
    }

    private String write(MetricSnapshots snapshots) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(16 << 10);
        try {
            text.write(out, snapshots, EscapingScheme.UNDERSCORE_ESCAPING);
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a byte array does not fail
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /** Pushes what is buffered (OTLP, test processors) and waits up to {@code timeout}. */
    public void flush(Duration timeout) {
        meters.forceFlush().join(timeout.toMillis(), TimeUnit.MILLISECONDS);
        if (traces != null) {
            traces.forceFlush().join(timeout.toMillis(), TimeUnit.MILLISECONDS);
        }
    }

    /** Flushes and stops the exporters. */
    @Override
    public void close() {
        if (traces != null) {
            traces.shutdown().join(10, TimeUnit.SECONDS);
        }
        meters.shutdown().join(10, TimeUnit.SECONDS);
    }

    /**
     * The OTLP/HTTP URL of one signal under a base URL, as {@code OTEL_EXPORTER_OTLP_ENDPOINT} is
     * read: {@code http://collector:4318} → {@code http://collector:4318/v1/traces}. A URL that
     * already ends in {@code /v1/traces} or {@code /v1/metrics} counts as its base.
     *
     * @throws IllegalArgumentException for anything but an absolute http(s) URL with a host
     */
    static String signalUrl(String base, String signal) {
        URI uri;
        try {
            uri = new URI(base);
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException("not a URL: '" + base + "' (" + e.getReason() + ")");
        }
        if ((!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) || uri.getHost() == null) {
            throw new IllegalArgumentException("want an http:// or https:// URL such as http://localhost:4318, got '" + base + "'");
        }
        String s = base;
        while (s.endsWith("/")) {
            s = s.substring(0, s.length() - 1);
        }
        for (String known : List.of("/v1/traces", "/v1/metrics")) {
            if (s.endsWith(known)) {
                s = s.substring(0, s.length() - known.length());
            }
        }
        return s + "/v1/" + signal;
    }

    /** How the SDK is set up; everything optional. */
    public static final class Builder {
        private String otlpEndpoint;
        private Duration otlpInterval = Duration.ofSeconds(30);
        private final List<SpanProcessor> spanProcessors = new ArrayList<>();
        private Consumer<String> accessLog = AccessLog.slf4j();

        private Builder() {
        }

        /**
         * Also push spans and metrics over OTLP/HTTP (protobuf) to this base URL (null: don't).
         *
         * @throws IllegalArgumentException when it is not an http(s) URL
         */
        public Builder otlpEndpoint(String url) {
            if (url != null) {
                signalUrl(url, "traces");
            }
            this.otlpEndpoint = url;
            return this;
        }

        /** How often metrics are pushed over OTLP (default 30 s). */
        public Builder otlpMetricInterval(Duration d) {
            this.otlpInterval = d;
            return this;
        }

        /** Another receiver of finished spans (tests: a processor over an in-memory exporter). */
        public Builder addSpanProcessor(SpanProcessor p) {
            spanProcessors.add(p);
            return this;
        }

        /** Where access-log lines go (default: SLF4J logger {@value AccessLog#LOGGER}, level INFO). */
        public Builder accessLog(Consumer<String> sink) {
            this.accessLog = sink;
            return this;
        }

        public Telemetry build() {
            return new Telemetry(this);
        }
    }
}
