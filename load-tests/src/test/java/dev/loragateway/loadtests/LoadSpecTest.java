package dev.loragateway.loadtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.scheduler.workload.TraceRequest;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class LoadSpecTest {
    @Test
    void roundTripsThroughSystemProperties(@TempDir Path dir) throws Exception {
        Path keys = Files.writeString(dir.resolve("keys.json"),
            "{\"tenants\": [{\"id\": \"t0\", \"keys\": [\"sk-0\", \"sk-0b\"]}, {\"id\": \"t1\", \"keys\": [\"sk-1\"]}]}");
        LoadSpec spec = LoadSpec.of(Map.of("url", "http://127.0.0.1:9/", "keys", keys.toString(), "api", "both",
            "stream", "false", "tenants", "2", "popularity", "zipf:1.5", "rate", "7.5"));
        Properties p = new Properties();
        spec.toProperties().forEach(p::setProperty);
        LoadSpec back = LoadSpec.fromProperties(p);
        assertEquals(spec, back);
        assertEquals("http://127.0.0.1:9", back.url().toString());
        assertEquals(Map.of("t0", "sk-0", "t1", "sk-1"), back.keys());
        assertEquals(7.5, back.withRate(7.5).workload().rate());
    }

    @Test
    void badValuesNameTheOption() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> LoadSpec.of(Map.of("api", "grpc"))).getMessage().contains("api must be"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> LoadSpec.of(Map.of("url", "ftp://x"))).getMessage().contains("url"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> LoadSpec.of(Map.of("tenant", "2"))).getMessage().contains("unknown load option 'tenant'"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> LoadSpec.of(Map.of("keys", "/nonexistent/keys.json"))).getMessage().contains("keys"));
    }

    @Test
    void theCommandExitsTwoNamingTheOption() {
        for (String[] args : new String[][] {{"--slo-ttft-p99", "-1"}, {"--popularity", "zipf:x"}, {"--stream", "maybe"}, {"--max-steps", "0"}}) {
            StringWriter err = new StringWriter();
            int code = new CommandLine(new CapacityMain()).setErr(new PrintWriter(err)).execute(args);
            assertEquals(2, code, String.join(" ", args) + ": " + err);
            String option = args[0].substring(2);
            assertTrue(err.toString().contains(option) || err.toString().contains(option.replace('-', ' ')), err.toString());
        }
    }

    @Test
    void completionPromptsHaveExactlyTheTraceLengthInTokenIds() throws Exception {
        LoadSpec spec = LoadSpec.of(Map.of("vocab", "100", "api", "both"));
        TraceRequest r = new TraceRequest(1.25, "t3", "t3-a1", 37, 9, "hot");
        Map<String, Object> c = Payloads.record(spec, 0, r);
        JsonNode body = new ObjectMapper().readTree((String) c.get("body"));
        assertEquals("/v1/completions", c.get("path"));
        assertEquals("t3-a1", body.get("model").asText());
        assertEquals(37, body.get("prompt").size());
        body.get("prompt").forEach(id -> assertTrue(id.asInt() >= Payloads.FIRST_ID && id.asInt() < 100, "id " + id));
        assertEquals(9, body.get("max_tokens").asInt());
        assertTrue(body.get("stream").asBoolean() && body.get("stream_options").get("include_usage").asBoolean());
        assertEquals(1250L, c.get("arrivalMs"));
        Map<String, Object> chat = Payloads.record(spec, 1, new TraceRequest(2, "t0", null, 5, 3, "even"));
        JsonNode chatBody = new ObjectMapper().readTree((String) chat.get("body"));
        assertEquals("/v1/chat/completions", chat.get("path"));
        assertEquals("demo", chatBody.get("model").asText());
        assertEquals(5, chatBody.get("messages").get(0).get("content").asText().split(" ").length);
    }
}
