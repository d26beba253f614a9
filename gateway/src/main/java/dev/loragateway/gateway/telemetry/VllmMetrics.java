package dev.loragateway.gateway.telemetry;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Engine;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricMetadata;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.TreeSet;
import java.util.function.Supplier;

/**
 * The engine gauges under vLLM's names, for tools that scrape a vLLM server: the Gateway API
 * Inference Extension's endpoint picker (llm-d's too) reads the queue, the KV-cache use and the
 * LoRA adapters of each server from them.
 *
 * <pre>
 * vllm:num_requests_waiting{model_name,engine}   sequences waiting: queued (new) plus preempted
 * vllm:num_requests_running{model_name,engine}   sequences in the running batch
 * vllm:kv_cache_usage_perc{model_name,engine}    KV blocks in use / all KV blocks, 0 to 1
 * vllm:gpu_cache_usage_perc{model_name,engine}   the same value, under vLLM's older name
 * vllm:lora_requests_info{max_lora,              unix time (s) the two adapter lists last changed;
 *   running_lora_adapters,waiting_lora_adapters}  labels: the hot tier's slots, comma-separated names
 * vllm:prefix_cache_queries_total{model_name,engine}  counter: prompt tokens looked up in the prefix cache
 * vllm:prefix_cache_hits_total{model_name,engine}     counter: of those, tokens found cached
 * </pre>
 *
 * The adapter names are what clients send as {@code model}; sorted, each once (two tenants' adapters
 * of one name show as one). In the tenant-free view both lists are empty strings: the series stays
 * (the picker still reads {@code max_lora}) but names no adapter. vLLM has no {@code model_name} on
 * {@code lora_requests_info}, and neither do we.
 *
 * <p>They are Prometheus snapshots added to the client's own at each scrape ({@link Telemetry#scrape}),
 * not OpenTelemetry instruments: an instrument's name cannot hold the {@code :} of these names (the
 * exporter would write it as {@code _}). The snapshots go through the same text writer, so each
 * name has one {@code # HELP} and one {@code # TYPE}, and a name clash fails loudly.
 */
public final class VllmMetrics {
    /** What the gauges show at one moment. */
    public record State(long waiting, long running, double kvUsage, Collection<String> runningAdapters,
                        Collection<String> waitingAdapters, long adaptersSinceMillis, long prefixQueries, long prefixHits) {
        /** A state without prefix-cache counts (0 and 0). */
        public State(long waiting, long running, double kvUsage, Collection<String> runningAdapters,
                     Collection<String> waitingAdapters, long adaptersSinceMillis) {
            this(waiting, running, kvUsage, runningAdapters, waitingAdapters, adaptersSinceMillis, 0, 0);
        }
    }

    private final String modelName;
    private final int maxLora;
    private final Supplier<State> state;

    /**
     * @param modelName the served base model's id (vLLM's {@code model_name} label)
     * @param maxLora   adapters resident at once ({@code --gpu-adapter-slots}, vLLM's {@code --max-loras})
     */
    public VllmMetrics(String modelName, int maxLora, Supplier<State> state) {
        this.modelName = modelName;
        this.maxLora = maxLora;
        this.state = state;
    }

    /** The gauges of a local {@code engine}, read at each scrape. */
    public static VllmMetrics of(Engine engine, String modelName, int maxLora) {
        return new VllmMetrics(modelName, maxLora, () -> {
            Engine.AdapterUse use = engine.adapterUse();
            int total = engine.kvBlocksTotal();
            return new State(engine.queued() + engine.preemptedWaiting(), engine.running(),
                total == 0 ? 0 : (double) engine.kvBlocksUsed() / total, names(use.running()), names(use.waiting()), use.sinceMillis(),
                engine.prefixCacheQueries(), engine.prefixCacheHits());
        });
    }

    /** The public names of {@code keys}, sorted, each once. */
    static List<String> names(Collection<AdapterKey> keys) {
        TreeSet<String> names = new TreeSet<>();
        keys.forEach(k -> names.add(k.name()));
        return List.copyOf(names);
    }

    /** The seven metrics now; with {@code adapterNames} false the two adapter lists are empty strings. */
    List<MetricSnapshot> snapshots(boolean adapterNames) {
        State s = state.get();
        Labels engine = Labels.of("model_name", modelName, "engine", "0");
        double usage = Math.max(0, Math.min(1, s.kvUsage()));
        List<MetricSnapshot> out = new ArrayList<>();
        out.add(gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", engine, s.waiting()));
        out.add(gauge("vllm:num_requests_running", "Number of requests in model execution batches.", engine, s.running()));
        out.add(gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", engine, usage));
        out.add(gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage (vllm:kv_cache_usage_perc).",
            engine, usage));
        Labels lora = Labels.of("max_lora", Integer.toString(maxLora),
            "running_lora_adapters", adapterNames ? String.join(",", s.runningAdapters()) : "",
            "waiting_lora_adapters", adapterNames ? String.join(",", s.waitingAdapters()) : "");
        out.add(gauge("vllm:lora_requests_info", "Running stats on lora requests.", lora, s.adaptersSinceMillis() / 1000.0));
        out.add(counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", engine,
            s.prefixQueries()));
        out.add(counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", engine, s.prefixHits()));
        return out;
    }

    /** A counter; the text writer adds {@code _total} to its name, as vLLM's counters have it. */
    private static CounterSnapshot counter(String name, String help, Labels labels, double value) {
        return new CounterSnapshot(new MetricMetadata(name, help),
            List.of(CounterSnapshot.CounterDataPointSnapshot.builder().labels(labels).value(value).build()));
    }

    private static GaugeSnapshot gauge(String name, String help, Labels labels, double value) {
        return new GaugeSnapshot(new MetricMetadata(name, help),
            List.of(GaugeSnapshot.GaugeDataPointSnapshot.builder().labels(labels).value(value).build()));
    }
}
