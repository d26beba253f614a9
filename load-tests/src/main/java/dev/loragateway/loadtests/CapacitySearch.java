package dev.loragateway.loadtests;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * The highest arrival rate a gateway sustains under an {@link Slo}: one Gatling run per rate, the rate
 * doubled from {@code startRate} while the SLO holds, then bisected between the highest rate that held
 * and the lowest that did not, until they are within {@code precision} of each other or
 * {@code maxSteps} runs are spent. Each run offers the same workload (same seed: the same tenants,
 * adapters and lengths, at a faster clock).
 *
 * <p>Doubling then bisecting finds a knee between 1 and 1,000 requests/s in about 10 + 4 runs
 * where a fixed ramp would need many plateaus; a run is short (seconds), so the search fits in minutes.
 *
 * <p>Reusable: {@link #run} takes a {@link LoadSpec} (workload options in) and gives a {@link Result}
 * (every step's numbers out); {@link #search} is the rate logic alone, over any way to measure a rate.
 */
public final class CapacitySearch {

    /**
     * How the search steps.
     *
     * @param startRate     first rate, requests/s
     * @param maxRate       never offer more than this (requests/s)
     * @param stepSeconds   how long each rate is offered
     * @param maxSteps      most measured runs
     * @param precision     stop when the lowest failing rate is within this fraction above the best one
     * @param warmupSeconds an unmeasured first run at {@code startRate} (JIT of both sides); 0: none
     */
    public record Settings(double startRate, double maxRate, double stepSeconds, int maxSteps, double precision,
                           double warmupSeconds) {
        public Settings {
            if (!(startRate > 0)) throw new IllegalArgumentException("--start-rate must be > 0, got " + startRate);
            if (!(maxRate >= startRate)) throw new IllegalArgumentException("--max-rate must be >= --start-rate (" + startRate + "), got " + maxRate);
            if (!(stepSeconds > 0)) throw new IllegalArgumentException("--step-seconds must be > 0, got " + stepSeconds);
            if (maxSteps < 1) throw new IllegalArgumentException("--max-steps must be at least 1, got " + maxSteps);
            if (!(precision > 0)) throw new IllegalArgumentException("--precision must be > 0, got " + precision);
            if (!(warmupSeconds >= 0)) throw new IllegalArgumentException("--warmup-seconds must be >= 0, got " + warmupSeconds);
        }
    }

    /**
     * A finished search.
     *
     * @param steps every measured rate, in the order run
     * @param best  the highest rate that met the SLO, or null when none did
     */
    public record Result(LoadSpec spec, Slo slo, Settings settings, List<StepResult> steps, StepResult best) {
        /** The sustainable rate in requests/s (0 when even the lowest rate missed the SLO). */
        public double sustainableRate() {
            return best == null ? 0 : best.offeredRate();
        }

        /** The steps by offered rate. */
        public List<StepResult> byRate() {
            List<StepResult> s = new ArrayList<>(steps);
            s.sort(Comparator.comparingDouble(StepResult::offeredRate));
            return s;
        }
    }

    /** Measures one rate. */
    @FunctionalInterface
    public interface Step {
        StepResult run(double rate) throws Exception;
    }

    private CapacitySearch() {
    }

    /**
     * Runs the search against a gateway with Gatling, reports under {@code outDir}, progress to
     * {@code log}; {@code quiet}: Gatling's own console output goes to files beside its reports.
     */
    public static Result run(LoadSpec spec, Slo slo, Settings settings, List<URI> metricsUrls, Path outDir,
                             Consumer<String> log, boolean quiet) throws Exception {
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        Path gatling = outDir.resolve("gatling");
        if (settings.warmupSeconds() > 0) {
            log.accept(String.format(Locale.ROOT, "warm-up: %.1f requests/s for %.0f s (not measured)", settings.startRate(), settings.warmupSeconds()));
            GatlingRun.run(spec.withRate(settings.startRate()).withSeconds(settings.warmupSeconds()), gatling, "warmup", quiet);
        }
        int[] n = {0};
        return search(spec, slo, settings, rate -> {
            LoadSpec s = spec.withRate(rate).withSeconds(settings.stepSeconds());
            MetricsSnapshot before = scrape(http, metricsUrls, log);
            GatlingRun.Result run = GatlingRun.run(s, gatling, String.format(Locale.ROOT, "step%02d-%.2frps", ++n[0], rate), quiet);
            MetricsSnapshot after = before == null ? null : scrape(http, metricsUrls, log);
            StepResult r = StepResult.of(rate, RequestSample.read(run.samples()), after == null ? null : after.minus(before), run.report());
            List<String> misses = slo.misses(r);
            log.accept(String.format(Locale.ROOT, "rate %8.2f/s: %5d requests, %3d failed, %8.1f output tok/s, p99 TTFT %.3f s, p99 TPOT %.4f s, batch %.1f, adapter loads %.0f: %s",
                rate, r.requests(), r.errors(), r.outputTokensPerSecond(), r.ttftP99(), r.tpotP99(), r.meanBatch(), r.deviceLoads(),
                misses.isEmpty() ? "meets the SLO" : "misses (" + String.join(", ", misses) + ")"));
            return r;
        });
    }

    private static MetricsSnapshot scrape(HttpClient http, List<URI> urls, Consumer<String> log) {
        if (urls.isEmpty()) return null;
        try {
            return MetricsSnapshot.scrape(http, urls);
        } catch (IOException e) {
            log.accept("cannot read /metrics (" + e.getMessage() + "): server-side numbers left out");
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }

    /** The rate logic (see the class comment) over any {@link Step}. */
    public static Result search(LoadSpec spec, Slo slo, Settings settings, Step step) throws Exception {
        List<StepResult> steps = new ArrayList<>();
        StepResult best = null;
        StepResult lowestMiss = null;
        double rate = settings.startRate();
        double floor = settings.startRate() / 64;
        while (steps.size() < settings.maxSteps()) {
            StepResult r = step.run(rate);
            steps.add(r);
            if (slo.misses(r).isEmpty()) {
                if (best == null || r.offeredRate() > best.offeredRate()) best = r;
            } else if (lowestMiss == null || r.offeredRate() < lowestMiss.offeredRate()) {
                lowestMiss = r;
            }
            double next;
            if (lowestMiss == null) {
                if (rate >= settings.maxRate()) break;
                next = Math.min(settings.maxRate(), rate * 2);
            } else if (best == null) {
                next = rate / 2;
                if (next < floor) break;
            } else {
                if (lowestMiss.offeredRate() <= best.offeredRate() * (1 + settings.precision())) break;
                next = (best.offeredRate() + lowestMiss.offeredRate()) / 2;
            }
            rate = next;
        }
        return new Result(spec, slo, settings, List.copyOf(steps), best);
    }
}
