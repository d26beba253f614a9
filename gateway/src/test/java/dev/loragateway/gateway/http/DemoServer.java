package dev.loragateway.gateway.http;

import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.function.UnaryOperator;

/**
 * A server of the tiny demo model written into a folder, base model only (no adapters): its
 * engine (2 CPU threads), tokenizer and port, and a JSON {@link #post}. What the HTTP tests that
 * need no adapters start in {@code @BeforeAll} and close in {@code @AfterAll}.
 */
final class DemoServer implements AutoCloseable {
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    final LlamaModel model;
    final TextTokenizer tokenizer;
    final Engine engine;
    final Vertx vertx;
    final int port;
    final String base;

    private DemoServer(Path dir, int maxQueued, int maxModelLen, UnaryOperator<ApiServer> configure) throws Exception {
        DemoModel.write(dir, DemoModel.Options.tiny());
        model = LlamaModel.load(dir);
        tokenizer = TextTokenizer.load(dir);
        engine = new Engine(model, new CpuBackend(2), maxQueued);
        vertx = Vertx.vertx();
        port = configure.apply(new ApiServer(vertx, engine, tokenizer, "demo", maxModelLen)).listen("127.0.0.1", 0).await();
        base = "http://127.0.0.1:" + port;
    }

    /** The demo model in {@code dir}; an engine queue of {@code maxQueued}; {@code --max-model-len maxModelLen}. */
    static DemoServer start(Path dir, int maxQueued, int maxModelLen) throws Exception {
        return new DemoServer(dir, maxQueued, maxModelLen, s -> s);
    }

    /** As {@link #start(Path, int, int)}, the server set up by {@code configure} before it listens. */
    static DemoServer start(Path dir, int maxQueued, int maxModelLen, UnaryOperator<ApiServer> configure) throws Exception {
        return new DemoServer(dir, maxQueued, maxModelLen, configure);
    }

    /** POSTs {@code body} as JSON to {@code path}. */
    HttpResponse<String> post(String path, String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base + path)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    @Override
    public void close() {
        vertx.close().await();
        engine.close();
    }
}
