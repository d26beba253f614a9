package dev.loragateway.gateway.cluster;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.ModelConfig;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpClientAgent;
import io.vertx.core.http.HttpClientResponse;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.RequestOptions;
import io.vertx.core.parsetools.RecordParser;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs requests on another node of the cluster, through its {@link InternalApi}: the front node's
 * side of forwarding. Each {@link #submit} is one {@code POST /internal/v1/generate} on a kept-alive
 * connection; the streamed lines feed each choice's sink in order, on the client's event loop (one
 * thread per connection), and complete its future.
 *
 * <p>{@link InferenceExecutor#submit} throws admission errors, so {@code submit} waits for the
 * executing node's status line (one round trip; the node answers it as soon as its engine queued
 * the request) and throws what a local engine would have thrown: {@link Engine.QueueFullException},
 * {@link Engine.RequestTooLargeException}, {@link IllegalArgumentException},
 * {@link Engine.UnavailableException} (also when the node cannot be reached). It must therefore
 * not be called on this executor's own event loop (the factory's Vert.x instance is its own).
 *
 * <p>A sink that says stop completes its choice with {@link Generator.Finish#STOP} (as the engine
 * does) and tells the node to stop it; a cancelled future does the same. A stream that ends or
 * breaks before a choice finished fails that choice with {@link Engine.UnavailableException}; a
 * choice the node gives back (a {@code move} line) fails with {@link Moved}. Resuming either
 * elsewhere is {@link ClusterExecutor}'s job.
 */
public final class RemoteExecutor implements InferenceExecutor {
    private static final Logger LOG = LoggerFactory.getLogger(RemoteExecutor.class);

    private final Vertx vertx;
    private final HttpClientAgent client;
    private final URI base;
    private final String token;
    private final ModelConfig config;
    private final long admitMillis;

    /**
     * @param base        the executing node's internal listener ({@code NodeState.address()}, e.g. {@code http://10.0.0.2:7001})
     * @param token       {@link InternalWire#token} of the cluster secret
     * @param config      the base model's configuration (one base model across the cluster)
     * @param admitMillis how long {@link #submit} waits for the node's status line
     */
    RemoteExecutor(Vertx vertx, HttpClientAgent client, URI base, String token, ModelConfig config, long admitMillis) {
        this.vertx = vertx;
        this.client = client;
        this.base = base;
        this.token = token;
        this.config = config;
        this.admitMillis = admitMillis;
    }

    /** The executing node's internal listener. */
    public URI address() {
        return base;
    }

    @Override
    public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
        io.vertx.core.Context current = Vertx.currentContext();
        if (current != null && current.owner() == vertx) {
            throw new IllegalStateException("RemoteExecutor.submit would wait on its own event loop");
        }
        Stream stream = new Stream(UUID.randomUUID().toString().replace("-", ""), work);
        RequestOptions opts = new RequestOptions().setMethod(HttpMethod.POST).setAbsoluteURI(base.resolve(InternalWire.GENERATE).toString())
            .putHeader(InternalWire.SECRET_HEADER, token).putHeader("Content-Type", "application/json");
        if (work.trace() != null) {
            W3CTraceContextPropagator.getInstance().inject(work.trace(), opts, (o, k, v) -> o.putHeader(k, v));
        }
        Buffer body = Buffer.buffer(InternalWire.request(stream.id, work).toString());
        client.request(opts).onComplete(r -> {
            if (r.failed()) {
                stream.admitted.completeExceptionally(unreachable(r.cause()));
                return;
            }
            // the response's handlers are set here, on the connection's event loop, before the request
            // is sent: a callback added later from this (caller's) thread could miss the first lines
            r.result().response().onComplete(ar -> {
                if (ar.failed()) {
                    stream.admitted.completeExceptionally(unreachable(ar.cause()));
                } else if (ar.result().statusCode() == 200) {
                    stream.read(ar.result());
                } else {
                    HttpClientResponse resp = ar.result();
                    resp.body().onComplete(b -> stream.admitted.completeExceptionally(refusal(resp.statusCode(),
                        b.succeeded() ? b.result() : null)));
                }
            });
            r.result().end(body);
        });
        try {
            stream.admitted.get(admitMillis, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : new Engine.UnavailableException(String.valueOf(e.getCause()));
        } catch (TimeoutException e) {
            stream.abandon();
            throw new Engine.UnavailableException("the cluster node at " + base + " did not answer within " + admitMillis + " ms");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            stream.abandon();
            throw new Engine.UnavailableException("interrupted while forwarding to " + base);
        }
        return stream.futures;
    }

    private Engine.UnavailableException unreachable(Throwable cause) {
        return new Engine.UnavailableException("cannot reach the cluster node at " + base + ": " + cause);
    }

    /** The exception for a status other than 200 before any stream. */
    private RuntimeException refusal(int status, Buffer body) {
        try {
            JsonNode err = InternalWire.MAPPER.readTree(body == null ? new byte[0] : body.getBytes()).path("error");
            return InternalWire.exception(status, err);
        } catch (Exception e) {
            return new Engine.UnavailableException("the cluster node at " + base + " answered " + status);
        }
    }

    /** Tells the node to stop choice {@code c} of stream {@code id} (best effort: a node that is gone stops it anyway). */
    private void stop(String id, int c) {
        RequestOptions opts = new RequestOptions().setMethod(HttpMethod.POST).setAbsoluteURI(base.resolve(InternalWire.CANCEL).toString())
            .putHeader(InternalWire.SECRET_HEADER, token).putHeader("Content-Type", "application/json");
        String body = InternalWire.MAPPER.createObjectNode().put("id", id).put("c", c).toString();
        client.request(opts).compose(req -> req.send(body)).onComplete(ar -> {
            if (ar.failed()) {
                LOG.debug("cancel of choice {} of stream {} at {} failed: {}", c, id, base, ar.cause().toString());
            } else {
                ar.result().body();
            }
        });
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    /** Always null: whether another node serves is what the cluster view and placement know. */
    @Override
    public String unhealthy(long stallNanos) {
        return null;
    }

    /** One forwarded request: its choices (numbered across prompts) and their futures. */
    private final class Stream {
        final String id;
        final String requestId;
        final CompletableFuture<Void> admitted = new CompletableFuture<>();
        final List<List<CompletableFuture<Generator.Finish>>> futures = new ArrayList<>();
        final List<CompletableFuture<Generator.Finish>> flat = new ArrayList<>();
        final List<Generator.TokenSink> sinks = new ArrayList<>();
        private volatile HttpClientResponse response;

        Stream(String id, Work work) {
            this.id = id;
            this.requestId = work.requestId();
            for (Prompt p : work.prompts()) {
                List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
                for (Choice c : p.choices()) {
                    int index = flat.size();
                    CompletableFuture<Generator.Finish> f = new CompletableFuture<>();
                    fs.add(f);
                    flat.add(f);
                    sinks.add(c.sink());
                    f.whenComplete((end, failure) -> {
                        if (f.isCancelled() && admitted.isDone() && !admitted.isCompletedExceptionally()) {
                            stop(id, index);
                        }
                    });
                }
                futures.add(fs);
            }
        }

        /** On the client's event loop: the node admitted the request; its lines follow. */
        void read(HttpClientResponse resp) {
            response = resp;
            if (admitted.isDone()) { // abandoned: the caller stopped waiting
                resp.request().reset();
                return;
            }
            RecordParser lines = RecordParser.newDelimited("\n", resp);
            lines.handler(this::line);
            lines.exceptionHandler(t -> broken("the stream from " + base + " broke: " + t));
            lines.endHandler(v -> broken("the cluster node at " + base + " ended the stream before the choice finished"));
            admitted.complete(null);
        }

        private void line(Buffer line) {
            JsonNode e;
            try {
                e = InternalWire.MAPPER.readTree(line.getBytes());
            } catch (Exception ex) {
                broken("an unreadable line from " + base + ": " + ex.getMessage());
                response.request().reset();
                return;
            }
            int c = e.path("c").asInt(-1);
            if (c < 0 || c >= flat.size()) {
                return;
            }
            CompletableFuture<Generator.Finish> f = flat.get(c);
            if (f.isDone()) {
                return; // stopped or cancelled here; the node's lines for it may still be on the way
            }
            if (e.has("t")) {
                int token = e.get("t").intValue();
                boolean more;
                try {
                    more = sinks.get(c).accept(token, InternalWire.logprobs(token, e.get("lp")));
                } catch (RuntimeException | Error t) {
                    f.completeExceptionally(t);
                    stop(id, c);
                    return;
                }
                if (!more) {
                    f.complete(Generator.Finish.STOP);
                    stop(id, c);
                }
            } else if (e.has("finish")) {
                f.complete("length".equals(e.get("finish").asText()) ? Generator.Finish.LENGTH : Generator.Finish.STOP);
            } else if (e.has("move")) {
                f.completeExceptionally(new Moved(e.get("move").asText(), "the cluster node at " + base + " gave choice " + c
                    + " of request " + requestId + " back (" + e.get("move").asText() + ")"));
            } else if (e.has("error")) {
                f.completeExceptionally(InternalWire.exception(500, e.get("error")));
            }
        }

        private void broken(String why) {
            boolean logged = false;
            for (CompletableFuture<Generator.Finish> f : flat) {
                if (!f.isDone()) {
                    if (!logged) {
                        LOG.warn("forwarded request {}: {}", requestId, why);
                        logged = true;
                    }
                    f.completeExceptionally(new Engine.UnavailableException(why));
                }
            }
        }

        /** The caller gave up waiting: whatever the node does with it, nobody reads it. */
        void abandon() {
            admitted.completeExceptionally(new Engine.UnavailableException("abandoned"));
            HttpClientResponse r = response;
            if (r != null) {
                r.request().reset();
            }
            for (CompletableFuture<Generator.Finish> f : flat) {
                f.cancel(false);
            }
        }
    }
}
