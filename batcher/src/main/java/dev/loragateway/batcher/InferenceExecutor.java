package dev.loragateway.batcher;

import dev.loragateway.adapters.AdapterKey;
import io.opentelemetry.context.Context;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * Where a request runs: the one door between the HTTP inference routes and whatever generates
 * tokens. The local {@link Engine} is behind it today ({@link LocalExecutor}); a cluster router
 * that places requests on other nodes goes behind it next. Token ids go in and come out:
 * tokenization and detokenization stay with the caller.
 *
 * <p>One request, for example {@code /v1/completions} with two prompts and {@code n = 2}:
 * <pre>
 *   submit(Work(requestId, tenant, adapter, [Prompt(p0, [c0, c1]), Prompt(p1, [c2, c3])], trace))
 *     → [[f0, f1], [f2, f3]]     one future per choice, per prompt, in choice order
 * </pre>
 * Each choice's generated token ids (with their log-probabilities when its {@link SamplingParams}
 * ask for them) go to its {@link Generator.TokenSink} as they are made, on the executor's thread;
 * its future completes with the finish reason after the last token, or exceptionally (for example
 * an {@link dev.loragateway.adapters.AdapterLoadException}, {@link Engine.UnavailableException}).
 * Cancelling a future stops that choice.
 */
public interface InferenceExecutor {
    /** One choice to generate: its sampling (seed included) and where its tokens go. */
    record Choice(SamplingParams params, Generator.TokenSink sink) {
    }

    /** One prompt's token ids and its choices ({@code n} of them), which share its prefill. */
    record Prompt(int[] tokens, List<Choice> choices) {
    }

    /**
     * One request.
     *
     * @param requestId the gateway's id of the request ({@code X-Request-Id}), for logs
     * @param tenant    the caller's tenant, for fair admission
     * @param adapter   the adapter every prompt runs with, or null for the base model
     * @param prompts   one or more prompts, each with its choices
     * @param trace     the request's OpenTelemetry context: the executor's spans become its children
     */
    record Work(String requestId, String tenant, AdapterKey adapter, List<Prompt> prompts, Context trace) {
    }

    /**
     * Queues every prompt of {@code work}, all or none. Futures come per prompt, in choice order.
     *
     * @throws Engine.QueueFullException when there is no room for the request now (nothing is queued)
     * @throws Engine.RequestTooLargeException when the request could never be queued
     * @throws IllegalArgumentException for a prompt that cannot run (empty, a token outside the
     *     vocabulary, too long for the KV cache)
     * @throws Engine.UnavailableException when the executor has stopped
     */
    List<List<CompletableFuture<Generator.Finish>>> submit(Work work);

    /** The base model's configuration (vocabulary size and end-of-sequence tokens, for the caller's checks). */
    ModelConfig config();

    /**
     * Why requests cannot be served now, or null when they can: the executor has stopped, or work
     * waits and nothing has progressed for {@code stallNanos} (what {@code /health} reports).
     */
    String unhealthy(long stallNanos);
}
