package dev.loragateway.loadtests;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * The capacity page of a {@link CapacitySearch.Result}: {@code capacity.md} (with {@code capacity.svg}
 * beside it) and {@code capacity.html} (the same picture inline), for people who look at a page
 * instead of logs. The picture has four panels against the offered rate (log scale: the search
 * doubles it): achieved requests/s, output tokens/s, p99 time to first token and p99 time per output
 * token, each SLO drawn as a red line and the knee (the highest rate meeting the SLO) as a green one.
 *
 * <p>The section {@value #NODES_SECTION} is a hook: the cluster simulator fills it with the nodes a
 * target rate needs; until then it says it is empty.
 */
public final class CapacityReport {
    public static final String NODES_SECTION = "Nodes needed for a target rate";
    /** Marks where {@link #NODES_SECTION}'s content goes, in both pages. */
    public static final String NODES_HOOK = "<!-- hook:nodes-for-target-rate -->";

    private static final int PANEL_W = 380;
    private static final int PANEL_H = 230;
    private static final int LEFT = 64;
    private static final int RIGHT = 14;
    private static final int TOP = 34;
    private static final int BOTTOM = 44;

    private CapacityReport() {
    }

    /** Writes the pages into {@code dir}; returns the HTML page. */
    public static Path write(CapacitySearch.Result r, Path dir) throws IOException {
        return write(r, null, dir);
    }

    /** As {@link #write(CapacitySearch.Result, Path)}, with the section {@value #NODES_SECTION} filled ({@code nodes} null: left empty). */
    public static Path write(CapacitySearch.Result r, NodesForTarget nodes, Path dir) throws IOException {
        Files.createDirectories(dir);
        String svg = svg(r);
        Files.writeString(dir.resolve("capacity.svg"), svg);
        Files.writeString(dir.resolve("capacity.md"), markdown(r, nodes, dir));
        Path html = dir.resolve("capacity.html");
        Files.writeString(html, html(r, nodes, svg, dir));
        return html;
    }

    /** One line: the answer. */
    public static String summary(CapacitySearch.Result r) {
        StepResult b = r.best();
        if (b == null)
            return String.format(Locale.ROOT, "sustainable rate: none: even %.2f requests/s missed the SLO (%s)",
                r.byRate().get(0).offeredRate(), String.join(", ", r.slo().misses(r.byRate().get(0))));
        return String.format(Locale.ROOT,
            "sustainable rate: %.2f requests/s (p99 TTFT %.3f s <= %.3f s, p99 TPOT %.4f s <= %.4f s, errors %.1f %% <= %.1f %%); "
                + "%.1f output tokens/s, mean running batch %.1f, adapter loads %.0f (device) / %.0f (host) in %.0f s",
            b.offeredRate(), b.ttftP99(), r.slo().ttftP99Seconds(), b.tpotP99(), r.slo().tpotP99Seconds(),
            100 * b.errorRate(), 100 * r.slo().maxErrorRate(), b.outputTokensPerSecond(), b.meanBatch(), b.deviceLoads(),
            b.hostLoads(), r.settings().stepSeconds());
    }

    private static String markdown(CapacitySearch.Result r, NodesForTarget nodes, Path dir) {
        StringBuilder md = new StringBuilder("# Capacity\n\n");
        md.append("**").append(summary(r)).append("**\n\n");
        md.append(setup(r)).append("\n\n![capacity: throughput and p99 latencies against offered rate](capacity.svg)\n\n");
        md.append("| offered req/s | requests | failed | achieved req/s | output tok/s | TTFT p50 s | TTFT p99 s | TPOT p99 s | latency p99 s | server TTFT p99 s | server TPOT p99 s | mean batch | adapter loads (device/host) | SLO | Gatling report |\n");
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (StepResult s : r.byRate()) {
            List<String> misses = r.slo().misses(s);
            md.append(String.format(Locale.ROOT, "| %.2f | %d | %d | %.2f | %.1f | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f | %s | %s |\n",
                s.offeredRate(), s.requests(), s.errors(), s.achievedRate(), s.outputTokensPerSecond(), num(s.ttftP50(), 3),
                num(s.ttftP99(), 3), num(s.tpotP99(), 4), num(s.e2eP99(), 3), num(s.serverTtftP99(), 3), num(s.serverTpotP99(), 4),
                num(s.meanBatch(), 1), s.deviceLoads(), s.hostLoads(), misses.isEmpty() ? "meets" : String.join("; ", misses),
                s.report() == null ? "-" : "[index.html](" + relative(dir, s.report().resolve("index.html")) + ")"));
        }
        md.append("\n").append(sources()).append("\n\n## ").append(NODES_SECTION).append("\n\n").append(NODES_HOOK)
            .append("\n").append(nodes != null ? nodes.markdown()
                : "Not computed: give `--target-rate R --profile FILE|punica-a100-7b` (a `bench profile` of the node's machine) and the cluster simulator fills this section.\n");
        return md.toString();
    }

    private static String setup(CapacitySearch.Result r) {
        java.util.Map<String, String> workload = new java.util.LinkedHashMap<>(r.spec().workload().options());
        workload.remove("rate");
        return String.format(Locale.ROOT, "Gateway %s; workload %s; api %s, stream %s; SLO: p99 TTFT <= %s s, p99 TPOT <= %s s, errors <= %s %%; "
                + "%s s per rate, rates doubled from %s requests/s then bisected (%d runs).",
            r.spec().url(), workload, r.spec().options().get("api"), r.spec().options().get("stream"),
            trim(r.slo().ttftP99Seconds()), trim(r.slo().tpotP99Seconds()), trim(100 * r.slo().maxErrorRate()),
            trim(r.settings().stepSeconds()), trim(r.settings().startRate()), r.steps().size());
    }

    private static String sources() {
        return "Client side (Gatling, every request in the run folder's `requests.jsonl`): TTFT is the time from sending a "
            + "streamed request to its first chunk with text, TPOT the time from that chunk to the last over (output tokens - 1), "
            + "latency the time to the last byte; the SLO is judged on these. Server side (the gateway's `/metrics` before and after "
            + "each run): the engine's TTFT and TPOT histograms (p99 interpolated inside the histogram's buckets, so coarse), the "
            + "mean running batch (`lora_gateway_engine_batch_size`) and adapter loads per tier (`lora_gateway_adapter_cache_loads_total`).";
    }

    private static String html(CapacitySearch.Result r, NodesForTarget nodes, String svg, Path dir) {
        StringBuilder h = new StringBuilder("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Capacity</title>\n<style>"
            + "body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;font-size:13px}"
            + "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}.miss{color:#b00}.meet{color:#070}"
            + ".summary{font-size:18px;font-weight:bold}</style></head><body>\n<h1>Capacity</h1>\n");
        h.append("<p class=\"summary\">").append(esc(summary(r))).append("</p>\n<p>").append(esc(setup(r))).append("</p>\n");
        h.append(svg).append("\n<table><tr><th>offered req/s</th><th>requests</th><th>failed</th><th>achieved req/s</th><th>output tok/s</th>"
            + "<th>TTFT p50 s</th><th>TTFT p99 s</th><th>TPOT p99 s</th><th>latency p99 s</th><th>server TTFT p99 s</th>"
            + "<th>server TPOT p99 s</th><th>mean batch</th><th>adapter loads device/host</th><th>SLO</th><th>Gatling report</th></tr>\n");
        for (StepResult s : r.byRate()) {
            List<String> misses = r.slo().misses(s);
            h.append(String.format(Locale.ROOT, "<tr><td>%.2f</td><td>%d</td><td>%d</td><td>%.2f</td><td>%.1f</td><td>%s</td><td>%s</td><td>%s</td>"
                    + "<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.0f / %.0f</td><td class=\"%s\">%s</td><td>%s</td></tr>\n",
                s.offeredRate(), s.requests(), s.errors(), s.achievedRate(), s.outputTokensPerSecond(), num(s.ttftP50(), 3),
                num(s.ttftP99(), 3), num(s.tpotP99(), 4), num(s.e2eP99(), 3), num(s.serverTtftP99(), 3), num(s.serverTpotP99(), 4),
                num(s.meanBatch(), 1), s.deviceLoads(), s.hostLoads(), misses.isEmpty() ? "meet" : "miss",
                esc(misses.isEmpty() ? "meets" : String.join("; ", misses)),
                s.report() == null ? "-" : "<a href=\"" + esc(relative(dir, s.report().resolve("index.html"))) + "\">index.html</a>"));
        }
        h.append("</table>\n<p>").append(esc(sources())).append("</p>\n<h2>").append(NODES_SECTION).append("</h2>\n")
            .append(NODES_HOOK).append("\n").append(nodes != null ? nodes.html()
                : "<p>Not computed: give <code>--target-rate R --profile FILE|punica-a100-7b</code> (a <code>bench profile</code> of the node's machine) and the cluster simulator fills this section.</p>\n");
        h.append("</body></html>\n");
        return h.toString();
    }

    /** The four panels as one SVG. */
    static String svg(CapacitySearch.Result r) {
        List<StepResult> steps = r.byRate();
        double knee = r.sustainableRate();
        int w = 2 * PANEL_W;
        int h = 2 * PANEL_H + 40;
        StringBuilder s = new StringBuilder(String.format(Locale.ROOT,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
                + "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                + "<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">Capacity: throughput and p99 latencies against offered rate%s</text>\n",
            w, h, w, h, w / 2, knee > 0 ? String.format(Locale.ROOT, " (knee %.2f req/s)", knee) : " (no rate met the SLO)"));
        double xMin = steps.get(0).offeredRate();
        double xMax = steps.get(steps.size() - 1).offeredRate();
        panel(s, 0, 40, "Achieved throughput", "requests/s", steps, StepResult::achievedRate, Double.NaN, true, knee, xMin, xMax);
        panel(s, PANEL_W, 40, "Output tokens", "output tokens/s", steps, StepResult::outputTokensPerSecond, Double.NaN, false, knee, xMin, xMax);
        panel(s, 0, 40 + PANEL_H, "p99 time to first token", "seconds", steps, StepResult::ttftP99, r.slo().ttftP99Seconds(), false, knee, xMin, xMax);
        panel(s, PANEL_W, 40 + PANEL_H, "p99 time per output token", "seconds", steps, StepResult::tpotP99, r.slo().tpotP99Seconds(), false, knee, xMin, xMax);
        return s.append("</svg>").toString();
    }

    private static void panel(StringBuilder s, int ox, int oy, String title, String yLabel, List<StepResult> steps,
                              ToDoubleFunction<StepResult> y, double slo, boolean ideal, double knee, double xMin, double xMax) {
        int pw = PANEL_W - LEFT - RIGHT;
        int ph = PANEL_H - TOP - BOTTOM;
        double lx0 = Math.log(xMin) - 0.15;
        double lx1 = Math.log(Math.max(xMax, xMin * 1.01)) + 0.15;
        double yMax = 0;
        for (StepResult st : steps) {
            double v = y.applyAsDouble(st);
            if (Double.isFinite(v)) yMax = Math.max(yMax, v);
        }
        if (ideal) yMax = Math.max(yMax, xMax);
        if (!Double.isNaN(slo)) yMax = Math.min(Math.max(yMax, slo * 1.25), slo * 4);
        if (yMax <= 0) yMax = 1;
        yMax = niceCeil(yMax);
        final double top = yMax;
        java.util.function.DoubleUnaryOperator px = v -> ox + LEFT + pw * (Math.log(v) - lx0) / (lx1 - lx0);
        java.util.function.DoubleUnaryOperator py = v -> oy + TOP + ph * (1 - Math.min(v, top) / top);
        s.append(String.format(Locale.ROOT, "<g><text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
            ox + LEFT + pw / 2, oy + 18, esc(title)));
        s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", ox + LEFT, oy + TOP, pw, ph));
        for (int i = 0; i <= 4; i++) {
            double v = top * i / 4;
            double yy = py.applyAsDouble(v);
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                ox + LEFT, ox + LEFT + pw, yy, yy, ox + LEFT - 4, yy + 4, trim(v)));
        }
        double lastLabel = Double.NEGATIVE_INFINITY;
        for (StepResult st : steps) {
            double xx = px.applyAsDouble(st.offeredRate());
            s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#999\"/>\n", xx, xx, oy + TOP + ph, oy + TOP + ph + 4));
            if (xx - lastLabel < 24) continue; // bisected rates crowd: label every tick that has room
            lastLabel = xx;
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"9\">%s</text>\n",
                xx, oy + TOP + ph + 14, trim(st.offeredRate())));
        }
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">offered rate (requests/s, log scale)</text>\n",
            ox + LEFT + pw / 2, oy + PANEL_H - 14));
        s.append(String.format(Locale.ROOT, "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            ox + 14, oy + TOP + ph / 2, esc(yLabel)));
        List<String> legend = new ArrayList<>();
        legend.add("#1f6fd1|measured");
        if (ideal) {
            // y = x is a curve on a log-x axis: a polyline of small steps, not one segment
            StringBuilder pts = new StringBuilder();
            double hi = Math.min(xMax, top);
            for (int i = 0; i <= 64; i++) {
                double v = xMin * Math.pow(hi / xMin, i / 64.0);
                pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", px.applyAsDouble(v), py.applyAsDouble(v)));
            }
            s.append("<polyline points=\"").append(pts.toString().trim())
                .append("\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n");
            legend.add("#888|achieved = offered");
        }
        if (!Double.isNaN(slo)) {
            double yy = py.applyAsDouble(slo);
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/>\n",
                ox + LEFT, ox + LEFT + pw, yy, yy));
            legend.add("#d62728|SLO " + trim(slo) + " s");
        }
        if (knee > 0) {
            double xx = px.applyAsDouble(knee);
            s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#2ca02c\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/>\n",
                xx, xx, oy + TOP, oy + TOP + ph));
            legend.add("#2ca02c|knee " + trim(knee) + " req/s");
        }
        StringBuilder path = new StringBuilder();
        for (StepResult st : steps) {
            double v = y.applyAsDouble(st);
            if (!Double.isFinite(v)) continue;
            double xx = px.applyAsDouble(st.offeredRate());
            double yy = py.applyAsDouble(v);
            path.append(path.length() == 0 ? "M" : " L").append(String.format(Locale.ROOT, "%.1f %.1f", xx, yy));
            s.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#1f6fd1\"><title>%s req/s: %s</title></circle>\n",
                xx, yy, trim(st.offeredRate()), trim(v)));
            if (v > top) s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\" fill=\"#1f6fd1\">&#8593;%s</text>\n", xx, yy + 12, trim(v)));
        }
        if (path.length() > 0) s.append("<path d=\"").append(path).append("\" fill=\"none\" stroke=\"#1f6fd1\" stroke-width=\"2\"/>\n");
        int ly = oy + TOP + 12;
        for (String l : legend) {
            String[] p = l.split("\\|", 2);
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                ox + LEFT + 8, ox + LEFT + 24, ly - 4, ly - 4, p[0], ox + LEFT + 28, ly, esc(p[1])));
            ly += 14;
        }
        s.append("</g>\n");
    }

    private static double niceCeil(double v) {
        double p = Math.pow(10, Math.floor(Math.log10(v)));
        for (double m : new double[] {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10}) if (m * p >= v) return m * p;
        return 10 * p;
    }

    static String trim(double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e9) return Long.toString((long) v);
        String s = Math.abs(v) >= 100 ? String.format(Locale.ROOT, "%.0f", v) : Math.abs(v) >= 1 ? String.format(Locale.ROOT, "%.2f", v)
            : String.format(Locale.ROOT, "%.3g", v);
        return s.contains(".") && !s.contains("e") ? s.replaceAll("0+$", "").replaceAll("\\.$", "") : s;
    }

    private static String num(double v, int decimals) {
        return Double.isFinite(v) ? String.format(Locale.ROOT, "%." + decimals + "f", v) : "-";
    }

    private static String relative(Path dir, Path target) {
        try {
            return dir.toAbsolutePath().relativize(target.toAbsolutePath()).toString();
        } catch (IllegalArgumentException e) {
            return target.toString();
        }
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
