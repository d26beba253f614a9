package dev.loragateway.adapters;

import java.nio.file.Path;
import java.util.List;

/**
 * A registered adapter as the registry lists it (no weights: {@link AdapterRegistry#loadWeights}
 * reads those). Maps onto the API's adapter object: {@code id} = {@link #name()},
 * {@code owned_by} = {@link #tenant()}, {@code rank}, {@code alpha}, {@code target_modules},
 * {@code bytes}, {@code created}.
 *
 * @param key identity across tenants (cache and slot key)
 * @param tenant the owning tenant, or {@code "system"} for {@code --lora-modules} adapters
 * @param name the adapter's name, the {@code model} id requests use
 * @param rank the config's {@code r}
 * @param alpha the config's {@code lora_alpha}
 * @param targets targeted modules as PEFT names, in {@link LoraModule} order
 * @param bytes size of the tensors as stored
 * @param created registration time, epoch seconds
 * @param directory the PEFT directory holding {@code adapter_config.json} and
 *     {@code adapter_model.safetensors}; null for an adapter of the cluster that this node holds no
 *     copy of (yet: it fetches one on first use)
 * @param sha256 identifies an uploaded adapter's content across nodes and restarts
 *     ({@link AdapterRegistry#digest}); null for a system adapter
 */
public record AdapterInfo(AdapterKey key, String tenant, String name, int rank, double alpha,
                          List<String> targets, long bytes, long created, Path directory, String sha256) {
    public AdapterInfo {
        targets = List.copyOf(targets);
    }

    /** True for a {@code --lora-modules} adapter, visible to every tenant and not deletable by them. */
    public boolean system() {
        return key.system();
    }
}
