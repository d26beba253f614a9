package dev.loragateway.adapters;

import java.util.Locale;
import java.util.Optional;

/**
 * The seven dense projections of a Llama-family decoder layer that a LoRA adapter may target, in
 * the order the slot pool and the forward pass index them ({@link #ordinal()}).
 */
public enum LoraModule {
    Q_PROJ("self_attn"),
    K_PROJ("self_attn"),
    V_PROJ("self_attn"),
    O_PROJ("self_attn"),
    GATE_PROJ("mlp"),
    UP_PROJ("mlp"),
    DOWN_PROJ("mlp");

    /** Number of modules; the slot pool's module axis. */
    public static final int COUNT = values().length;

    private final String block;

    LoraModule(String block) {
        this.block = block;
    }

    /** PEFT's name, e.g. {@code q_proj}. */
    public String peftName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** {@code self_attn} or {@code mlp}: the block the module sits in, as in HF weight names. */
    public String block() {
        return block;
    }

    /** The module PEFT calls {@code name} ({@code q_proj}, ...), if it is one of ours. */
    public static Optional<LoraModule> ofPeftName(String name) {
        for (LoraModule m : values()) {
            if (m.peftName().equals(name)) {
                return Optional.of(m);
            }
        }
        return Optional.empty();
    }
}
