package dev.loragateway.gateway.http;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.HostTier;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.text.TextTokenizer;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * What the HTTP tests serve: the tiny demo model written to a folder, its tokenizer, an adapter
 * registry over {@code dir/data} (with the four demo adapters as system adapters, or none), and
 * the host and device tiers in front of it, as {@code serve} builds them. The caller shuts
 * {@link #loader} down.
 */
public final class DemoStack {
    public final LlamaModel model;
    public final ModelConfig cfg;
    public final TextTokenizer tokenizer;
    public final AdapterRegistry registry;
    public final HostTier<AdapterKey> host;
    public final DeviceTier<AdapterKey> device;
    public final ExecutorService loader = Executors.newSingleThreadExecutor();

    private DemoStack(Path dir, int slots, boolean systemAdapters) throws Exception {
        DemoModel.write(dir, DemoModel.Options.tiny());
        model = LlamaModel.load(dir);
        cfg = model.config();
        tokenizer = TextTokenizer.load(dir);
        registry = new AdapterRegistry(dir.resolve("data"), cfg.shape(), DemoModel.MODEL_ID, 64);
        registry.load();
        if (systemAdapters) {
            for (DemoAdapters.Spec s : DemoAdapters.ALL) {
                registry.registerSystem(s.name(), dir.resolve("adapters").resolve(s.name()));
            }
        }
        AdapterTiers tiers = AdapterTiers.of(registry, slots, Long.MAX_VALUE, 1 << 26, loader);
        host = tiers.host();
        device = tiers.device();
    }

    /** The demo model in {@code dir} with {@code slots} device slots for adapters. */
    public static DemoStack create(Path dir, int slots, boolean systemAdapters) throws Exception {
        return new DemoStack(dir, slots, systemAdapters);
    }
}
