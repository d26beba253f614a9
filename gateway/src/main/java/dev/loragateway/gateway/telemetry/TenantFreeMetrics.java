package dev.loragateway.gateway.telemetry;

import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.CounterSnapshot.CounterDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.DataPointSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot.GaugeDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot.HistogramDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The metrics an anonymous caller may see: no series names a tenant or an adapter. Every series
 * with a {@link #PRIVATE} label is merged with the others that differ only there, into one series
 * without it: counters and gauges summed, classic histograms bucket by bucket (and their sums), so
 * every total stays what the labelled metrics add up to. A metric of any other kind (info, summary,
 * state set, a native histogram) that carries such a label is left out whole rather than shown:
 * this view fails closed.
 *
 * <pre>
 * lora_gateway_tokens_total{tenant="acme",type="prompt"} 12      lora_gateway_tokens_total{type="prompt"} 19
 * lora_gateway_tokens_total{tenant="globex",type="prompt"} 7  →
 * </pre>
 */
final class TenantFreeMetrics {
    /** Label names (as Prometheus writes them) that name a tenant or an adapter. */
    static final Set<String> PRIVATE = Set.of("tenant", "adapter", "lora_gateway_tenant", "lora_gateway_adapter");

    private TenantFreeMetrics() {
    }

    static MetricSnapshots of(MetricSnapshots all) {
        List<MetricSnapshot> out = new ArrayList<>();
        for (MetricSnapshot m : all) {
            if (m.getDataPoints().stream().noneMatch(p -> hasPrivate(p.getLabels()))) {
                out.add(m);
            } else if (m instanceof CounterSnapshot c) {
                out.add(new CounterSnapshot(c.getMetadata(), counters(c.getDataPoints())));
            } else if (m instanceof GaugeSnapshot g) {
                out.add(new GaugeSnapshot(g.getMetadata(), gauges(g.getDataPoints())));
            } else if (m instanceof HistogramSnapshot h) {
                List<HistogramDataPointSnapshot> merged = histograms(h.getDataPoints());
                if (merged != null) {
                    out.add(new HistogramSnapshot(h.isGaugeHistogram(), h.getMetadata(), merged));
                }
            } // else: left out
        }
        return new MetricSnapshots(out);
    }

    private static boolean hasPrivate(Labels labels) {
        for (int i = 0; i < labels.size(); i++) {
            if (PRIVATE.contains(labels.getPrometheusName(i))) {
                return true;
            }
        }
        return false;
    }

    /** {@code labels} without the private ones. */
    static Labels shared(Labels labels) {
        List<String> names = new ArrayList<>();
        List<String> values = new ArrayList<>();
        for (int i = 0; i < labels.size(); i++) {
            if (!PRIVATE.contains(labels.getPrometheusName(i))) {
                names.add(labels.getName(i));
                values.add(labels.getValue(i));
            }
        }
        return Labels.of(names, values);
    }

    /** Data points grouped by their shared labels, in first-seen order. */
    private static <P extends DataPointSnapshot> Map<Labels, List<P>> grouped(List<P> points) {
        Map<Labels, List<P>> groups = new LinkedHashMap<>();
        for (P p : points) {
            groups.computeIfAbsent(shared(p.getLabels()), k -> new ArrayList<>()).add(p);
        }
        return groups;
    }

    private static List<CounterDataPointSnapshot> counters(List<CounterDataPointSnapshot> points) {
        List<CounterDataPointSnapshot> out = new ArrayList<>();
        grouped(points).forEach((labels, group) -> {
            var b = CounterDataPointSnapshot.builder().labels(labels).value(group.stream().mapToDouble(CounterDataPointSnapshot::getValue).sum());
            if (group.stream().allMatch(DataPointSnapshot::hasCreatedTimestamp)) {
                b.createdTimestampMillis(group.stream().mapToLong(DataPointSnapshot::getCreatedTimestampMillis).min().orElseThrow());
            }
            out.add(b.build());
        });
        return out;
    }

    private static List<GaugeDataPointSnapshot> gauges(List<GaugeDataPointSnapshot> points) {
        List<GaugeDataPointSnapshot> out = new ArrayList<>();
        grouped(points).forEach((labels, group) -> out.add(GaugeDataPointSnapshot.builder().labels(labels)
            .value(group.stream().mapToDouble(GaugeDataPointSnapshot::getValue).sum()).build()));
        return out;
    }

    /** Merged classic histograms; null when some point is not a classic histogram of the same buckets. */
    private static List<HistogramDataPointSnapshot> histograms(List<HistogramDataPointSnapshot> points) {
        List<HistogramDataPointSnapshot> out = new ArrayList<>();
        for (Map.Entry<Labels, List<HistogramDataPointSnapshot>> e : grouped(points).entrySet()) {
            List<HistogramDataPointSnapshot> group = e.getValue();
            ClassicHistogramBuckets first = group.get(0).getClassicBuckets();
            double[] bounds = new double[first.size()];
            long[] counts = new long[first.size()];
            for (int i = 0; i < bounds.length; i++) {
                bounds[i] = first.getUpperBound(i);
            }
            double sum = 0;
            boolean summed = true;
            for (HistogramDataPointSnapshot p : group) {
                ClassicHistogramBuckets b = p.getClassicBuckets();
                if (p.hasNativeHistogramData() || !p.hasClassicHistogramData() || b.size() != bounds.length) {
                    return null;
                }
                for (int i = 0; i < bounds.length; i++) {
                    if (Double.compare(b.getUpperBound(i), bounds[i]) != 0) {
                        return null;
                    }
                    counts[i] += b.getCount(i);
                }
                summed &= p.hasSum();
                sum += p.hasSum() ? p.getSum() : 0;
            }
            var b = HistogramDataPointSnapshot.builder().labels(e.getKey())
                .classicHistogramBuckets(ClassicHistogramBuckets.of(Arrays.copyOf(bounds, bounds.length), counts));
            if (summed) {
                b.sum(sum);
            }
            out.add(b.build());
        }
        return out;
    }
}
