package dev.loragateway.scheduler.workload;

import java.util.Locale;
import java.util.SplittableRandom;

/**
 * When requests arrive, in an open model (arrivals do not wait for answers): {@code constant}
 * (evenly spaced at the rate), {@code poisson} (exponential gaps with the rate's mean), or
 * {@code ramp:FROM:SECONDS} (the rate rises linearly from FROM to the workload's rate over SECONDS,
 * evenly spaced, then stays).
 */
public sealed interface Arrivals {

    /** The arrival time (seconds from the start) of the request after one at {@code last}. */
    double next(double last, double rate, SplittableRandom rnd, long index);

    String spec();

    record Constant() implements Arrivals {
        public double next(double last, double rate, SplittableRandom rnd, long index) {
            return index / rate;
        }
        public String spec() { return "constant"; }
    }

    record Poisson() implements Arrivals {
        public double next(double last, double rate, SplittableRandom rnd, long index) {
            return last - Math.log(1.0 - rnd.nextDouble()) / rate;
        }
        public String spec() { return "poisson"; }
    }

    /** Rate from {@code from} to the workload's rate over {@code seconds}: the i-th arrival at Λ⁻¹(i). */
    record Ramp(double from, double seconds) implements Arrivals {
        public Ramp {
            if (!(from > 0) || !(seconds > 0) || !Double.isFinite(from) || !Double.isFinite(seconds))
                throw new IllegalArgumentException("ramp needs FROM > 0 and SECONDS > 0, got " + from + ":" + seconds);
        }
        public double next(double last, double rate, SplittableRandom rnd, long index) {
            double slope = (rate - from) / seconds;
            double rampCount = from * seconds + slope * seconds * seconds / 2;
            if (index >= rampCount) return seconds + (index - rampCount) / rate;
            if (Math.abs(slope) < 1e-12) return index / from;
            // from·t + slope·t²/2 = index
            return (-from + Math.sqrt(from * from + 2 * slope * index)) / slope;
        }
        public String spec() { return String.format(Locale.ROOT, "ramp:%s:%s", from, seconds); }
    }

    static Arrivals parse(String spec) {
        String[] p = spec.trim().toLowerCase(Locale.ROOT).split(":");
        try {
            return switch (p[0]) {
                case "constant" -> new Constant();
                case "poisson" -> new Poisson();
                case "ramp" -> {
                    if (p.length != 3) throw new IllegalArgumentException("arrivals '" + spec + "': ramp:FROM:SECONDS");
                    yield new Ramp(Double.parseDouble(p[1]), Double.parseDouble(p[2]));
                }
                default -> throw new IllegalArgumentException("unknown arrivals '" + spec + "' (constant, poisson, ramp:FROM:SECONDS)");
            };
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("arrivals '" + spec + "': not a number: " + e.getMessage());
        }
    }
}
