package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.gateway.ServerProcesses;
import dev.loragateway.gateway.demo.DemoModel;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code serve} as a user starts it, wired end to end: with {@code --allow-runtime-lora-updating}
 * and {@code --allowed-lora-dir} an adapter of the demo model's directory loads, answers and
 * unloads; {@code /metrics} carries the vLLM gauges, {@code max_lora} being {@code --gpu-adapter-slots}.
 * (The routes' and the gauges' behaviour in detail: {@code RuntimeLorasHttpTest}, {@code VllmMetricsHttpTest}.)
 */
class RuntimeLoraServeProcessTest {
    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(5)).build();

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void serveLoadsAnswersAndUnloadsAnAdapterAndShowsTheVllmGauges() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Process p = serve(model, "--gpu-adapter-slots", "3", "--allow-runtime-lora-updating", "--allowed-lora-dir",
            model.resolve("adapters").toString());
        try {
            String base = ServerProcesses.awaitListening(p, dir.resolve("stderr.log"));
            String completion = "{\"model\":\"dyn\",\"prompt\":\"Hello\",\"max_tokens\":3,\"temperature\":0}";
            assertEquals(404, post(base + "/v1/completions", completion).statusCode());
            HttpResponse<String> loaded = post(base + "/v1/load_lora_adapter", "{\"lora_name\":\"dyn\",\"lora_path\":\""
                + model.resolve("adapters").resolve("demo-r8") + "\"}");
            assertEquals(200, loaded.statusCode(), loaded.body());
            assertEquals("Success: LoRA adapter 'dyn' added successfully.", loaded.body());
            assertEquals(200, post(base + "/v1/completions", completion).statusCode());
            String metrics = http.send(HttpRequest.newBuilder(URI.create(base + "/metrics")).build(), HttpResponse.BodyHandlers.ofString())
                .body();
            assertTrue(metrics.contains("# TYPE vllm:num_requests_running gauge"), metrics);
            assertTrue(metrics.contains("vllm:num_requests_waiting{engine=\"0\",model_name=\"demo\"} 0.0"), metrics);
            assertTrue(metrics.contains("vllm:lora_requests_info{max_lora=\"3\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"}"),
                metrics);
            assertEquals(200, post(base + "/v1/unload_lora_adapter", "{\"lora_name\":\"dyn\"}").statusCode());
            assertEquals(404, post(base + "/v1/completions", completion).statusCode());
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }

    /**
     * With {@code --api-keys} the operator keys are the admins: {@code --allowed-lora-dir} alone turns
     * the routes on (no {@code --allow-runtime-lora-updating}); an operator key loads, a tenant's key
     * gets 403, and the tenant then uses the loaded adapter.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void withApiKeysAnOperatorKeyLoadsWithoutTheFlag() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        Path keys = dir.resolve("keys.json");
        java.nio.file.Files.writeString(keys, """
            { "tenants": [ { "id": "acme", "keys": ["sk-acme"] } ], "operator_keys": ["sk-ops"] }""");
        Process p = serve(model, "--api-keys", keys.toString(), "--allowed-lora-dir", model.resolve("adapters").toString());
        try {
            String base = ServerProcesses.awaitListening(p, dir.resolve("stderr.log"));
            String load = "{\"lora_name\":\"dyn\",\"lora_path\":\"" + model.resolve("adapters").resolve("demo-r8") + "\"}";
            HttpResponse<String> tenant = post(base + "/v1/load_lora_adapter", load, "sk-acme");
            assertEquals(403, tenant.statusCode(), tenant.body());
            HttpResponse<String> loaded = post(base + "/v1/load_lora_adapter", load, "sk-ops");
            assertEquals(200, loaded.statusCode(), loaded.body());
            String completion = "{\"model\":\"dyn\",\"prompt\":\"Hello\",\"max_tokens\":3,\"temperature\":0}";
            HttpResponse<String> used = post(base + "/v1/completions", completion, "sk-acme");
            assertEquals(200, used.statusCode(), used.body());
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** {@code serve} of {@code model} in its own process on a free port, with {@code options}; stderr to {@code stderr.log}. */
    private Process serve(Path model, String... options) throws Exception {
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"), "-Xmx512m",
            "-DOPT_OUT_TRACKING=true", Main.class.getName(), "serve", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", dir.resolve("data").toString(), "--backend", "cpu", "--model", model.toString(), "--model-id", "demo"));
        cmd.addAll(List.of(options));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(dir.resolve("stderr.log").toFile());
        pb.environment().put("OPT_OUT_TRACKING", "true");
        pb.environment().put("LORA_GATEWAY_CACHE", dir.resolve("cache").toString());
        return pb.start();
    }

    private HttpResponse<String> post(String url, String body) throws Exception {
        return post(url, body, null);
    }

    private HttpResponse<String> post(String url, String body, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).header("Content-Type", "application/json")
            .timeout(Duration.ofSeconds(30)).POST(HttpRequest.BodyPublishers.ofString(body));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }
}
