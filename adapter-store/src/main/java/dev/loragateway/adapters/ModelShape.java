package dev.loragateway.adapters;

/**
 * The dimensions of the base model that an adapter must fit: the number of decoder layers and each
 * projection's {@code in} and {@code out} width ({@code W: out×in}, so LoRA {@code A: r×in},
 * {@code B: out×r}).
 *
 * @param layers number of decoder layers
 * @param hidden hidden size
 * @param intermediate MLP intermediate size
 * @param qDim query projection width ({@code heads · headDim})
 * @param kvDim key/value projection width ({@code kvHeads · headDim})
 */
public record ModelShape(int layers, int hidden, int intermediate, int qDim, int kvDim) {

    public int in(LoraModule m) {
        return switch (m) {
            case Q_PROJ, K_PROJ, V_PROJ, GATE_PROJ, UP_PROJ -> hidden;
            case O_PROJ -> qDim;
            case DOWN_PROJ -> intermediate;
        };
    }

    public int out(LoraModule m) {
        return switch (m) {
            case Q_PROJ -> qDim;
            case K_PROJ, V_PROJ -> kvDim;
            case O_PROJ, DOWN_PROJ -> hidden;
            case GATE_PROJ, UP_PROJ -> intermediate;
        };
    }

    /** {@code in} widths indexed by {@link LoraModule#ordinal()}. */
    public int[] ins() {
        int[] r = new int[LoraModule.COUNT];
        for (LoraModule m : LoraModule.values()) {
            r[m.ordinal()] = in(m);
        }
        return r;
    }

    /** {@code out} widths indexed by {@link LoraModule#ordinal()}. */
    public int[] outs() {
        int[] r = new int[LoraModule.COUNT];
        for (LoraModule m : LoraModule.values()) {
            r[m.ordinal()] = out(m);
        }
        return r;
    }
}
