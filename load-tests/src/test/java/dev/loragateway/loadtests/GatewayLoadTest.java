package dev.loragateway.loadtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The load tool end to end, so it cannot rot unnoticed: a real {@code serve} of the built jar on the
 * demo model with two adapters, one short Gatling simulation through the capacity search (one rate,
 * about 6 s of load over both endpoints, streamed and not), then its result files: every request
 * answered, time to first token measured, the /metrics delta read, the capacity page written.
 */
class GatewayLoadTest {
    private static final Path JAR = Path.of("..", "gateway", "target", "lora-gateway.jar");

    @Test
    @Timeout(240)
    void oneSimulationAgainstARealGateway(@TempDir Path dir) throws Exception {
        Path model = dir.resolve("model");
        GatewayProcess.demoModel(JAR, model);
        List<String> serve = List.of("--model", model.toString(), "--data-dir", dir.resolve("data").toString(),
            "--lora-modules", "t0-a0=" + model.resolve("adapters/demo-r8") + ",t1-a0=" + model.resolve("adapters/demo-r16"));
        try (GatewayProcess gateway = GatewayProcess.start(JAR, serve, dir.resolve("serve.log"), 120)) {
            LoadSpec spec = LoadSpec.of(Map.of("url", gateway.url().toString(), "tenants", "2", "adapters-per-tenant", "1",
                "api", "both", "stream", "both", "prompt-len", "uniform:8:40", "output-len", "uniform:4:16"));
            CapacitySearch.Result r = CapacitySearch.run(spec, new Slo(30, 5, 0), new CapacitySearch.Settings(4, 4, 6, 1, 0.15, 0),
                List.of(URI.create(gateway.url() + "/metrics")), dir.resolve("capacity"), System.out::println, true);
            Path page = CapacityReport.write(r, dir.resolve("capacity"));

            assertEquals(1, r.steps().size());
            StepResult step = r.steps().get(0);
            assertTrue(Files.isRegularFile(step.report().resolve("index.html")), "Gatling's HTML report");
            List<RequestSample> samples = RequestSample.read(step.report().resolve("requests.jsonl"));
            assertTrue(samples.size() >= 8, "requests sent: " + samples.size());
            Set<String> kinds = new HashSet<>();
            for (RequestSample s : samples) {
                assertTrue(s.ok(), "failed: " + s + "\nserver log:\n" + GatewayProcess.tail(gateway.log()));
                assertTrue(s.outputTokens() > 0, "output tokens: " + s);
                if (s.stream()) assertTrue(s.ttftMs() >= 0 && s.ttftMs() <= s.e2eMs(), "TTFT of a stream: " + s);
                kinds.add(s.api() + "/" + s.stream() + "/" + (s.model().equals("demo") ? "base" : "adapter"));
            }
            assertTrue(kinds.containsAll(Set.of("completions/true/adapter", "completions/false/adapter", "chat/true/adapter",
                "chat/false/adapter")), "endpoint × stream kinds covered: " + kinds);
            assertEquals(0, step.errors());
            assertTrue(Double.isFinite(step.ttftP99()) && Double.isFinite(step.tpotP99()), "client-side p99s: " + step);
            assertTrue(Double.isFinite(step.serverTtftP99()) && step.meanBatch() >= 1, "/metrics delta read: " + step);
            assertEquals(step.offeredRate(), r.sustainableRate(), "a generous SLO is met");
            String html = Files.readString(page);
            assertTrue(html.contains("<svg") && html.contains("knee 4 req/s") && html.contains(CapacityReport.NODES_HOOK), "capacity page");
        }
    }
}
