package dev.loragateway.loadtests;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The service levels a rate must meet to count as sustainable.
 *
 * @param ttftP99Seconds  p99 time to first token
 * @param tpotP99Seconds  p99 time per output token
 * @param maxErrorRate    failed requests over all requests (0.01: 1 %)
 */
public record Slo(double ttftP99Seconds, double tpotP99Seconds, double maxErrorRate) {
    public Slo {
        if (!(ttftP99Seconds > 0)) throw new IllegalArgumentException("--slo-ttft-p99 must be > 0 seconds, got " + ttftP99Seconds);
        if (!(tpotP99Seconds > 0)) throw new IllegalArgumentException("--slo-tpot-p99 must be > 0 seconds, got " + tpotP99Seconds);
        if (!(maxErrorRate >= 0 && maxErrorRate < 1)) throw new IllegalArgumentException("--max-error-rate must be in [0, 1), got " + maxErrorRate);
    }

    /** What a step misses, in words ("p99 TTFT 1.20 s > 1.00 s"); empty when it meets every level. */
    public List<String> misses(StepResult s) {
        List<String> out = new ArrayList<>();
        if (s.requests() == 0) out.add("no request finished");
        if (s.errorRate() > maxErrorRate) out.add(String.format(Locale.ROOT, "errors %.1f %% > %.1f %%", 100 * s.errorRate(), 100 * maxErrorRate));
        if (!(s.ttftP99() <= ttftP99Seconds)) out.add(String.format(Locale.ROOT, "p99 TTFT %.3f s > %.3f s", s.ttftP99(), ttftP99Seconds));
        if (!(s.tpotP99() <= tpotP99Seconds)) out.add(String.format(Locale.ROOT, "p99 TPOT %.4f s > %.4f s", s.tpotP99(), tpotP99Seconds));
        return out;
    }
}
