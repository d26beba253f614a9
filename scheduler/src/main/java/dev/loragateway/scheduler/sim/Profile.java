package dev.loragateway.scheduler.sim;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;

/**
 * How fast one node is: the time of one engine step as a linear function of what the step holds,
 * the cost of paging an adapter in, and the node's default capacities. Measured on this machine by
 * {@code bench profile} or shipped ({@value #PUNICA}, from Punica's published A100 figures).
 *
 * <pre>
 *   stepMs(decodeRows, promptTokens, adapters, attended) = baseMs + decodeRowMs·decodeRows
 *            + promptTokenMs·promptTokens + adapterMs·adapters + attendedMs·attended
 *   e.g. punica-a100-7b, 32 decodes, 15 prompt tokens, 32 distinct adapters (attendedMs 0):
 *        11 + 0.518·32 + 0.07·15 + 0.0625·32 ≈ 30.6 ms
 * </pre>
 * Linear terms are what a least-squares fit over measured steps supports. {@code attended} counts
 * the positions the step's rows attend to (a row at position p attends to p + 1: a decode row its
 * context, a prompt chunk a triangle), the attention work that grows with the context; where it is
 * 0 (the shipped profile) a decode row also stands for its attention, so its cost is the mean one
 * of the workload it was derived from. {@code bench profile} measured it on the CPU: without it the
 * steps of 384–512-token contexts came out 42 % faster than measured.
 *
 * @param name          the profile's name ({@value #PUNICA}, or the measured model's)
 * @param source        one line: where the numbers come from (printed with every result)
 * @param baseMs        fixed cost of a step
 * @param decodeRowMs   per decode row (one token of a running sequence)
 * @param promptTokenMs per prompt token prefilled in the step
 * @param adapterMs     per distinct adapter among the step's rows
 * @param attendedMs    per position attended over the step's rows ({@code per_attended_position}; 0 when absent)
 * @param hostLoadMs    an adapter from the host tier into a device slot
 * @param diskLoadMs    an adapter read from disk (then host tier, then slot)
 * @param node          the node's default capacities for this model
 * @param kvBlockBytes  bytes of one KV block of the measured model ({@code kv_block_bytes}; 0: not known), so that
 *                      {@code simulate --kv-cache-mb} can size the pool as {@code serve} does
 */
public record Profile(String name, String source, double baseMs, double decodeRowMs, double promptTokenMs,
                      double adapterMs, double attendedMs, double hostLoadMs, double diskLoadMs, NodeConfig node, long kvBlockBytes) {

    /** The shipped profile's name. */
    public static final String PUNICA = "punica-a100-7b";

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    public Profile {
        for (double v : List.of(baseMs, decodeRowMs, promptTokenMs, adapterMs, attendedMs, hostLoadMs, diskLoadMs)) {
            if (!(v >= 0) || !Double.isFinite(v)) {
                throw new IllegalArgumentException("profile " + name + ": step and load costs must be finite and >= 0, got " + v);
            }
        }
        if (baseMs + decodeRowMs <= 0) {
            throw new IllegalArgumentException("profile " + name + ": a one-row step must take time (baseMs + decodeRowMs > 0)");
        }
        if (kvBlockBytes < 0) {
            throw new IllegalArgumentException("profile " + name + ": kv_block_bytes must be >= 0, got " + kvBlockBytes);
        }
    }

    /** A profile without an attention term that does not know its model's KV block size ({@code --kv-cache-mb} then cannot be used). */
    public Profile(String name, String source, double baseMs, double decodeRowMs, double promptTokenMs,
                   double adapterMs, double hostLoadMs, double diskLoadMs, NodeConfig node) {
        this(name, source, baseMs, decodeRowMs, promptTokenMs, adapterMs, 0, hostLoadMs, diskLoadMs, node, 0);
    }

    /** Milliseconds one step takes, its attention left out (all of it when {@link #attendedMs} is 0). */
    public double stepMillis(int decodeRows, int promptTokens, int adapters) {
        return baseMs + decodeRowMs * decodeRows + promptTokenMs * promptTokens + adapterMs * adapters;
    }

    /** Milliseconds one step takes whose rows attend to {@code attended} positions in all. */
    public double stepMillis(int decodeRows, int promptTokens, int adapters, long attended) {
        return stepMillis(decodeRows, promptTokens, adapters) + attendedMs * attended;
    }

    /** The profile with other node capacities. */
    public Profile withNode(NodeConfig n) {
        return new Profile(name, source, baseMs, decodeRowMs, promptTokenMs, adapterMs, attendedMs, hostLoadMs, diskLoadMs, n, kvBlockBytes);
    }

    /**
     * {@value #PUNICA} (shipped) or a profile file.
     *
     * @throws IllegalArgumentException naming the file and what is wrong with it
     */
    public static Profile load(String fileOrName) {
        if (PUNICA.equals(fileOrName)) {
            try (InputStream in = Profile.class.getResourceAsStream(PUNICA + ".json")) {
                return parse(JSON.readTree(in), PUNICA);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        Path file = Path.of(fileOrName);
        try {
            return parse(JSON.readTree(Files.readString(file)), file.toString());
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("profile file " + file + " does not exist (or use --profile " + PUNICA + ")");
        } catch (IOException e) {
            throw new IllegalArgumentException("profile file " + file + " could not be read: " + e.getMessage());
        }
    }

    static Profile parse(JsonNode o, String where) {
        if (o == null || !o.isObject()) {
            throw new IllegalArgumentException("profile " + where + " is not a JSON object");
        }
        JsonNode step = field(o, "step_ms", where);
        JsonNode load = field(o, "adapter_load_ms", where);
        JsonNode node = field(o, "node", where);
        return new Profile(o.path("name").asText(where), o.path("source").asText(""),
            num(step, "base", where), num(step, "per_decode_row", where), num(step, "per_prompt_token", where),
            num(step, "per_adapter", where), step.has("per_attended_position") ? num(step, "per_attended_position", where) : 0,
            num(load, "host", where), num(load, "disk", where),
            new NodeConfig((int) num(node, "max_batch", where), (int) num(node, "max_num_batched_tokens", where),
                (int) num(node, "kv_blocks", where), (int) num(node, "kv_block_size", where),
                (int) num(node, "adapter_slots", where), (int) num(node, "host_adapters", where)),
            node.has("kv_block_bytes") ? (long) num(node, "kv_block_bytes", where) : 0);
    }

    private static JsonNode field(JsonNode o, String name, String where) {
        JsonNode v = o.get(name);
        if (v == null || !v.isObject()) {
            throw new IllegalArgumentException("profile " + where + ": object field '" + name + "' is missing");
        }
        return v;
    }

    private static double num(JsonNode o, String name, String where) {
        JsonNode v = o.get(name);
        if (v == null || !v.isNumber()) {
            throw new IllegalArgumentException("profile " + where + ": number field '" + name + "' is missing");
        }
        return v.doubleValue();
    }

    /** The profile as the JSON {@link #load} reads. */
    public String toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("name", name);
        o.put("source", source);
        ObjectNode step = o.putObject("step_ms");
        step.put("base", baseMs);
        step.put("per_decode_row", decodeRowMs);
        step.put("per_prompt_token", promptTokenMs);
        step.put("per_adapter", adapterMs);
        if (attendedMs > 0) {
            step.put("per_attended_position", attendedMs);
        }
        ObjectNode load = o.putObject("adapter_load_ms");
        load.put("host", hostLoadMs);
        load.put("disk", diskLoadMs);
        ObjectNode n = o.putObject("node");
        n.put("max_batch", node.maxBatch());
        n.put("max_num_batched_tokens", node.maxStepTokens());
        n.put("kv_blocks", node.kvBlocks());
        n.put("kv_block_size", node.blockSize());
        n.put("adapter_slots", node.adapterSlots());
        n.put("host_adapters", node.hostAdapters());
        if (kvBlockBytes > 0) {
            n.put("kv_block_bytes", kvBlockBytes);
        }
        try {
            return JSON.writeValueAsString(o) + "\n";
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Least squares over measured steps: {@code points[i] = {decodeRows, promptTokens, adapters}},
     * {@code millis[i]} the step's time. Terms whose fitted cost comes out negative (noise on a term
     * that costs ~nothing) are set to 0 and the rest refitted, so the model never makes a step
     * cheaper by adding work.
     *
     * @return {baseMs, decodeRowMs, promptTokenMs, adapterMs}
     */
    public static double[] fit(int[][] points, double[] millis) {
        double[][] x = new double[points.length][];
        for (int i = 0; i < points.length; i++) {
            x[i] = new double[] {1, points[i][0], points[i][1], points[i][2]};
        }
        return fit(x, millis, new boolean[] {true, true, true, true});
    }

    /**
     * As {@link #fit(int[][], double[])} with the attention term: {@code points[i] = {decodeRows,
     * promptTokens, adapters, attended}}. A term whose column is 0 throughout (no adapters measured)
     * is pinned to 0.
     *
     * @return {baseMs, decodeRowMs, promptTokenMs, adapterMs, attendedMs}
     */
    public static double[] fitWithAttention(long[][] points, double[] millis) {
        double[][] x = new double[points.length][];
        boolean[] on = {true, false, false, false, false};
        for (int i = 0; i < points.length; i++) {
            x[i] = new double[] {1, points[i][0], points[i][1], points[i][2], points[i][3]};
            for (int k = 1; k < 5; k++) {
                on[k] |= x[i][k] != 0;
            }
        }
        return fit(x, millis, on);
    }

    private static double[] fit(double[][] x, double[] millis, boolean[] on) {
        double[] scale = new double[on.length]; // columns scaled to at most 1: attended positions reach 1e5, the constant is 1
        java.util.Arrays.fill(scale, 1);
        for (double[] row : x) {
            for (int k = 0; k < on.length; k++) {
                scale[k] = Math.max(scale[k], Math.abs(row[k]));
            }
        }
        double[][] xs = new double[x.length][on.length];
        for (int i = 0; i < x.length; i++) {
            for (int k = 0; k < on.length; k++) {
                xs[i][k] = x[i][k] / scale[k];
            }
        }
        while (true) {
            double[] c = solve(xs, millis, on);
            for (int k = 0; k < c.length; k++) {
                c[k] /= scale[k];
            }
            int worst = -1;
            for (int k = 0; k < c.length; k++) {
                if (on[k] && c[k] < 0 && (worst < 0 || c[k] < c[worst])) {
                    worst = k;
                }
            }
            if (worst < 0) {
                return c;
            }
            on[worst] = false;
        }
    }

    private static double[] solve(double[][] x, double[] y, boolean[] on) {
        int m = on.length;
        double[][] a = new double[m][m + 1]; // normal equations, augmented
        for (int i = 0; i < x.length; i++) {
            for (int r = 0; r < m; r++) {
                for (int c = 0; c < m; c++) {
                    a[r][c] += x[i][r] * x[i][c];
                }
                a[r][m] += x[i][r] * y[i];
            }
        }
        for (int k = 0; k < m; k++) {
            if (!on[k]) { // pin the term to 0: its row becomes c_k = 0
                java.util.Arrays.fill(a[k], 0);
                a[k][k] = 1;
                for (int r = 0; r < m; r++) {
                    if (r != k) {
                        a[r][k] = 0;
                    }
                }
            }
        }
        for (int p = 0; p < m; p++) { // Gauss-Jordan with partial pivoting
            int best = p;
            for (int r = p + 1; r < m; r++) {
                if (Math.abs(a[r][p]) > Math.abs(a[best][p])) {
                    best = r;
                }
            }
            double[] t = a[p];
            a[p] = a[best];
            a[best] = t;
            if (Math.abs(a[p][p]) < 1e-12) {
                throw new IllegalArgumentException("the measured points do not determine the step model (term " + p + ")");
            }
            for (int r = 0; r < m; r++) {
                if (r != p) {
                    double f = a[r][p] / a[p][p];
                    for (int c = p; c <= m; c++) {
                        a[r][c] -= f * a[p][c];
                    }
                }
            }
        }
        double[] c = new double[m];
        for (int k = 0; k < m; k++) {
            c[k] = a[k][m] / a[k][k];
        }
        return c;
    }
}
