package dev.loragateway.adapters;

import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.util.List;

/**
 * A validated LoRA adapter held in host memory (the warm tier): for every decoder layer and module
 * it targets, {@code A: rank×in} and {@code B: out×rank} as float32, and the scaling PEFT applies
 * ({@code alpha / rank}, or {@code alpha / sqrt(rank)} with rsLoRA; per module when
 * {@code rank_pattern} / {@code alpha_pattern} say so).
 *
 * <p>The update to a targeted projection is {@code y += scaling · B·(A·x)}.
 */
public final class LoraAdapter implements LoraSlotPool.Source {
    /** One targeted (layer, module): {@code a} is {@code (rank, in)} row-major, {@code b} is {@code (out, rank)}. */
    public record Part(int rank, float scaling, float[] a, float[] b) {
    }

    private final String name;
    private final int rank;
    private final double alpha;
    private final List<LoraModule> targets;
    private final long storedBytes;
    private final Part[][] parts; // [layer][module], null where not targeted

    public LoraAdapter(String name, int rank, double alpha, List<LoraModule> targets, long storedBytes, Part[][] parts) {
        this.name = name;
        this.rank = rank;
        this.alpha = alpha;
        this.targets = List.copyOf(targets);
        this.storedBytes = storedBytes;
        this.parts = parts;
    }

    public String name() {
        return name;
    }

    /** The config's {@code r}. */
    public int rank() {
        return rank;
    }

    /** The config's {@code lora_alpha}. */
    public double alpha() {
        return alpha;
    }

    /** The modules targeted in at least one layer, in {@link LoraModule} order. */
    public List<LoraModule> targets() {
        return targets;
    }

    public int layers() {
        return parts.length;
    }

    /** The adapter's tensors as stored in its safetensors file (what {@code bytes} reports). */
    public long storedBytes() {
        return storedBytes;
    }

    /** The part for {@code (layer, module)}, or null when that projection is not adapted. */
    public Part part(int layer, LoraModule m) {
        return parts[layer][m.ordinal()];
    }

    @Override
    public int rank(int layer, int module) {
        Part p = parts[layer][module];
        return p == null ? 0 : p.rank();
    }

    @Override
    public float scaling(int layer, int module) {
        Part p = parts[layer][module];
        return p == null ? 0f : p.scaling();
    }

    @Override
    public float[] a(int layer, int module) {
        return parts[layer][module].a();
    }

    @Override
    public float[] b(int layer, int module) {
        return parts[layer][module].b();
    }

    /** Bytes this adapter occupies as float32 in memory (the host tier's weight). */
    public long floatBytes() {
        long n = 0;
        for (Part[] layer : parts) {
            for (Part p : layer) {
                if (p != null) {
                    n += 4L * (p.a().length + p.b().length);
                }
            }
        }
        return n;
    }
}
