package dev.loragateway.scheduler.workload;

import java.util.Locale;
import java.util.SplittableRandom;

/**
 * A distribution of token counts (prompt or output lengths): {@code fixed:N}, {@code uniform:MIN:MAX},
 * {@code lognormal:MEAN:SIGMA[:MAX]} (a log-normal with that mean, clipped to [1, MAX]), or
 * {@code sharegpt-prompt} / {@code sharegpt-output}: log-normals with the means vLLM's paper reports
 * for ShareGPT (161 prompt and 338 output tokens; sigma 1.0 is our choice, the paper gives no fit),
 * which take an optional {@code :MAX} too.
 */
public sealed interface Lengths {

    /** One draw, at least 1. */
    int sample(SplittableRandom rnd);

    /** The spec this was parsed from (round-trips through {@link #parse}). */
    String spec();

    /** The distribution's mean before clipping. */
    double mean();

    record Fixed(int n) implements Lengths {
        public Fixed {
            if (n < 1) throw new IllegalArgumentException("fixed length must be at least 1, got " + n);
        }
        public int sample(SplittableRandom rnd) { return n; }
        public String spec() { return "fixed:" + n; }
        public double mean() { return n; }
    }

    record Uniform(int min, int max) implements Lengths {
        public Uniform {
            if (min < 1 || max < min) throw new IllegalArgumentException("uniform lengths need 1 <= MIN <= MAX, got " + min + ":" + max);
        }
        public int sample(SplittableRandom rnd) { return min + rnd.nextInt(max - min + 1); }
        public String spec() { return "uniform:" + min + ":" + max; }
        public double mean() { return (min + max) / 2.0; }
    }

    /** Log-normal with mean {@code mean} and log-space sigma {@code sigma}, clipped to [1, max]. */
    record LogNormal(double mean, double sigma, int max) implements Lengths {
        public LogNormal {
            if (!(mean >= 1) || !(sigma >= 0) || !Double.isFinite(mean) || !Double.isFinite(sigma) || max < 1)
                throw new IllegalArgumentException("lognormal needs MEAN >= 1, SIGMA >= 0 and MAX >= 1, got " + mean + ":" + sigma + ":" + max);
        }
        public int sample(SplittableRandom rnd) {
            double mu = Math.log(mean) - sigma * sigma / 2;
            double z = gaussian(rnd);
            long v = Math.round(Math.exp(mu + sigma * z));
            return (int) Math.max(1, Math.min(max, v));
        }
        public String spec() {
            return String.format(Locale.ROOT, "lognormal:%s:%s:%d", trim(mean), trim(sigma), max);
        }
    }

    /**
     * Parses a spec (see the type's comment).
     *
     * @throws IllegalArgumentException naming the spec and what is wrong with it
     */
    static Lengths parse(String spec) {
        String[] p = spec.trim().toLowerCase(Locale.ROOT).split(":");
        try {
            return switch (p[0]) {
                case "fixed" -> {
                    need(p, 2, 2, spec);
                    yield new Fixed(Integer.parseInt(p[1]));
                }
                case "uniform" -> {
                    need(p, 3, 3, spec);
                    yield new Uniform(Integer.parseInt(p[1]), Integer.parseInt(p[2]));
                }
                case "lognormal" -> {
                    need(p, 3, 4, spec);
                    yield new LogNormal(Double.parseDouble(p[1]), Double.parseDouble(p[2]),
                        p.length > 3 ? Integer.parseInt(p[3]) : Integer.MAX_VALUE);
                }
                case "sharegpt-prompt" -> {
                    need(p, 1, 2, spec);
                    yield new LogNormal(161, 1.0, p.length > 1 ? Integer.parseInt(p[1]) : Integer.MAX_VALUE);
                }
                case "sharegpt-output" -> {
                    need(p, 1, 2, spec);
                    yield new LogNormal(338, 1.0, p.length > 1 ? Integer.parseInt(p[1]) : Integer.MAX_VALUE);
                }
                default -> throw new IllegalArgumentException("unknown length distribution '" + spec
                    + "' (fixed:N, uniform:MIN:MAX, lognormal:MEAN:SIGMA[:MAX], sharegpt-prompt[:MAX], sharegpt-output[:MAX])");
            };
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("length distribution '" + spec + "': not a number: " + e.getMessage());
        }
    }

    private static void need(String[] p, int min, int max, String spec) {
        if (p.length < min || p.length > max)
            throw new IllegalArgumentException("length distribution '" + spec + "' has " + (p.length - 1) + " parameters");
    }

    private static String trim(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : Double.toString(v);
    }

    /** A standard normal draw (Box-Muller; one of the pair). */
    static double gaussian(SplittableRandom rnd) {
        double u1 = 1.0 - rnd.nextDouble();
        double u2 = rnd.nextDouble();
        return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
}
