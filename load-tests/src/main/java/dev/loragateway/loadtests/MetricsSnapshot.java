package dev.loragateway.loadtests;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The gateway's {@code GET /metrics} (Prometheus text) at one moment, summed over the series of each
 * metric and over every node scraped. What Gatling cannot see from outside (the engine's own time to
 * first token and per output token, its running batch, adapter loads into each tier) is the
 * difference of two snapshots, taken before and after a run ({@link #minus}).
 *
 * <p>Series are summed across tenants (and nodes), which is also what the tenant-free view of an
 * anonymous caller shows, so the numbers are the same with auth on or off.
 */
public final class MetricsSnapshot {
    static final String TTFT = "lora_gateway_engine_time_to_first_token_seconds";
    static final String TPOT = "lora_gateway_engine_time_per_output_token_seconds";
    static final String BATCH = "lora_gateway_engine_batch_size";
    static final String LOADS = "lora_gateway_adapter_cache_loads_total";
    static final String TOKENS = "lora_gateway_tokens_total";

    /** metric name (with {@code _bucket}/{@code _sum}/{@code _count}) → label set without {@code le} → le → value. */
    private final Map<String, Double> values;

    private MetricsSnapshot(Map<String, Double> values) {
        this.values = values;
    }

    /** Scrapes {@code /metrics} of every URL (the nodes of a cluster) and adds them up. */
    public static MetricsSnapshot scrape(HttpClient http, List<URI> metricsUrls) throws IOException, InterruptedException {
        Map<String, Double> sum = new HashMap<>();
        for (URI u : metricsUrls) {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(u).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) throw new IOException("GET " + u + " answered " + r.statusCode());
            parse(r.body()).values.forEach((k, v) -> sum.merge(k, v, Double::sum));
        }
        return new MetricsSnapshot(sum);
    }

    /**
     * Prometheus text → a snapshot keyed {@code name|selected labels}: histogram buckets keep only
     * {@code le}, counters keep {@code tier} and {@code type} (what the capacity page splits by),
     * everything else is summed under its bare name.
     */
    static MetricsSnapshot parse(String text) {
        Map<String, Double> m = new HashMap<>();
        for (String line : text.split("\n")) {
            if (line.isEmpty() || line.startsWith("#")) continue;
            int brace = line.indexOf('{');
            int space = line.lastIndexOf(' ');
            if (space < 0) continue;
            String name = brace >= 0 && brace < space ? line.substring(0, brace) : line.substring(0, space).trim();
            String labels = brace >= 0 && brace < space ? line.substring(brace + 1, line.lastIndexOf('}', space)) : "";
            double v;
            try {
                v = Double.parseDouble(line.substring(space + 1).trim());
            } catch (NumberFormatException e) {
                continue;
            }
            StringBuilder key = new StringBuilder(name);
            for (String keep : new String[] {"le", "tier", "type"}) {
                String val = label(labels, keep);
                if (val != null) key.append('|').append(keep).append('=').append(val);
            }
            m.merge(key.toString(), v, Double::sum);
        }
        return new MetricsSnapshot(m);
    }

    private static String label(String labels, String name) {
        int i = labels.indexOf(name + "=\"");
        while (i > 0 && labels.charAt(i - 1) != ',') i = labels.indexOf(name + "=\"", i + 1);
        if (i < 0) return null;
        int start = i + name.length() + 2;
        return labels.substring(start, labels.indexOf('"', start));
    }

    /** This snapshot less an earlier one: what happened in between. */
    public MetricsSnapshot minus(MetricsSnapshot before) {
        Map<String, Double> d = new HashMap<>(values);
        before.values.forEach((k, v) -> d.merge(k, -v, Double::sum));
        return new MetricsSnapshot(d);
    }

    /** A value by key ({@code name} or {@code name|tier=device}...), 0 when absent. */
    public double value(String key) {
        return values.getOrDefault(key, 0.0);
    }

    /** Observations in a histogram. */
    public double count(String histogram) {
        return value(histogram + "_count");
    }

    /** Mean of a histogram's observations, NaN without any. */
    public double mean(String histogram) {
        double c = count(histogram);
        return c > 0 ? value(histogram + "_sum") / c : Double.NaN;
    }

    /**
     * The {@code q} quantile of a histogram, interpolated linearly inside its bucket (as Prometheus'
     * {@code histogram_quantile}); NaN without observations. In the last finite bucket's range or
     * beyond it, the answer is that bucket's upper bound.
     */
    public double quantile(String histogram, double q) {
        TreeMap<Double, Double> buckets = new TreeMap<>();
        String prefix = histogram + "_bucket|le=";
        values.forEach((k, v) -> {
            if (k.startsWith(prefix)) {
                String le = k.substring(prefix.length());
                buckets.put(le.equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(le), v);
            }
        });
        if (buckets.isEmpty()) return Double.NaN;
        double total = buckets.lastEntry().getValue();
        if (total <= 0) return Double.NaN;
        double rank = q * total;
        double lowerBound = 0;
        double lowerCount = 0;
        for (Map.Entry<Double, Double> b : buckets.entrySet()) {
            if (b.getValue() >= rank) {
                if (b.getKey().isInfinite()) return lowerBound;
                double inBucket = b.getValue() - lowerCount;
                return inBucket <= 0 ? b.getKey() : lowerBound + (b.getKey() - lowerBound) * (rank - lowerCount) / inBucket;
            }
            lowerBound = b.getKey();
            lowerCount = b.getValue();
        }
        return lowerBound;
    }
}
