package dev.loragateway.gateway.cluster;

import dev.loragateway.batcher.ModelConfig;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpClientAgent;
import io.vertx.core.http.HttpClientOptions;
import io.vertx.core.http.PoolOptions;
import java.net.URI;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;

/**
 * The front node's {@link RemoteExecutor}s, one per node address, sharing one HTTP client on a
 * Vert.x instance of their own (a {@link RemoteExecutor#submit} waits for a status line, which must
 * not be awaited on the thread that reads it). HTTP/1.1 with kept-alive connections: a streaming
 * request holds its connection until it ends, so the pool per node is as large as the number of
 * requests one node may have forwarded to it at once ({@code maxStreamsPerNode}).
 */
public final class RemoteExecutors implements Function<String, RemoteExecutor>, AutoCloseable {
    /** How long a submit waits for the executing node to admit the request (it answers as soon as its engine queued it). */
    public static final long ADMIT_MILLIS = 3_000;
    private static final int CONNECT_MILLIS = 2_000;

    private final Vertx vertx = Vertx.vertx();
    private final HttpClientAgent client;
    private final String token;
    private final ModelConfig config;
    private final Map<String, RemoteExecutor> byAddress = new ConcurrentHashMap<>();

    /**
     * @param config            the base model's configuration (the cluster serves one base model)
     * @param secret            the cluster secret's bytes ({@code ClusterMember.secret()}; empty without one)
     * @param maxStreamsPerNode connections kept per node
     */
    public RemoteExecutors(ModelConfig config, byte[] secret, int maxStreamsPerNode) {
        this.config = config;
        this.token = InternalWire.token(secret);
        this.client = vertx.createHttpClient(new HttpClientOptions().setKeepAlive(true).setTcpNoDelay(true)
            .setConnectTimeout(CONNECT_MILLIS), new PoolOptions().setHttp1MaxSize(maxStreamsPerNode));
    }

    /** The executor for the node whose internal listener is at {@code address} (a base URL such as {@code http://127.0.0.1:7001}). */
    @Override
    public RemoteExecutor apply(String address) {
        return byAddress.computeIfAbsent(address, a -> new RemoteExecutor(vertx, client, URI.create(a.endsWith("/") ? a : a + "/"),
            token, config, ADMIT_MILLIS));
    }

    /** Closes the connections (streams still running fail) and the Vert.x instance. */
    @Override
    public void close() {
        client.close().await();
        vertx.close().await();
    }
}
