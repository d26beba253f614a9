package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * A whole server-sent-events body of {@code /v1/completions} or {@code /v1/chat/completions}: its
 * {@code data:} chunks as JSON, in order, and whether it ended with {@code data: [DONE]}.
 */
public record SseEvents(List<JsonNode> chunks, boolean done) {
    public static SseEvents parse(String body) throws IOException {
        List<JsonNode> chunks = new ArrayList<>();
        boolean done = false;
        for (String line : body.split("\n")) {
            if (!line.startsWith("data: ")) {
                continue;
            }
            String data = line.substring(6);
            if (data.equals("[DONE]")) {
                done = true;
            } else {
                chunks.add(Json.MAPPER.readTree(data));
            }
        }
        return new SseEvents(chunks, done);
    }
}
