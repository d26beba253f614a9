package dev.loragateway.batcher;

import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.LongHistogram;
import io.opentelemetry.api.metrics.Meter;
import java.util.List;
import java.util.function.LongSupplier;

/**
 * The engine's instruments, through the OpenTelemetry API (the gateway configures the SDK and
 * exports them; without one they cost nothing):
 *
 * <pre>
 * lora_gateway.engine.queue_depth             gauge      sequences waiting (new: prompts × n; preempted)
 * lora_gateway.engine.running                 gauge      sequences in the running batch
 * lora_gateway.engine.kv_blocks               gauge      KV blocks, attribute state = used | free
 * lora_gateway.engine.preemptions             counter    sequences preempted (blocks freed, recomputed later)
 * lora_gateway.engine.batch_size              histogram  sequences per forward step
 * lora_gateway.engine.step_tokens             histogram  rows (tokens) per forward step
 * lora_gateway.engine.time_to_first_token     histogram  seconds from submit to the first token
 * lora_gateway.engine.time_per_output_token   histogram  seconds per token after the first, per request
 * lora_gateway.engine.prefix_cache_queries    counter    prompt tokens looked up in the prefix cache at admission
 * lora_gateway.engine.prefix_cache_hits       counter    of those, tokens found cached (not computed)
 * </pre>
 */
final class EngineMetrics {
    static final String PREFIX = "lora_gateway.engine.";
    static final AttributeKey<String> STATE = AttributeKey.stringKey("state");
    static final AttributeKey<String> TENANT = AttributeKey.stringKey("tenant");
    /** Seconds: from a millisecond to two minutes. */
    static final List<Double> LATENCY_BUCKETS = List.of(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25,
        0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0);
    static final List<Long> SIZE_BUCKETS = List.of(1L, 2L, 4L, 8L, 16L, 32L, 64L, 128L, 256L, 512L, 1024L, 2048L, 4096L);

    private final LongCounter preemptions;
    private final LongHistogram batchSize;
    private final LongHistogram stepTokens;
    private final DoubleHistogram ttft;
    private final DoubleHistogram tpot;
    private final LongCounter prefixQueries;
    private final LongCounter prefixHits;

    EngineMetrics(Meter meter, LongSupplier queued, LongSupplier running, LongSupplier kvUsed, LongSupplier kvTotal) {
        meter.gaugeBuilder(PREFIX + "queue_depth").ofLongs().setDescription("Sequences waiting to join the running batch")
            .setUnit("{sequence}").buildWithCallback(m -> m.record(queued.getAsLong()));
        meter.gaugeBuilder(PREFIX + "running").ofLongs().setDescription("Sequences in the running batch")
            .setUnit("{sequence}").buildWithCallback(m -> m.record(running.getAsLong()));
        Attributes used = Attributes.of(STATE, "used");
        Attributes free = Attributes.of(STATE, "free");
        meter.gaugeBuilder(PREFIX + "kv_blocks").ofLongs().setDescription("KV-cache blocks by state")
            .setUnit("{block}").buildWithCallback(m -> {
                long u = kvUsed.getAsLong(); // read once: used + free is always the pool
                m.record(u, used);
                m.record(kvTotal.getAsLong() - u, free);
            });
        preemptions = meter.counterBuilder(PREFIX + "preemptions").setDescription("Sequences preempted when the KV pool ran dry")
            .setUnit("{sequence}").build();
        batchSize = meter.histogramBuilder(PREFIX + "batch_size").ofLongs().setDescription("Sequences per forward step")
            .setUnit("{sequence}").setExplicitBucketBoundariesAdvice(SIZE_BUCKETS).build();
        stepTokens = meter.histogramBuilder(PREFIX + "step_tokens").ofLongs().setDescription("Tokens (rows) per forward step")
            .setUnit("{token}").setExplicitBucketBoundariesAdvice(SIZE_BUCKETS).build();
        ttft = meter.histogramBuilder(PREFIX + "time_to_first_token").setDescription("Seconds from submit to the first token")
            .setUnit("s").setExplicitBucketBoundariesAdvice(LATENCY_BUCKETS).build();
        tpot = meter.histogramBuilder(PREFIX + "time_per_output_token")
            .setDescription("Seconds per output token after the first, per request").setUnit("s")
            .setExplicitBucketBoundariesAdvice(LATENCY_BUCKETS).build();
        prefixQueries = meter.counterBuilder(PREFIX + "prefix_cache_queries")
            .setDescription("Prompt tokens looked up in the prefix cache when a sequence is admitted").setUnit("{token}").build();
        prefixHits = meter.counterBuilder(PREFIX + "prefix_cache_hits")
            .setDescription("Prompt tokens found in the prefix cache (reused, not computed)").setUnit("{token}").build();
    }

    void prefixLookup(int queried, int hit) {
        prefixQueries.add(queried);
        prefixHits.add(hit);
    }

    void preempted() {
        preemptions.add(1);
    }

    void step(int sequences, int rows) {
        batchSize.record(sequences);
        stepTokens.record(rows);
    }

    void firstToken(String tenant, long nanos) {
        ttft.record(nanos / 1e9, Attributes.of(TENANT, tenant));
    }

    /** A request made {@code tokens} tokens, the last {@code nanos} after the first. */
    void finished(String tenant, int tokens, long nanos) {
        if (tokens > 1) {
            tpot.record(nanos / 1e9 / (tokens - 1), Attributes.of(TENANT, tenant));
        }
    }
}
