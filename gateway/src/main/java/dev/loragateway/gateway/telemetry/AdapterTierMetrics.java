package dev.loragateway.gateway.telemetry;

import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.HostTier;
import dev.loragateway.adapters.TierStats;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.Meter;
import java.util.List;
import java.util.function.LongSupplier;

/**
 * The adapter tiers' {@link TierStats} as observable instruments, read at each collection (names
 * as Prometheus shows them; {@code tier} is {@code host} (parsed adapters in memory) or
 * {@code device} (the slots the kernels read)):
 *
 * <pre>
 * lora_gateway_adapter_cache_hits_total{tier}               was already there
 * lora_gateway_adapter_cache_misses_total{tier}             had to be loaded from the tier below
 * lora_gateway_adapter_cache_evictions_total{tier}
 * lora_gateway_adapter_cache_loads_total{tier}              loads finished
 * lora_gateway_adapter_cache_load_time_seconds_total{tier}  time those loads took (÷ loads = mean)
 * lora_gateway_adapter_cache_load_time_max_seconds{tier}    the slowest load so far
 * lora_gateway_adapter_cache_size_bytes{tier}               bytes held now
 * </pre>
 */
final class AdapterTierMetrics {
    static final AttributeKey<String> TIER = AttributeKey.stringKey("tier");
    private static final String PREFIX = "lora_gateway.adapter_cache.";

    private AdapterTierMetrics() {
    }

    /** A tier's stats, its label, and its bytes now. */
    private record Tier(TierStats stats, Attributes attrs, LongSupplier bytes) {
    }

    static void register(Meter meter, HostTier<?> host, DeviceTier<?> device) {
        List<Tier> tiers = List.of(
            new Tier(host.stats(), Attributes.of(TIER, "host"), host::bytes),
            new Tier(device.stats(), Attributes.of(TIER, "device"), device::usedBytes));
        meter.counterBuilder(PREFIX + "hits").setDescription("Adapter lookups the tier answered").setUnit("{lookup}")
            .buildWithCallback(m -> tiers.forEach(t -> m.record(t.stats().hits(), t.attrs())));
        meter.counterBuilder(PREFIX + "misses").setDescription("Adapter lookups the tier had to load from below").setUnit("{lookup}")
            .buildWithCallback(m -> tiers.forEach(t -> m.record(t.stats().misses(), t.attrs())));
        meter.counterBuilder(PREFIX + "evictions").setDescription("Adapters evicted from the tier").setUnit("{adapter}")
            .buildWithCallback(m -> tiers.forEach(t -> m.record(t.stats().evictions(), t.attrs())));
        meter.counterBuilder(PREFIX + "loads").setDescription("Adapter loads into the tier finished").setUnit("{adapter}")
            .buildWithCallback(m -> tiers.forEach(t -> m.record(t.stats().loads(), t.attrs())));
        meter.counterBuilder(PREFIX + "load_time").ofDoubles().setDescription("Seconds spent loading adapters into the tier")
            .setUnit("s").buildWithCallback(m -> tiers.forEach(t -> m.record(t.stats().loadNanos() / 1e9, t.attrs())));
        meter.gaugeBuilder(PREFIX + "load_time_max").setDescription("Seconds the slowest adapter load into the tier took")
            .setUnit("s").buildWithCallback(m -> tiers.forEach(t -> m.record(t.stats().maxLoadMillis() / 1e3, t.attrs())));
        meter.gaugeBuilder(PREFIX + "size").ofLongs().setDescription("Bytes of adapters the tier holds").setUnit("By")
            .buildWithCallback(m -> tiers.forEach(t -> m.record(t.bytes().getAsLong(), t.attrs())));
    }
}
