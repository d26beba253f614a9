package dev.loragateway.bench.gpu;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A Markdown table, built row by row, rendered with columns padded to their widest cell so the text
 * reads as a table in a terminal too (and pastes into docs/gpu.md as is).
 */
final class Table {
    private final List<String> headers;
    private final List<List<String>> rows = new ArrayList<>();

    Table(String... headers) {
        this.headers = List.of(headers);
    }

    /** Adds a row of exactly one cell per header. */
    Table row(String... cells) {
        if (cells.length != headers.size()) {
            throw new IllegalArgumentException("a row of " + cells.length + " cells in a table of " + headers.size()
                + " columns");
        }
        rows.add(List.of(cells));
        return this;
    }

    int rowCount() {
        return rows.size();
    }

    String render() {
        int[] width = new int[headers.size()];
        for (int c = 0; c < width.length; c++) {
            width[c] = Math.max(3, headers.get(c).length());
            for (List<String> r : rows) {
                width[c] = Math.max(width[c], r.get(c).length());
            }
        }
        StringBuilder sb = new StringBuilder();
        line(sb, headers, width);
        sb.append('|');
        for (int w : width) {
            sb.append('-').append("-".repeat(w)).append("-|");
        }
        sb.append('\n');
        for (List<String> r : rows) {
            line(sb, r, width);
        }
        return sb.toString();
    }

    private static void line(StringBuilder sb, List<String> cells, int[] width) {
        sb.append('|');
        for (int c = 0; c < width.length; c++) {
            String v = cells.get(c);
            sb.append(' ').append(v).append(" ".repeat(width[c] - v.length())).append(" |");
        }
        sb.append('\n');
    }

    /** {@code v} with {@code decimals} decimals, {@code -} when not finite (not measured). */
    static String num(double v, int decimals) {
        return Double.isFinite(v) ? String.format(Locale.ROOT, "%." + decimals + "f", v) : "-";
    }
}
