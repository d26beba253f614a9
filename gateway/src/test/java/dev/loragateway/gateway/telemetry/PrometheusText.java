package dev.loragateway.gateway.telemetry;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A strict reader of Prometheus text format 0.0.4 for tests: every line is a {@code # HELP},
 * a {@code # TYPE} or a sample of a family whose TYPE came before; label values are unescaped;
 * histograms have cumulative buckets ending in {@code +Inf} equal to {@code _count}.
 */
final class PrometheusText {
    /** One sample line. */
    record Sample(String name, Map<String, String> labels, double value) {
        String label(String key) {
            return labels.get(key);
        }
    }

    private static final Pattern NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
    private static final Pattern LABEL = Pattern.compile("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\[\\\\\"n])*)\"");

    final List<Sample> samples = new ArrayList<>();
    final Map<String, String> types = new HashMap<>();

    private PrometheusText() {
    }

    static PrometheusText parse(String text) {
        PrometheusText p = new PrometheusText();
        if (!text.isEmpty() && !text.endsWith("\n")) {
            throw new AssertionError("the exposition does not end with a newline");
        }
        for (String line : text.split("\n")) {
            if (line.isEmpty()) {
                continue;
            }
            if (line.startsWith("# TYPE ")) {
                String[] f = line.split(" ");
                if (f.length != 4 || !NAME.matcher(f[2]).matches()
                    || !List.of("counter", "gauge", "histogram", "summary", "untyped").contains(f[3])) {
                    throw new AssertionError("bad TYPE line: " + line);
                }
                if (p.types.put(f[2], f[3]) != null) {
                    throw new AssertionError("TYPE of " + f[2] + " given twice");
                }
            } else if (line.startsWith("#")) {
                if (!line.startsWith("# HELP ")) {
                    throw new AssertionError("unknown comment: " + line);
                }
            } else {
                p.samples.add(p.sample(line));
            }
        }
        p.checkHistograms();
        return p;
    }

    private Sample sample(String line) {
        Matcher m = NAME.matcher(line);
        if (!m.lookingAt()) {
            throw new AssertionError("bad metric name: " + line);
        }
        String name = m.group();
        if (family(name) == null) {
            throw new AssertionError("sample before its # TYPE: " + line);
        }
        int at = m.end();
        Map<String, String> labels = new LinkedHashMap<>();
        if (at < line.length() && line.charAt(at) == '{') {
            at++;
            Matcher l = LABEL.matcher(line);
            while (line.charAt(at) != '}') {
                l.region(at, line.length());
                if (!l.lookingAt()) {
                    throw new AssertionError("bad label at " + at + ": " + line);
                }
                labels.put(l.group(1), l.group(2).replace("\\n", "\n").replace("\\\"", "\"").replace("\\\\", "\\"));
                at = l.end();
                if (line.charAt(at) == ',') {
                    at++;
                }
            }
            at++;
        }
        String[] rest = line.substring(at).trim().split(" ");
        if (rest.length < 1 || rest.length > 2 || !line.substring(at).startsWith(" ")) {
            throw new AssertionError("bad value: " + line);
        }
        return new Sample(name, labels, value(rest[0]));
    }

    private static double value(String v) {
        return switch (v) {
            case "+Inf" -> Double.POSITIVE_INFINITY;
            case "-Inf" -> Double.NEGATIVE_INFINITY;
            case "NaN" -> Double.NaN;
            default -> Double.parseDouble(v);
        };
    }

    /** The family a sample name belongs to (a histogram's _bucket/_sum/_count, a counter's _total). */
    String family(String sample) {
        if (types.containsKey(sample)) {
            return sample;
        }
        for (String suffix : List.of("_bucket", "_sum", "_count", "_total", "_created")) {
            if (sample.endsWith(suffix) && types.containsKey(sample.substring(0, sample.length() - suffix.length()))) {
                return sample.substring(0, sample.length() - suffix.length());
            }
        }
        return null;
    }

    private void checkHistograms() {
        for (var e : types.entrySet()) {
            if (!e.getValue().equals("histogram")) {
                continue;
            }
            String h = e.getKey();
            for (Sample count : all(h + "_count", s -> true)) {
                Map<String, String> series = count.labels();
                List<Sample> buckets = all(h + "_bucket", s -> withoutLe(s).equals(series));
                double prev = 0;
                for (Sample b : buckets) {
                    if (b.value() < prev) {
                        throw new AssertionError(h + " buckets are not cumulative: " + buckets);
                    }
                    prev = b.value();
                }
                if (buckets.isEmpty() || !"+Inf".equals(buckets.get(buckets.size() - 1).label("le"))
                    || buckets.get(buckets.size() - 1).value() != count.value()) {
                    throw new AssertionError(h + " has no +Inf bucket equal to its count " + count + ": " + buckets);
                }
                if (all(h + "_sum", s -> s.labels().equals(series)).size() != 1) {
                    throw new AssertionError(h + " has no _sum for " + series);
                }
            }
        }
    }

    private static Map<String, String> withoutLe(Sample s) {
        Map<String, String> m = new LinkedHashMap<>(s.labels());
        m.remove("le");
        return m;
    }

    List<Sample> all(String name, Predicate<Sample> where) {
        return samples.stream().filter(s -> s.name().equals(name) && where.test(s)).toList();
    }

    /** The sum of every sample called {@code name} whose labels include {@code labels}. */
    double sum(String name, Map<String, String> labels) {
        return all(name, s -> s.labels().entrySet().containsAll(labels.entrySet())).stream().mapToDouble(Sample::value).sum();
    }

    boolean has(String name) {
        return samples.stream().anyMatch(s -> s.name().equals(name));
    }

    /** The bucket boundaries (without +Inf) of histogram {@code h}'s first series. */
    List<Double> boundaries(String h) {
        List<Sample> buckets = all(h + "_bucket", s -> true);
        if (buckets.isEmpty()) {
            throw new AssertionError("no " + h + "_bucket samples");
        }
        Map<String, String> first = withoutLe(buckets.get(0));
        List<Double> le = new ArrayList<>();
        for (Sample b : buckets) {
            if (withoutLe(b).equals(first) && !"+Inf".equals(b.label("le"))) {
                le.add(Double.parseDouble(b.label("le")));
            }
        }
        return le;
    }
}
