package dev.loragateway.gateway.cluster;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.HostTier;
import dev.loragateway.batcher.Engine;
import dev.loragateway.scheduler.NodeState;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.stream.Collectors;

/**
 * This node's {@link NodeState}, read from its engine (batch, queue, KV blocks, step time), its
 * adapter tiers (resident in device slots, warm in host memory) and whether it drains: the supplier
 * the cluster member publishes every refresh and on {@code publishNow}. {@code address} is the base
 * URL of this node's internal listener (where other nodes forward requests), read at each publish.
 */
public record LocalNodeState(String nodeId, Supplier<String> address, String backend, Engine engine, DeviceTier<AdapterKey> device,
                             HostTier<AdapterKey> host, BooleanSupplier draining) implements Supplier<NodeState> {
    @Override
    public NodeState get() {
        int total = engine.kvBlocksTotal();
        return new NodeState(nodeId, address.get(), backend, engine.running(), engine.queued(), engine.options().maxBatch(),
            total - engine.kvBlocksUsed(), total, engine.kvBlockSize(), keys(device.residentKeys()), keys(host.keys()),
            engine.stepMillis(), draining.getAsBoolean(), System.currentTimeMillis());
    }

    private static Set<String> keys(java.util.Collection<AdapterKey> keys) {
        return keys.stream().map(AdapterKey::toString).collect(Collectors.toUnmodifiableSet());
    }
}
