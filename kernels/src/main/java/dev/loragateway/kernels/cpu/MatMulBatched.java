package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.DType;

import static dev.loragateway.kernels.cpu.MatMul.*;

import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;

/**
 * {@link MatMul} for two or more input rows (batched decode, prefill).
 */
final class MatMulBatched {
    private MatMulBatched() {
    }

    // ---- Batched rows (rows >= 2) ------------------------------------------------------------
    // Compute bound once there are a few rows, so: the input is packed once per call into panels
    // (one index walks all rows of a block, see pack); each weight vector is loaded and widened once
    // for a block of 4 rows; 4 weight rows at a time share each input vector (16 accumulators, the
    // most Java 17's C2 keeps in registers here); the 16 sums are reduced together by a blend/permute
    // tree. Columns are walked in tiles of about TILE_BYTES of weights so a tile, fetched once from
    // memory, is reused from L2 by every row block; long rows are cut into K_CHUNK pieces (partial
    // sums added into out) so a block's inputs stay in L1.
    // The walk over tiles and chunks (one driver per dtype, `batched`) and the register-block kernels
    // (4, 2, 1 rows times 4 or 1 weight rows per dtype) are generated into MatMul{Bf16,F16,F32}Kernels
    // by kernels/src/build/java/GenerateMatMulKernels.java during the build (not committed). They
    // repeat one pattern and are kept flat because C2 neither inlines helpers into methods this large
    // (NodeCountInliningCutoff) nor keeps boxed vectors in registers. The exception is the weight loads
    // (WeightLoads: one line each, bound statically by class hierarchy analysis), which it inlines.

    /** Weight bytes per column tile (per thread): fits L2 with the packed input. */
    static final int TILE_BYTES = 128 << 10;
    /** Inner elements per pass (a multiple of BLOCK16); longer rows are split, shorter tails merged. */
    static final int K_CHUNK = 1024;

    /** Rows per panel, largest first: the register block and its remainders. */
    private static final int[] PANELS = {4, 2, 1};

    /**
     * Packs {@code rows} rows of {@code x} into {@code xq}: rows are grouped into panels of 4, then 2,
     * then 1 row; the panel of s rows starting at row r0 lies at {@code r0·in} and holds, per k-block
     * of B elements (B = 2L de-interleaved as in {@link #permute} for 16-bit weights, B = L for F32),
     * that block of each of its rows in turn, then the tail of each row (in order) in turn.
     */
    static void pack(float[] x, int rows, int in, boolean perm16, float[] xq) {
        int b = perm16 ? BLOCK16 : L;
        int full = in - in % b;
        int tail = in - full;
        int r0 = 0;
        for (int s : PANELS) {
            for (; r0 + s <= rows; r0 += s) {
                int base = r0 * in;
                for (int i = 0; i < s; i++) {
                    int src = (r0 + i) * in;
                    int dst = base + i * b;
                    for (int kb = 0; kb < full; kb += b, dst += s * b) {
                        if (perm16) {
                            for (int t = 0; t < L; t++) {
                                xq[dst + t] = x[src + kb + 2 * t];
                                xq[dst + L + t] = x[src + kb + 2 * t + 1];
                            }
                        } else {
                            System.arraycopy(x, src + kb, xq, dst, b);
                        }
                    }
                    System.arraycopy(x, src + full, xq, base + full * s + i * tail, tail);
                }
            }
        }
    }

    /**
     * Columns {@code [j0, j1)} for {@code rows} rows from the {@link #pack}ed input {@code xq};
     * rows are {@code outStride} apart in {@code out}. The weights are read through {@code ld} from
     * {@code w}, the handle {@code ld.open} made of the weight buffer for this call.
     */
    static void batched(DType dtype, WeightLoads ld, Object w, int in, float[] xq, int rows, float[] out, int outStride, int j0, int j1) {
        switch (dtype) {
            case BF16: MatMulBf16Kernels.batched(ld, w, in, xq, rows, out, outStride, j0, j1); break;
            case F16: MatMulF16Kernels.batched(ld, w, in, xq, rows, out, outStride, j0, j1); break;
            default: MatMulF32Kernels.batched(ld, w, in, xq, rows, out, outStride, j0, j1); break;
        }
    }

    // Lane-swap shuffles and lane-bit masks of the 16-way reduction tree: one step adds lanes i and
    // i^bit of two vectors, keeping the first's sums where bit is clear and the second's where set,
    // so after the steps for 8, 4, 2, 1 lane bitreverse4(n) holds the total of input n.
    static final VectorShuffle<Float> SW8 = VectorShuffle.fromOp(FS, i -> i ^ 8);
    static final VectorShuffle<Float> SW4 = VectorShuffle.fromOp(FS, i -> i ^ 4);
    static final VectorShuffle<Float> SW2 = VectorShuffle.fromOp(FS, i -> i ^ 2);
    static final VectorShuffle<Float> SW1 = VectorShuffle.fromOp(FS, i -> i ^ 1);
    static final VectorMask<Float> M8 = laneBit(8);
    static final VectorMask<Float> M4 = laneBit(4);
    static final VectorMask<Float> M2 = laneBit(2);
    static final VectorMask<Float> M1 = laneBit(1);

    private static VectorMask<Float> laneBit(int bit) {
        boolean[] b = new boolean[L];
        for (int i = 0; i < L; i++) {
            b[i] = (i & bit) != 0;
        }
        return VectorMask.fromArray(FS, b, 0);
    }
}
