package dev.loragateway.scheduler.workload;

import java.util.Locale;

/**
 * How requests spread over the workload's adapters: {@code distinct} (in turn: consecutive requests
 * use different adapters), {@code uniform} (at random, each equally), {@code zipf:ALPHA} (the adapter
 * of rank k with weight 1/k^ALPHA; ranks are a seeded shuffle of the adapters, so the popular ones
 * belong to different tenants), {@code identical} (all one adapter).
 */
public record Popularity(Kind kind, double alpha) {

    public enum Kind { DISTINCT, UNIFORM, ZIPF, IDENTICAL }

    public Popularity {
        if (kind == Kind.ZIPF && !(alpha > 0 && Double.isFinite(alpha)))
            throw new IllegalArgumentException("zipf needs ALPHA > 0, got " + alpha);
    }

    public static Popularity parse(String spec) {
        String[] p = spec.trim().toLowerCase(Locale.ROOT).split(":");
        return switch (p[0]) {
            case "distinct" -> new Popularity(Kind.DISTINCT, 0);
            case "uniform" -> new Popularity(Kind.UNIFORM, 0);
            case "identical" -> new Popularity(Kind.IDENTICAL, 0);
            case "zipf" -> {
                if (p.length != 2) throw new IllegalArgumentException("popularity '" + spec + "': zipf:ALPHA, e.g. zipf:1.5");
                try {
                    yield new Popularity(Kind.ZIPF, Double.parseDouble(p[1]));
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("popularity '" + spec + "': ALPHA is not a number");
                }
            }
            default -> throw new IllegalArgumentException("unknown popularity '" + spec + "' (distinct, uniform, zipf:ALPHA, identical)");
        };
    }

    public String spec() {
        return kind == Kind.ZIPF ? "zipf:" + alpha : kind.name().toLowerCase(Locale.ROOT);
    }
}
