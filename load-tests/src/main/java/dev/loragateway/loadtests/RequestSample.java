package dev.loragateway.loadtests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One request as the simulation saw it, one line of a run's {@code requests.jsonl}. Gatling's own
 * report keeps response-time percentiles per request name, which cannot be merged across names; these
 * lines keep every request, so percentiles can be taken over any cut (all, per tenant, per class).
 *
 * @param ttftMs   streamed: ms from sending the request to the first chunk with text; NaN unstreamed
 * @param tpotMs   streamed: ms from the first to the last chunk with text over (output tokens − 1); NaN
 *                 when unstreamed or with fewer than 2 output tokens
 * @param e2eMs    ms from sending the request to its last byte ({@code [DONE]} for a stream)
 * @param outputTokens {@code usage.completion_tokens}, 0 when the request failed
 */
public record RequestSample(long index, String tenant, String popularity, String model, String api, boolean stream,
                            boolean ok, long startMs, double ttftMs, double tpotMs, double e2eMs, int outputTokens) {
    private static final ObjectMapper JSON = new ObjectMapper();

    String toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("index", index).put("tenant", tenant).put("class", popularity).put("model", model).put("api", api)
            .put("stream", stream).put("ok", ok).put("start_ms", startMs);
        if (!Double.isNaN(ttftMs)) o.put("ttft_ms", ttftMs);
        if (!Double.isNaN(tpotMs)) o.put("tpot_ms", tpotMs);
        o.put("e2e_ms", e2eMs).put("output_tokens", outputTokens);
        return o.toString();
    }

    static RequestSample fromJson(String line) throws IOException {
        JsonNode o = JSON.readTree(line);
        return new RequestSample(o.path("index").asLong(), o.path("tenant").asText(), o.path("class").asText(),
            o.path("model").asText(), o.path("api").asText(), o.path("stream").asBoolean(), o.path("ok").asBoolean(),
            o.path("start_ms").asLong(), o.has("ttft_ms") ? o.get("ttft_ms").asDouble() : Double.NaN,
            o.has("tpot_ms") ? o.get("tpot_ms").asDouble() : Double.NaN, o.path("e2e_ms").asDouble(),
            o.path("output_tokens").asInt());
    }

    /** Every line of a {@code requests.jsonl}. */
    public static List<RequestSample> read(Path file) {
        List<RequestSample> out = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(file)) {
                if (!line.isBlank()) out.add(fromJson(line));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
        return out;
    }
}
