package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

/**
 * The CPU compute backend: matrix products split across a {@link ParallelFor} team, Vector API
 * inner loops that load weights the way this JVM allows ({@link CpuKernelForm}). One instance per
 * engine thread (it owns scratch buffers and is not thread-safe).
 */
public final class CpuBackend implements AutoCloseable {
    private final ParallelFor team;
    private final CpuKernelForm form;
    private float[] permuted = new float[0]; // (rows, in) input de-interleaved for 16-bit weights
    private float[] packed = new float[0];   // (rows, in) input packed into row panels (rows >= 2)
    private float[] loraT = new float[0];    // (rows, maxRank) LoRA shrink output

    /** A backend with the form chosen for this JVM ({@link CpuKernelForm#describe}). */
    public CpuBackend(int threads) {
        this(threads, CpuKernelForm.selected());
    }

    /** A backend loading weights with {@code form} (tests run each available form). */
    CpuBackend(int threads, CpuKernelForm form) {
        this.form = form;
        this.team = new ParallelFor(threads);
    }

    /** A backend with one thread per available processor. */
    public static CpuBackend create() {
        return new CpuBackend(Runtime.getRuntime().availableProcessors());
    }

    public int threads() {
        return team.threads();
    }

    /**
     * {@code out[r][j] = Σ_k x[r][k] · w[j][k]}: {@code x: (rows, in)}, {@code w: (outDim, in)},
     * {@code out: (rows, outDim)} densely packed from index 0.
     */
    public void matmul(float[] x, int rows, Tensor w, float[] out) {
        if (w.rank() != 2) {
            throw new IllegalArgumentException("matmul weight " + w + " is not 2-D");
        }
        int outDim = w.dim(0);
        int in = w.dim(1);
        if (x.length < rows * in || out.length < rows * outDim) {
            throw new IllegalArgumentException("matmul " + w + ": buffers too small for " + rows + " rows (x "
                + x.length + " < " + rows * in + " or out " + out.length + " < " + rows * outDim + ")");
        }
        if (rows >= 2) {
            // batched rows: compute bound, register-blocked over packed input panels
            if (packed.length < rows * in) {
                packed = new float[rows * in];
            }
            DType bdt = w.dtype();
            MatMulBatched.pack(x, rows, in, bdt != DType.F32, packed);
            final float[] xq = packed;
            var wb = w.buffer();
            WeightLoads ld = form.loads();
            team.run(outDim, 16, (j0, j1) -> MatMulBatched.batched(bdt, ld, ld.open(wb), in, xq, rows, out, outDim, j0, j1));
            return;
        }
        columns(x, rows, w, out);
    }

    /**
     * The GEMV path of {@link #matmul} for any row count: each input row de-interleaved for 16-bit
     * weights ({@link MatMul#permute}), then {@link MatMul#columns}. {@code matmul} takes it for one
     * row; MatMulPerf times it for more as the pre-tiling baseline.
     */
    void columns(float[] x, int rows, Tensor w, float[] out) {
        int outDim = w.dim(0);
        int in = w.dim(1);
        float[] src = x;
        if (w.dtype() != DType.F32) {
            if (permuted.length < rows * in) {
                permuted = new float[rows * in];
            }
            for (int r = 0; r < rows; r++) {
                MatMul.permute(x, r * in, in, permuted, r * in);
            }
            src = permuted;
        }
        final float[] xs = src;
        var buf = w.buffer();
        DType dt = w.dtype();
        WeightLoads ld = form.loads();
        team.run(outDim, 16, (j0, j1) -> MatMul.columns(dt, ld, ld.open(buf), in, xs, rows, out, outDim, j0, j1));
    }

    /** {@code out[r][j] = x[r]·w[j] + bias[j]}; bias may be null. */
    public void linear(float[] x, int rows, Tensor w, float[] bias, float[] out) {
        matmul(x, rows, w, out);
        if (bias != null) {
            int outDim = w.dim(0);
            for (int r = 0; r < rows; r++) {
                Ops.add(out, r * outDim, bias, 0, outDim);
            }
        }
    }

    /**
     * Adds each row's LoRA update for one (layer, module) to {@code y}:
     * {@code y[i] += scaling · (x[i]·Aᵀ)·Bᵀ} with A, B of slot {@code batch.rowSlot(i)}; rows with
     * slot −1 are untouched. Rows are split across the team; each share runs shrink then expand on
     * its own rows (SGMV over segments, or BGMV when every row has its own adapter).
     *
     * @param x {@code (rows, in)} with row stride {@code xs}
     * @param y {@code (rows, out)} with row stride {@code ys}
     */
    public void lora(LoraSlotPool pool, LoraBatch batch, int layer, int module, float[] x, int xs, float[] y, int ys) {
        if (!batch.anyAdapter()) {
            return;
        }
        int rows = batch.rows();
        int ts = 0;
        for (int g = 0; g < batch.segments(); g++) {
            int s = batch.segSlot(g);
            if (s >= 0) {
                ts = Math.max(ts, pool.rank(s, layer, module));
            }
        }
        if (ts == 0) {
            return;
        }
        if (loraT.length < rows * ts) {
            loraT = new float[rows * ts];
        }
        final float[] t = loraT;
        final int tStride = ts;
        if (batch.allSingleRows()) {
            int[] slot = batch.rowSlots();
            team.run(rows, 1, (r0, r1) -> {
                Lora.bgmvShrink(pool, layer, module, slot, r0, r1, x, xs, t, tStride);
                Lora.bgmvExpand(pool, layer, module, slot, r0, r1, t, tStride, y, ys);
            });
        } else {
            int[] start = batch.segStarts();
            int[] seg = batch.segSlots();
            int segs = batch.segments();
            team.run(rows, 1, (r0, r1) -> {
                int s0 = segmentOf(start, segs, r0);
                int s1 = segmentOf(start, segs, r1 - 1) + 1;
                Lora.sgmvShrink(pool, layer, module, start, seg, s0, s1, r0, r1, x, xs, t, tStride);
                Lora.sgmvExpand(pool, layer, module, start, seg, s0, s1, r0, r1, t, tStride, y, ys);
            });
        }
    }

    /** The segment holding {@code row}: the last g with {@code start[g] <= row}. */
    private static int segmentOf(int[] start, int segs, int row) {
        int lo = 0;
        int hi = segs - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (start[mid] <= row) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo;
    }

    /** Runs {@code body} over {@code [0, total)} on the team. */
    public void parallel(int total, ParallelFor.Body body) {
        team.run(total, 1, body);
    }

    @Override
    public void close() {
        team.close();
    }
}
