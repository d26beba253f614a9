package dev.loragateway.scheduler.workload;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Traces as JSON lines, one request per line:
 * {@code {"arrival_s": 0.25, "tenant": "t0", "adapter": "t0-a1", "prompt_tokens": 40, "output_tokens": 16}}
 * ({@code adapter} null or absent for the base model; {@code popularity} optional). Blank lines are
 * skipped; arrivals need not be sorted (reading sorts them).
 */
public final class Traces {

    private static final ObjectMapper JSON = new ObjectMapper();

    private Traces() {}

    public static void write(List<TraceRequest> trace, Writer out) throws IOException {
        for (TraceRequest r : trace) {
            ObjectNode o = JSON.createObjectNode();
            o.put("arrival_s", r.arrivalSeconds());
            o.put("tenant", r.tenant());
            if (r.adapter() == null) o.putNull("adapter"); else o.put("adapter", r.adapter());
            o.put("prompt_tokens", r.promptTokens());
            o.put("output_tokens", r.outputTokens());
            o.put("popularity", r.popularity());
            out.write(JSON.writeValueAsString(o));
            out.write('\n');
        }
    }

    /**
     * Reads a JSONL trace.
     *
     * @throws IllegalArgumentException naming the file, the line and the problem
     */
    public static List<TraceRequest> read(Path file) {
        List<TraceRequest> out = new ArrayList<>();
        try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            String line;
            int n = 0;
            while ((line = in.readLine()) != null) {
                n++;
                if (line.isBlank()) continue;
                try {
                    JsonNode o = JSON.readTree(line);
                    if (o == null || !o.isObject()) throw new IllegalArgumentException("not a JSON object");
                    out.add(new TraceRequest(number(o, "arrival_s").doubleValue(), text(o, "tenant", true),
                        text(o, "adapter", false), number(o, "prompt_tokens").intValue(),
                        number(o, "output_tokens").intValue(), text(o, "popularity", false)));
                } catch (IOException | IllegalArgumentException e) {
                    throw new IllegalArgumentException(file + " line " + n + ": " + e.getMessage());
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read trace " + file + ": " + e.getMessage(), e);
        }
        out.sort((a, b) -> Double.compare(a.arrivalSeconds(), b.arrivalSeconds()));
        return out;
    }

    private static Number number(JsonNode o, String field) {
        JsonNode v = o.get(field);
        if (v == null || !v.isNumber()) throw new IllegalArgumentException("'" + field + "' must be a number");
        return v.numberValue();
    }

    private static String text(JsonNode o, String field, boolean required) {
        JsonNode v = o.get(field);
        if (v == null || v.isNull()) {
            if (required) throw new IllegalArgumentException("'" + field + "' is missing");
            return null;
        }
        if (!v.isTextual()) throw new IllegalArgumentException("'" + field + "' must be a string");
        return v.asText();
    }
}
