package dev.loragateway.loadtests;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One rate of the capacity search, measured: what Gatling's requests saw (client side) and what the
 * gateway's {@code /metrics} counted in the same window (server side).
 *
 * <p>The SLO is judged on the client-side p99s (they include HTTP and the wait in the queue, what a
 * caller gets) of streamed requests; when a run streams nothing they fall back to the server's
 * histograms ({@link MetricsSnapshot}: bucket-interpolated, so coarse).
 *
 * @param offeredRate       requests/s the trace offered
 * @param achievedRate      successful requests/s over the run (first send to last answer)
 * @param outputTokensPerSecond output tokens of successful requests over the same window
 * @param ttftP99           seconds (client side, streamed; else the server's)
 * @param tpotP99           seconds (client side, streamed; else the server's)
 * @param serverTtftP99     seconds, from the gateway's histogram delta (NaN if not scraped)
 * @param serverTpotP99     seconds, idem
 * @param meanBatch         mean running batch per engine step (the batch-size histogram's delta)
 * @param deviceLoads       adapter loads into the device tier (slots) during the run
 * @param hostLoads         adapter loads into the host tier during the run
 * @param report            the run's Gatling report folder (null if Gatling made none)
 */
public record StepResult(double offeredRate, int requests, int errors, double achievedRate,
                         double outputTokensPerSecond, double ttftP50, double ttftP99, double tpotP99, double e2eP99,
                         double serverTtftP99, double serverTpotP99, double meanBatch, double deviceLoads,
                         double hostLoads, Path report) {

    public double errorRate() {
        return requests == 0 ? 1 : (double) errors / requests;
    }

    /** A step from a run's samples and the /metrics delta over it ({@code metrics} null: not scraped). */
    static StepResult of(double offeredRate, List<RequestSample> samples, MetricsSnapshot metrics, Path report) {
        int errors = 0;
        long first = Long.MAX_VALUE;
        double last = Long.MIN_VALUE;
        long tokens = 0;
        int okCount = 0;
        List<Double> ttft = new ArrayList<>();
        List<Double> tpot = new ArrayList<>();
        List<Double> e2e = new ArrayList<>();
        for (RequestSample s : samples) {
            first = Math.min(first, s.startMs());
            last = Math.max(last, s.startMs() + s.e2eMs());
            if (!s.ok()) {
                errors++;
                continue;
            }
            okCount++;
            tokens += s.outputTokens();
            e2e.add(s.e2eMs() / 1000);
            if (!Double.isNaN(s.ttftMs())) ttft.add(s.ttftMs() / 1000);
            if (!Double.isNaN(s.tpotMs())) tpot.add(s.tpotMs() / 1000);
        }
        double window = samples.isEmpty() ? 0 : Math.max(1e-3, (last - first) / 1000);
        double sTtft = metrics == null ? Double.NaN : metrics.quantile(MetricsSnapshot.TTFT, 0.99);
        double sTpot = metrics == null ? Double.NaN : metrics.quantile(MetricsSnapshot.TPOT, 0.99);
        return new StepResult(offeredRate, samples.size(), errors, window == 0 ? 0 : okCount / window,
            window == 0 ? 0 : tokens / window,
            percentile(ttft, 0.50), ttft.isEmpty() ? sTtft : percentile(ttft, 0.99),
            tpot.isEmpty() ? sTpot : percentile(tpot, 0.99), percentile(e2e, 0.99), sTtft, sTpot,
            metrics == null ? Double.NaN : metrics.mean(MetricsSnapshot.BATCH),
            metrics == null ? Double.NaN : metrics.value(MetricsSnapshot.LOADS + "|tier=device"),
            metrics == null ? Double.NaN : metrics.value(MetricsSnapshot.LOADS + "|tier=host"), report);
    }

    /** Nearest-rank percentile (as {@code bench serve}); NaN for no values. */
    static double percentile(List<Double> values, double q) {
        if (values.isEmpty()) return Double.NaN;
        double[] v = values.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(v);
        int rank = (int) Math.ceil(q * v.length);
        return v[Math.max(0, Math.min(v.length - 1, rank - 1))];
    }
}
