package dev.loragateway.scheduler.sim;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The simulator's answer: a Markdown table (stdout and report.md), report.html with an SVG of nodes
 * busy over time (one line per policy), and results.json with every number.
 */
public final class SimReport {
    private static final String[] COLORS = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private SimReport() {
    }

    /** One Markdown table, a row per policy. */
    public static String table(List<SimResult> results) {
        StringBuilder b = new StringBuilder();
        b.append("| policy | nodes | completed | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms | E2E p50 ms | E2E p99 ms "
            + "| TPOT p99 ms | nodes busy mean | nodes busy peak | nodes needed (SLO) | host loads/s | disk loads/s | migrated "
            + "| preempted | sim wall s |\n");
        b.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (SimResult r : results) {
            b.append(String.format(Locale.ROOT,
                "| %s | %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %d | %s | %.2f | %.2f | %d | %d | %.1f |%n",
                r.policy(), r.nodes(), r.completed(), r.requestsPerSecond(), r.tokensPerSecond(), ms(r.ttftP50()),
                ms(r.ttftP99()), ms(r.e2eP50()), ms(r.e2eP99()), ms(r.tpotP99()), r.busyMean(), r.busyPeak(),
                r.nodesNeeded() >= 0 ? Integer.toString(r.nodesNeeded()) : "not met", r.hostLoadsPerSecond(),
                r.diskLoadsPerSecond(), r.migrated(), r.preemptions(), r.wallSeconds()));
        }
        return b.toString();
    }

    private static double ms(double s) {
        return s * 1000;
    }

    /**
     * Writes report.md, report.html and results.json into {@code dir}.
     *
     * @param header lines describing the run (workload, profile, SLO), written above the table
     */
    public static void write(Path dir, List<String> header, List<SimResult> results) throws IOException {
        Files.createDirectories(dir);
        String table = table(results);
        StringBuilder md = new StringBuilder("# Cluster simulation\n\n");
        for (String h : header) {
            md.append("- ").append(h).append('\n');
        }
        md.append('\n').append(table).append('\n');
        md.append("![nodes busy over time](busy.svg)\n\n");
        md.append("A node is busy while anything runs or waits on it. Nodes needed (SLO): the peak of busy nodes when the run met "
            + "the SLOs (p99 TTFT, p99 TPOT) and finished every request; `not met` otherwise.\n");
        String svg = svg(results);
        Files.writeString(dir.resolve("report.md"), md, StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("busy.svg"), svg, StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("report.html"), html(header, results, svg), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("results.json"), json(header, results), StandardCharsets.UTF_8);
    }

    static String html(List<String> header, List<SimResult> results, String svg) {
        StringBuilder h = new StringBuilder("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Cluster simulation</title>\n"
            + "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            + "padding:3px 6px;text-align:right}th{background:#eee}td:first-child{text-align:left}</style></head><body>\n"
            + "<h1>Cluster simulation</h1>\n<ul>\n");
        for (String line : header) {
            h.append("<li>").append(esc(line)).append("</li>\n");
        }
        h.append("</ul>\n").append(svg).append("\n<table>\n");
        String[] rows = table(results).split("\n");
        for (int i = 0; i < rows.length; i++) {
            if (i == 1) {
                continue; // the Markdown separator
            }
            String[] cells = rows[i].substring(1, rows[i].length() - 1).split("\\|");
            h.append("<tr>");
            for (String c : cells) {
                h.append(i == 0 ? "<th>" : "<td>").append(esc(c.trim())).append(i == 0 ? "</th>" : "</td>");
            }
            h.append("</tr>\n");
        }
        h.append("</table>\n<p>A node is busy while anything runs or waits on it. Nodes needed (SLO): the peak of busy nodes when "
            + "the run met the SLOs and finished every request.</p>\n</body></html>\n");
        return h.toString();
    }

    /** Nodes busy over time, one line per policy, the node count as a dashed line. */
    static String svg(List<SimResult> results) {
        int w = 760;
        int h = 360;
        int left = 60;
        int right = 170;
        int top = 40;
        int bottom = 50;
        double maxT = 0;
        int maxY = 1;
        for (SimResult r : results) {
            maxT = Math.max(maxT, r.bucketSeconds() * r.busyOverTime().length);
            maxY = Math.max(maxY, Math.max(r.nodes(), r.busyPeak()));
        }
        maxT = Math.max(maxT, 1e-9);
        double pw = w - left - right;
        double ph = h - top - bottom;
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            + "font-family=\"sans-serif\" font-size=\"12\">%n", w, h));
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">Nodes busy over time "
            + "(mean per %s)</text>%n", left, fmtSeconds(results.isEmpty() ? 0 : results.get(0).bucketSeconds())));
        s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>%n",
            left, top, pw, ph));
        for (int k = 0; k <= 4; k++) { // axes ticks
            double yv = maxY * k / 4.0;
            double y = top + ph - ph * k / 4.0;
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>%n", left - 5, y + 4,
                fmt(yv)));
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>%n", left,
                left + pw, y, y));
            double xv = maxT * k / 4.0;
            double x = left + pw * k / 4.0;
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>%n", x, top + ph + 16,
                fmt(xv)));
        }
        s.append(String.format(Locale.ROOT, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">simulated time (s)</text>%n",
            left + pw / 2, h - 12));
        s.append(String.format(Locale.ROOT, "<text transform=\"translate(16,%.0f) rotate(-90)\" text-anchor=\"middle\">nodes busy"
            + "</text>%n", top + ph / 2));
        int nodes = results.isEmpty() ? 0 : results.get(0).nodes();
        double ny = top + ph - ph * nodes / maxY;
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\" "
            + "stroke-dasharray=\"6,4\"/>%n", left, left + pw, ny, ny));
        for (int i = 0; i < results.size(); i++) {
            SimResult r = results.get(i);
            String color = COLORS[i % COLORS.length];
            StringBuilder pts = new StringBuilder();
            double[] m = r.busyOverTime();
            for (int b = 0; b < m.length; b++) {
                double x = left + pw * ((b + 0.5) * r.bucketSeconds()) / maxT;
                double y = top + ph - ph * m[b] / maxY;
                pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", x, y));
            }
            s.append(String.format(Locale.ROOT, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"%s\"/>%n", color,
                pts.toString().trim()));
            double ly = top + 14 + i * 34;
            s.append(String.format(Locale.ROOT, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"3\"/>%n",
                left + pw + 10, left + pw + 30, ly, ly, color));
            s.append(String.format(Locale.ROOT, "<text x=\"%.0f\" y=\"%.0f\">%s</text>%n", left + pw + 35, ly + 4, esc(r.policy())));
            s.append(String.format(Locale.ROOT, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#555\" font-size=\"10\">mean %.1f, peak %d, "
                + "TTFT p99 %.0f ms</text>%n", left + pw + 35, ly + 17, r.busyMean(), r.busyPeak(), r.ttftP99() * 1000));
        }
        double ly = top + 14 + results.size() * 34;
        s.append(String.format(Locale.ROOT, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#444\" "
            + "stroke-dasharray=\"6,4\"/>%n", left + pw + 10, left + pw + 30, ly, ly));
        s.append(String.format(Locale.ROOT, "<text x=\"%.0f\" y=\"%.0f\">nodes in cluster (%d)</text>%n", left + pw + 35, ly + 4,
            nodes));
        s.append("</svg>\n");
        return s.toString();
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : String.format(Locale.ROOT, "%.1f", v);
    }

    private static String fmtSeconds(double s) {
        return s >= 1 ? String.format(Locale.ROOT, "%.1f s", s) : String.format(Locale.ROOT, "%.0f ms", s * 1000);
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }

    static String json(List<String> header, List<SimResult> results) throws IOException {
        ObjectNode o = JSON.createObjectNode();
        ArrayNode about = o.putArray("run");
        header.forEach(about::add);
        ArrayNode rs = o.putArray("results");
        for (SimResult r : results) {
            ObjectNode n = rs.addObject();
            n.put("policy", r.policy());
            n.put("nodes", r.nodes());
            n.put("requests", r.requests());
            n.put("completed", r.completed());
            n.put("refused", r.refused());
            n.put("simulated_seconds", r.seconds());
            n.put("requests_per_second", r.requestsPerSecond());
            n.put("output_tokens_per_second", r.tokensPerSecond());
            n.put("ttft_p50_s", r.ttftP50());
            n.put("ttft_p99_s", r.ttftP99());
            n.put("e2e_p50_s", r.e2eP50());
            n.put("e2e_p99_s", r.e2eP99());
            n.put("tpot_p99_s", r.tpotP99());
            n.put("nodes_busy_mean", r.busyMean());
            n.put("nodes_busy_peak", r.busyPeak());
            n.put("slo_met", r.sloMet());
            if (r.nodesNeeded() >= 0) {
                n.put("nodes_needed", r.nodesNeeded());
            } else {
                n.putNull("nodes_needed");
            }
            n.put("host_loads_per_second", r.hostLoadsPerSecond());
            n.put("disk_loads_per_second", r.diskLoadsPerSecond());
            n.put("migrated_kv", r.migrated());
            n.put("preemptions", r.preemptions());
            n.put("engine_steps", r.steps());
            n.put("wall_seconds", r.wallSeconds());
            n.put("bucket_seconds", r.bucketSeconds());
            ArrayNode b = n.putArray("nodes_busy_over_time");
            for (double v : r.busyOverTime()) {
                b.add(Math.round(v * 100) / 100.0);
            }
        }
        return JSON.writeValueAsString(o) + "\n";
    }
}
