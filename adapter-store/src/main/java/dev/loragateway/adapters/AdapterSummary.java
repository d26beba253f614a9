package dev.loragateway.adapters;

import java.util.List;

/**
 * What validation learned about an adapter without keeping its weights: the config's {@code r} and
 * {@code lora_alpha}, the modules it targets and the bytes of its tensors as stored.
 *
 * @param rank the config's {@code r}
 * @param alpha the config's {@code lora_alpha}
 * @param targets modules adapted in at least one layer, in {@link LoraModule} order
 * @param storedBytes sum of the tensors' sizes in the safetensors file
 */
public record AdapterSummary(int rank, double alpha, List<LoraModule> targets, long storedBytes) {
    public AdapterSummary {
        targets = List.copyOf(targets);
    }

    /** The targets as PEFT names ({@code q_proj}, ...). */
    public List<String> targetNames() {
        return targets.stream().map(LoraModule::peftName).toList();
    }
}
