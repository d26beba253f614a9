package dev.loragateway.gateway.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.prometheus.metrics.config.EscapingScheme;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.CounterSnapshot.CounterDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot.GaugeDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot.HistogramDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.InfoSnapshot;
import io.prometheus.metrics.model.snapshots.InfoSnapshot.InfoDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricMetadata;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The tenant-free view merges what it can sum and leaves out what it cannot (issue 12 item 11). */
class TenantFreeMetricsTest {
    private static String text(MetricSnapshots s) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrometheusTextFormatWriter.create().write(out, s, EscapingScheme.UNDERSCORE_ESCAPING);
        return out.toString(StandardCharsets.UTF_8);
    }

    private static HistogramDataPointSnapshot histogram(Labels labels, double sum, long... counts) {
        return HistogramDataPointSnapshot.builder().labels(labels)
            .classicHistogramBuckets(ClassicHistogramBuckets.of(new double[] {0.1, 1, Double.POSITIVE_INFINITY}, counts)).sum(sum).build();
    }

    @Test
    void seriesDifferingOnlyByTenantOrAdapterAreSummedAndOtherKindsCarryingThemAreLeftOut() throws Exception {
        MetricSnapshots all = new MetricSnapshots(
            new CounterSnapshot(new MetricMetadata("req"), List.of(
                CounterDataPointSnapshot.builder().labels(Labels.of("route", "/a", "tenant", "acme")).value(3).build(),
                CounterDataPointSnapshot.builder().labels(Labels.of("route", "/a", "tenant", "globex")).value(4).build(),
                CounterDataPointSnapshot.builder().labels(Labels.of("route", "/b", "tenant", "acme")).value(1).build())),
            new GaugeSnapshot(new MetricMetadata("resident"), List.of(
                GaugeDataPointSnapshot.builder().labels(Labels.of("adapter", "acme-bot")).value(2).build(),
                GaugeDataPointSnapshot.builder().labels(Labels.of("adapter", "globex-bot")).value(5).build())),
            new HistogramSnapshot(new MetricMetadata("ttft"), List.of(
                histogram(Labels.of("tenant", "acme"), 0.5, 1, 2, 0),
                histogram(Labels.of("tenant", "globex"), 2.0, 0, 1, 1))),
            new InfoSnapshot(new MetricMetadata("owner"), List.of(new InfoDataPointSnapshot(Labels.of("tenant", "acme")))),
            new GaugeSnapshot(new MetricMetadata("kv_blocks"), List.of(
                GaugeDataPointSnapshot.builder().labels(Labels.of("state", "free")).value(9).build())));
        String t = text(TenantFreeMetrics.of(all));
        for (String secret : List.of("acme", "globex", "tenant", "adapter")) {
            assertFalse(t.contains(secret), "'" + secret + "' in:\n" + t);
        }
        PrometheusText p = PrometheusText.parse(t);
        assertEquals(7, p.sum("req_total", Map.of("route", "/a")));
        assertEquals(1, p.sum("req_total", Map.of("route", "/b")));
        assertEquals(7, p.sum("resident", Map.of()));
        assertEquals(1, p.sum("ttft_bucket", Map.of("le", "0.1")));
        assertEquals(4, p.sum("ttft_bucket", Map.of("le", "1.0")));
        assertEquals(5, p.sum("ttft_count", Map.of()));
        assertEquals(2.5, p.sum("ttft_sum", Map.of()));
        assertFalse(p.has("owner_info"), "an info metric naming a tenant cannot be summed: left out");
        assertEquals(9, p.sum("kv_blocks", Map.of("state", "free")), "metrics without private labels pass unchanged");
        assertTrue(text(all).contains("tenant=\"acme\""), "the full view keeps them");
    }
}
