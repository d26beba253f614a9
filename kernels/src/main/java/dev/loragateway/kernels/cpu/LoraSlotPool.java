package dev.loragateway.kernels.cpu;

import java.util.Arrays;

/**
 * The device tier of LoRA adapters on the CPU backend: a fixed number of slots, each holding one
 * adapter packed into a single array (float32, or bf16 pairs when the adapter is exactly bf16; see
 * {@link Bf16Rows}; offsets below then count int words of that layout). For every (layer, module) the adapter targets, the
 * slot holds {@code A: (r, in)} row-major followed by {@code Bᵀ: (r, out)} row-major (B is stored
 * transposed so the expand kernel reads whole output rows), and the scaling to apply. Ranks may
 * differ per adapter and per (layer, module); nothing is padded to a common rank.
 *
 * <p>Layout of slot s (worked example, 1 layer, modules q (in 4, out 4) r=2 and v (in 4, out 2) r=2):
 * {@code data[s] = [A_q (2×4) | Bᵀ_q (2×4) | A_v (2×4) | Bᵀ_v (2×2)]}, {@code offA[s][0][q] = 0},
 * {@code offB[s][0][q] = 8}, {@code offA[s][0][v] = 16}, {@code offB[s][0][v] = 24}.
 *
 * <p>Threading: {@link #write} and {@link #clear} of one slot may run on a loader thread while the
 * compute thread reads <em>other</em> slots; the caller publishes a written slot to the compute
 * thread through a synchronised hand-off (the adapter store does) and never writes a slot in use.
 */
public final class LoraSlotPool {
    /** An adapter as the pool reads it: ranks, scalings and weights per (layer, module). */
    public interface Source {
        /** Rank of {@code (layer, module)}, 0 when that projection is not adapted. */
        int rank(int layer, int module);

        /** Scaling PEFT applies to {@code (layer, module)}. */
        float scaling(int layer, int module);

        /** {@code A: (rank, in)} row-major. */
        float[] a(int layer, int module);

        /** {@code B: (out, rank)} row-major, as PEFT stores it. */
        float[] b(int layer, int module);
    }

    private final int layers;
    private final int[] ins;
    private final int[] outs;
    private final float[][] data;     // [slot] float32 weights, null when empty or bf16
    private final int[][] packed;     // [slot] bf16 weights in Bf16Rows layout, null when empty or float32
    private final int[][][] ranks;    // [slot][layer][module]
    private final float[][][] scale;  // [slot][layer][module]
    private final int[][][] offA;     // [slot][layer][module]
    private final int[][][] offB;     // [slot][layer][module]
    private final int[] maxRank;      // [slot]
    private final long[] generation;  // [slot] bumped by every write and clear

    /**
     * @param slots number of slots
     * @param layers decoder layers
     * @param ins input width per module index
     * @param outs output width per module index
     */
    public LoraSlotPool(int slots, int layers, int[] ins, int[] outs) {
        if (slots < 1 || layers < 1 || ins.length != outs.length || ins.length == 0) {
            throw new IllegalArgumentException("bad slot pool shape: slots " + slots + ", layers " + layers
                + ", modules " + ins.length + "/" + outs.length);
        }
        this.layers = layers;
        this.ins = ins.clone();
        this.outs = outs.clone();
        int m = ins.length;
        this.data = new float[slots][];
        this.packed = new int[slots][];
        this.ranks = new int[slots][layers][m];
        this.scale = new float[slots][layers][m];
        this.offA = new int[slots][layers][m];
        this.offB = new int[slots][layers][m];
        this.maxRank = new int[slots];
        this.generation = new long[slots];
    }

    public int slots() {
        return data.length;
    }

    public int layers() {
        return layers;
    }

    public int modules() {
        return ins.length;
    }

    public int in(int module) {
        return ins[module];
    }

    public int out(int module) {
        return outs[module];
    }

    /**
     * Floats an adapter with these ranks occupies in a slot: {@code Σ r·(in + out)} over its
     * (layer, module) parts.
     */
    public long floatsFor(Source src) {
        long n = 0;
        for (int l = 0; l < layers; l++) {
            for (int m = 0; m < ins.length; m++) {
                n += (long) src.rank(l, m) * (ins[m] + outs[m]);
            }
        }
        return n;
    }

    /**
     * Packs {@code src} into {@code slot}, replacing what was there; returns the bytes the slot now
     * holds. Shapes are checked ({@code a.length == r·in}, {@code b.length == out·r}). An adapter
     * whose every value is exactly a bfloat16 (as when PEFT saved it in bf16) is stored as bf16,
     * losslessly, in half the bytes; any other is stored as float32.
     */
    public long write(int slot, Source src) {
        boolean half = true;
        for (int l = 0; l < layers && half; l++) {
            for (int m = 0; m < ins.length && half; m++) {
                if (src.rank(l, m) > 0) {
                    half = Bf16Rows.exact(src.a(l, m)) && Bf16Rows.exact(src.b(l, m));
                }
            }
        }
        long words = 0;
        for (int l = 0; l < layers; l++) {
            for (int m = 0; m < ins.length; m++) {
                int r = src.rank(l, m);
                words += half ? (long) r * (Bf16Rows.words(ins[m]) + Bf16Rows.words(outs[m])) : (long) r * (ins[m] + outs[m]);
            }
        }
        if (words > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("adapter of " + words + " words does not fit one slot array");
        }
        float[] d = half ? null : new float[(int) words];
        int[] p = half ? new int[(int) words] : null;
        float[] row = new float[0];
        int pos = 0;
        int max = 0;
        for (int l = 0; l < layers; l++) {
            for (int m = 0; m < ins.length; m++) {
                int r = src.rank(l, m);
                ranks[slot][l][m] = r;
                if (r == 0) {
                    scale[slot][l][m] = 0f;
                    offA[slot][l][m] = 0;
                    offB[slot][l][m] = 0;
                    continue;
                }
                max = Math.max(max, r);
                int in = ins[m];
                int out = outs[m];
                float[] a = src.a(l, m);
                float[] b = src.b(l, m);
                if (a.length != r * in || b.length != out * r) {
                    ranks[slot][l][m] = 0;
                    throw new IllegalArgumentException("layer " + l + " module " + m + ": A has " + a.length
                        + " values (need " + r * in + "), B has " + b.length + " (need " + out * r + ")");
                }
                scale[slot][l][m] = src.scaling(l, m);
                offA[slot][l][m] = pos;
                for (int k = 0; k < r; k++) {
                    if (half) {
                        pos = Bf16Rows.pack(a, k * in, in, p, pos);
                    } else {
                        System.arraycopy(a, k * in, d, pos, in);
                        pos += in;
                    }
                }
                offB[slot][l][m] = pos;
                if (row.length < out) {
                    row = new float[out];
                }
                for (int k = 0; k < r; k++) {          // Bᵀ[k][o] = B[o][k]
                    for (int o = 0; o < out; o++) {
                        row[o] = b[o * r + k];
                    }
                    if (half) {
                        pos = Bf16Rows.pack(row, 0, out, p, pos);
                    } else {
                        System.arraycopy(row, 0, d, pos, out);
                        pos += out;
                    }
                }
            }
        }
        maxRank[slot] = max;
        data[slot] = d;
        packed[slot] = p;
        generation[slot]++;
        return bytes(slot);
    }

    /** Empties {@code slot}. */
    public void clear(int slot) {
        data[slot] = null;
        packed[slot] = null;
        maxRank[slot] = 0;
        for (int[] r : ranks[slot]) {
            Arrays.fill(r, 0);
        }
        generation[slot]++;
    }

    public boolean occupied(int slot) {
        return data[slot] != null || packed[slot] != null;
    }

    /** Whether {@code slot} holds its adapter as bf16 (else float32). */
    public boolean isBf16(int slot) {
        return packed[slot] != null;
    }

    /** Bytes held by {@code slot} (0 when empty). */
    public long bytes(int slot) {
        float[] d = data[slot];
        int[] p = packed[slot];
        return d != null ? 4L * d.length : p != null ? 4L * p.length : 0;
    }

    /** Bytes held by all slots. */
    public long totalBytes() {
        long n = 0;
        for (int s = 0; s < data.length; s++) {
            n += bytes(s);
        }
        return n;
    }

    /** Rank of {@code (layer, module)} in {@code slot}; 0 when not adapted or empty. */
    public int rank(int slot, int layer, int module) {
        return ranks[slot][layer][module];
    }

    public float scaling(int slot, int layer, int module) {
        return scale[slot][layer][module];
    }

    /** Largest rank of any part of {@code slot}. */
    public int maxRank(int slot) {
        return maxRank[slot];
    }

    /**
     * How many times {@code slot} was written or cleared: a copy of the slot elsewhere (the CUDA
     * backend's device pool) is current while it recorded the same number. Read it under the same
     * lock that orders the write before the slot's use (the device tier's).
     */
    public long generation(int slot) {
        return generation[slot];
    }

    /** Copies A of {@code (layer, module)} in {@code slot}, {@code (rank, in)} row-major, into {@code out} from {@code off}. */
    public void copyA(int slot, int layer, int module, float[] out, int off) {
        copyRows(slot, offA[slot][layer][module], ranks[slot][layer][module], ins[module], out, off);
    }

    /** Copies Bᵀ of {@code (layer, module)} in {@code slot}, {@code (rank, out)} row-major (B transposed), into {@code out} from {@code off}. */
    public void copyBt(int slot, int layer, int module, float[] out, int off) {
        copyRows(slot, offB[slot][layer][module], ranks[slot][layer][module], outs[module], out, off);
    }

    private void copyRows(int slot, int pos, int rows, int n, float[] out, int off) {
        float[] d = data[slot];
        int[] p = packed[slot];
        if (d != null) {
            System.arraycopy(d, pos, out, off, rows * n);
        } else if (p != null) {
            for (int k = 0; k < rows; k++) {
                pos = Bf16Rows.unpack(p, pos, n, out, off + k * n);
            }
        } else if (rows > 0) {
            throw new IllegalStateException("slot " + slot + " is empty");
        }
    }

    float[] data(int slot) {
        return data[slot];
    }

    int[] packed(int slot) {
        return packed[slot];
    }

    /** Every slot's packed bf16 weights by slot (null entries: empty or float32), for the native LoRA kernel. */
    int[][] packedSlots() {
        return packed;
    }

    int offA(int slot, int layer, int module) {
        return offA[slot][layer][module];
    }

    int offB(int slot, int layer, int module) {
        return offB[slot][layer][module];
    }
}
