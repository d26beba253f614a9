package dev.loragateway.adapters;

import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;

/**
 * The adapter tiers in front of the engine, wired as {@code serve} wires them: a {@link HostTier}
 * of parsed adapters over a reader, and a {@link DeviceTier} of slots over it, both keyed by
 * {@link AdapterKey}. The engine pins adapters in {@link #device()}; deleting or replacing an
 * adapter invalidates it there.
 */
public final class AdapterTiers {
    private final HostTier<AdapterKey> host;
    private final DeviceTier<AdapterKey> device;

    /**
     * @param shape     the base model's shape (the slots' widths)
     * @param slots     device slots ({@code --gpu-adapter-slots})
     * @param slotBytes most bytes resident in the slots at once ({@code --adapter-slot-mb})
     * @param hostBytes the host cache's capacity ({@code --host-cache-mb})
     * @param reader    reads an adapter on a host-cache miss; what it throws fails that load
     * @param loader    runs loads and slot writes off the engine thread
     */
    public AdapterTiers(ModelShape shape, int slots, long slotBytes, long hostBytes, Function<AdapterKey, LoraAdapter> reader,
                        Executor loader) {
        this.host = new HostTier<>(hostBytes, reader);
        this.device = new DeviceTier<>(new LoraSlotPool(slots, shape.layers(), shape.ins(), shape.outs()), slotBytes, host, loader);
    }

    /**
     * Tiers over the adapters of {@code registry}: a host-cache miss reads the registered adapter's
     * weights from disk; one no longer registered (deleted meanwhile) fails its load.
     */
    public static AdapterTiers of(AdapterRegistry registry, int slots, long slotBytes, long hostBytes, Executor loader) {
        return of(registry, slots, slotBytes, hostBytes, loader, registry::get);
    }

    /**
     * Tiers whose host-cache misses ask {@code resolve} where the adapter's files are (it may fetch
     * them first: in a cluster, from another node; it runs on the loader) and read them from
     * {@code registry}; an empty answer (deleted meanwhile) fails that load.
     */
    public static AdapterTiers of(AdapterRegistry registry, int slots, long slotBytes, long hostBytes, Executor loader,
                                  Function<AdapterKey, java.util.Optional<AdapterInfo>> resolve) {
        return new AdapterTiers(registry.shape(), slots, slotBytes, hostBytes, key -> resolve.apply(key)
            .map(registry::loadWeights)
            .orElseThrow(() -> new IllegalArgumentException("adapter " + key + " no longer exists")), loader);
    }

    /** A loader for the tiers: one daemon thread named {@code adapter-loader}, which never keeps the JVM up. */
    public static ExecutorService loaderThread() {
        return Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "adapter-loader");
            t.setDaemon(true);
            return t;
        });
    }

    /** The warm tier: parsed adapters in host memory. */
    public HostTier<AdapterKey> host() {
        return host;
    }

    /** The hot tier: adapters in slots, pinned by the engine. */
    public DeviceTier<AdapterKey> device() {
        return device;
    }
}
