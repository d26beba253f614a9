package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.PeftAdapterReader;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.http.ApiServer;
import dev.loragateway.gateway.http.LoraHttpTest;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, adapters as cluster data, through three {@code serve} processes on 127.0.0.1: an
 * adapter uploaded on one node is on two nodes' disks before the 201, serves through any node (the
 * node that runs it fetches the files on first use) exactly as its merged-weights twin does, is
 * listed everywhere, and once deleted on another node is gone everywhere before the delete
 * returns; names and {@code max_adapters} hold cluster-wide under concurrent uploads to different
 * nodes; after all three are killed and started again on the same data directories, every adapter
 * is back.
 */
class ClusterAdaptersProcessTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String PROMPT = "The gateway serves adapters to";
    private static final String ACME = "sk-acme";     // max_adapters 2
    private static final String GLOBEX = "sk-globex"; // no limit
    private static final String INITECH = "sk-initech"; // max_adapters 2

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private ClusterNodes cluster;
    private Vertx vertx;
    private Engine twinEngine;

    @AfterEach
    void stop() {
        if (cluster != null) {
            cluster.close();
        }
        if (vertx != null) {
            vertx.close().await();
        }
        if (twinEngine != null) {
            twinEngine.close();
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void anAdapterIsClusterDataUploadedServedListedDeletedAndBackAfterAFullRestart() throws Exception {
        Path model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
        DemoAdapters.Spec spec = DemoAdapters.ALL.get(0);
        Path peft = model.resolve("adapters").resolve(spec.name());
        byte[] config = Files.readAllBytes(peft.resolve("adapter_config.json"));
        byte[] weights = Files.readAllBytes(peft.resolve("adapter_model.safetensors"));
        byte[] otherWeights = Files.readAllBytes(model.resolve("adapters").resolve(DemoAdapters.ALL.get(1).name())
            .resolve("adapter_model.safetensors"));
        byte[] otherConfig = Files.readAllBytes(model.resolve("adapters").resolve(DemoAdapters.ALL.get(1).name())
            .resolve("adapter_config.json"));
        Path keys = Files.writeString(dir.resolve("keys.json"), "{\"tenants\": ["
            + "{\"id\": \"acme\", \"keys\": [\"" + ACME + "\"], \"max_adapters\": 2},"
            + "{\"id\": \"globex\", \"keys\": [\"" + GLOBEX + "\"]},"
            + "{\"id\": \"initech\", \"keys\": [\"" + INITECH + "\"], \"max_adapters\": 2}]}");
        Path secret = Files.writeString(dir.resolve("secret"), "adapters-are-cluster-data\n");
        String twin = twin(model, spec.name());
        JsonNode expected = complete(twin, "", "demo");

        cluster = new ClusterNodes(dir, "t14-adapters");
        List<String> urls = startAll(model, secret, keys);
        String a = urls.get(0);
        String b = urls.get(1);
        String c = urls.get(2);

        // upload on A: 201 only once two data directories hold the files
        HttpResponse<String> up = upload(a, ACME, "bot", config, weights);
        assertEquals(201, up.statusCode(), up.body());
        assertTrue(holders("acme", "bot") >= 2, "files on " + holders("acme", "bot") + " data dirs after the 201");
        // listed on B, readable on C
        assertEquals(List.of("bot"), names(get(b, ACME, "/v1/adapters")));
        assertEquals(200, send(c, ACME, "GET", "/v1/adapters/bot").statusCode());
        // generated through C (round-robin: each of the three nodes runs one), equal to the merged-weights twin
        for (int i = 0; i < 3; i++) {
            assertSameChoice(expected, complete(c, ACME, "bot"), "request " + i + " through C");
        }
        assertEquals(3, holders("acme", "bot"), "the node without a copy fetched one on first use");

        // delete on B: gone on A and C (list, get, generate) and from every disk when the delete returns
        assertEquals(200, send(b, ACME, "DELETE", "/v1/adapters/bot").statusCode());
        for (String url : List.of(a, c)) {
            assertEquals(404, send(url, ACME, "GET", "/v1/adapters/bot").statusCode(), url);
            assertEquals(404, completion(url, ACME, "bot").statusCode(), url);
            assertEquals(List.of(), names(get(url, ACME, "/v1/adapters")), url);
        }
        assertEquals(0, holders("acme", "bot"), "a copy outlived the delete");
        // the quota counts it back: two uploads fit again (on different nodes), the third does not
        assertEquals(201, upload(c, ACME, "bot", config, weights).statusCode());
        assertEquals(201, upload(a, ACME, "bot2", otherConfig, otherWeights).statusCode());
        HttpResponse<String> over = upload(b, ACME, "bot3", config, weights);
        assertEquals(429, over.statusCode(), over.body());

        // one name uploaded to two nodes at once: exactly one 201, the other 409
        List<HttpResponse<String>> same = all(List.of(
            () -> upload(a, GLOBEX, "dup", config, weights), () -> upload(b, GLOBEX, "dup", otherConfig, otherWeights)));
        assertEquals(List.of(201, 409), same.stream().map(HttpResponse::statusCode).sorted().toList(), same.toString());
        // six names to three nodes at once, max_adapters 2: never more than two
        List<Attempt> six = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            String at = urls.get(i % 3);
            String name = "n" + i;
            six.add(() -> upload(at, INITECH, name, config, weights));
        }
        List<Integer> statuses = all(six).stream().map(HttpResponse::statusCode).sorted().toList();
        assertEquals(List.of(201, 201, 429, 429, 429, 429), statuses);
        for (String url : urls) {
            assertEquals(2, names(get(url, INITECH, "/v1/adapters")).size(), url);
        }

        // kill all three (no drain) and start them again on the same data directories
        cluster.close();
        cluster = new ClusterNodes(dir, "t14-adapters");
        urls = startAll(model, secret, keys);
        for (String url : urls) {
            assertEquals(List.of("bot", "bot2"), names(get(url, ACME, "/v1/adapters")), url);
            assertEquals(List.of("dup"), names(get(url, GLOBEX, "/v1/adapters")), url);
        }
        assertSameChoice(expected, complete(urls.get(1), ACME, "bot"), "after the restart");
    }

    /** Starts node-0..2 (round-robin placement, auth from {@code keys}) on fresh ports and waits for one view of three. */
    private List<String> startAll(Path model, Path secret, Path keys) throws Exception {
        int[] ports = ClusterNodes.freePorts(3);
        String members = ClusterNodes.members(ports);
        List<Process> ps = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            ps.add(cluster.start(model, "node-" + i, members, ports[i], secret, "--placement", "round-robin", "--api-keys",
                keys.toString()));
        }
        List<String> urls = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            urls.add(cluster.awaitListening(ps.get(i), "node-" + i));
        }
        for (String url : urls) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(40);
            while (get(url, GLOBEX, "/v1/cluster").get("members").size() < 3 && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            assertEquals(3, get(url, GLOBEX, "/v1/cluster").get("members").size(), url);
        }
        return urls;
    }

    /** How many nodes' data directories hold {@code tenant/name}'s weights. */
    private int holders(String tenant, String name) {
        int n = 0;
        for (int i = 0; i < 3; i++) {
            if (Files.isRegularFile(dir.resolve("data-node-" + i).resolve("adapters").resolve(tenant).resolve(name)
                .resolve("adapter_model.safetensors"))) {
                n++;
            }
        }
        return n;
    }

    /** A server, in this JVM, of the base model with {@code adapter} merged into its weights. */
    private String twin(Path model, String adapter) throws Exception {
        ModelConfig cfg = LlamaModel.load(model).config();
        LoraAdapter a = PeftAdapterReader.readDirectory(adapter, model.resolve("adapters").resolve(adapter), cfg.shape(), 64);
        twinEngine = new Engine(LlamaModel.fromWeights(cfg, LoraHttpTest.merged(cfg, SafeTensors.openDirectory(model), a)),
            new CpuBackend(1), 8);
        vertx = Vertx.vertx();
        return "http://127.0.0.1:" + new ApiServer(vertx, twinEngine, TextTokenizer.load(model), "demo", 256).listen("127.0.0.1", 0).await();
    }

    private static void assertSameChoice(JsonNode twin, JsonNode got, String who) {
        JsonNode x = twin.get("choices").get(0);
        JsonNode y = got.get("choices").get(0);
        assertEquals(x.get("text").asText(), y.get("text").asText(), who + ": text differs from the merged-weights twin");
        JsonNode lx = x.get("logprobs").get("token_logprobs");
        JsonNode ly = y.get("logprobs").get("token_logprobs");
        assertEquals(lx.size(), ly.size(), who);
        for (int i = 0; i < lx.size(); i++) {
            assertTrue(Math.abs(lx.get(i).asDouble() - ly.get(i).asDouble()) <= 1e-4, who + ": token " + i + " logprob differs");
        }
    }

    private JsonNode complete(String base, String key, String model) throws Exception {
        HttpResponse<String> r = completion(base, key, model);
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    private HttpResponse<String> completion(String base, String key, String model) throws Exception {
        String body = "{\"model\":\"" + model + "\",\"prompt\":" + JSON.writeValueAsString(PROMPT)
            + ",\"max_tokens\":12,\"temperature\":0,\"logprobs\":1}";
        return http.send(auth(HttpRequest.newBuilder(URI.create(base + "/v1/completions")), key).timeout(Duration.ofSeconds(60))
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> upload(String base, String key, String name, byte[] config, byte[] weights) throws Exception {
        String boundary = "----cluster-adapters-" + System.nanoTime();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        body.writeBytes(("--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n" + name + "\r\n")
            .getBytes(StandardCharsets.UTF_8));
        for (var part : List.of(new Object[] {"adapter_config", "adapter_config.json", config},
            new Object[] {"adapter_model", "adapter_model.safetensors", weights})) {
            body.writeBytes(("--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + part[0] + "\"; filename=\"" + part[1]
                + "\"\r\nContent-Type: application/octet-stream\r\n\r\n").getBytes(StandardCharsets.UTF_8));
            body.writeBytes((byte[]) part[2]);
            body.writeBytes("\r\n".getBytes(StandardCharsets.US_ASCII));
        }
        body.writeBytes(("--" + boundary + "--\r\n").getBytes(StandardCharsets.US_ASCII));
        return http.send(auth(HttpRequest.newBuilder(URI.create(base + "/v1/adapters")), key).timeout(Duration.ofSeconds(60))
            .header("Content-Type", "multipart/form-data; boundary=" + boundary)
            .POST(HttpRequest.BodyPublishers.ofByteArray(body.toByteArray())).build(), HttpResponse.BodyHandlers.ofString());
    }

    private HttpResponse<String> send(String base, String key, String method, String path) throws Exception {
        return http.send(auth(HttpRequest.newBuilder(URI.create(base + path)), key).timeout(Duration.ofSeconds(30))
            .method(method, HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
    }

    private JsonNode get(String base, String key, String path) throws Exception {
        HttpResponse<String> r = send(base, key, "GET", path);
        assertEquals(200, r.statusCode(), base + path + ": " + r.body());
        return JSON.readTree(r.body());
    }

    private static HttpRequest.Builder auth(HttpRequest.Builder b, String key) {
        return key.isEmpty() ? b : b.header("Authorization", "Bearer " + key);
    }

    private static List<String> names(JsonNode list) {
        List<String> out = new ArrayList<>();
        list.get("data").forEach(a -> out.add(a.get("id").asText()));
        return out;
    }

    /** An HTTP call made in parallel with others. */
    interface Attempt {
        HttpResponse<String> call() throws Exception;
    }

    /** Runs every attempt at once; their responses in order. */
    private static List<HttpResponse<String>> all(List<Attempt> attempts) throws Exception {
        List<CompletableFuture<HttpResponse<String>>> fs = new ArrayList<>();
        for (Attempt t : attempts) {
            fs.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return t.call();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }, r -> new Thread(r).start()));
        }
        List<HttpResponse<String>> out = new ArrayList<>();
        for (var f : fs) {
            out.add(f.get(90, TimeUnit.SECONDS));
        }
        return out;
    }
}
