package dev.loragateway.gateway.telemetry;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.gateway.http.Json;
import dev.loragateway.gateway.http.RequestObserver;
import java.time.Instant;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One JSON object per finished request, built with Jackson (a tenant's model name or anything
 * else a caller sent is escaped, never spliced into the text):
 *
 * <pre>
 * {"time":"2025-01-01T12:00:00.123Z","request_id":"req-…","tenant":"acme","method":"POST",
 *  "route":"/v1/completions","model":"support-bot","status":200,"prompt_tokens":12,
 *  "completion_tokens":16,"latency_ms":84.211}
 * </pre>
 *
 * {@code tenant} and {@code model} are null when the request had none. In a cluster a last field,
 * {@code "node"}, names the node that ran the request: the node a completion was forwarded to, else
 * this one; a gateway without a cluster writes no {@code node} (its lines are as they were). By
 * default the line goes to
 * the SLF4J logger {@value #LOGGER} at INFO (slf4j-simple prints it to stderr after its prefix).
 */
public final class AccessLog implements RequestObserver {
    public static final String LOGGER = "lora_gateway.access";
    private static final ObjectMapper JSON = Json.MAPPER;

    private final Consumer<String> sink;

    /** Lines go to {@code sink}, one call per request (on the event loop that answered it). */
    public AccessLog(Consumer<String> sink) {
        this.sink = sink;
    }

    /** The SLF4J logger {@value #LOGGER}. */
    public static Consumer<String> slf4j() {
        Logger log = LoggerFactory.getLogger(LOGGER);
        return line -> log.info("{}", line);
    }

    @Override
    public void finished(Record r) {
        sink.accept(line(r, Instant.now()));
    }

    static String line(Record r, Instant end) {
        ObjectNode o = JSON.createObjectNode();
        o.put("time", end.toString());
        o.put("request_id", r.requestId());
        o.put("tenant", r.tenant());
        o.put("method", r.method());
        o.put("route", r.route());
        o.put("model", r.model());
        o.put("status", r.status());
        o.put("prompt_tokens", r.promptTokens());
        o.put("completion_tokens", r.completionTokens());
        o.put("latency_ms", Math.round(r.latencyNanos() / 1e3) / 1e3);
        if (r.node() != null) {
            o.put("node", r.node());
        }
        try {
            return JSON.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("a tree of strings and numbers always serializes", e);
        }
    }
}
