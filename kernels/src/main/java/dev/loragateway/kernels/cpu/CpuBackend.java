package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The CPU compute backend: matrix products split across a {@link ParallelFor} team, Vector API
 * inner loops that load weights the way this JVM allows ({@link CpuKernelForm}). One instance per
 * engine thread (it owns scratch buffers and is not thread-safe).
 */
public final class CpuBackend implements AutoCloseable {
    private final ParallelFor team;
    private final CpuKernelForm form;
    private final boolean useNative;         // bf16 weights through NativeCpu's GEMM
    private ByteBuffer xBf16 = ByteBuffer.allocateDirect(0); // (rows, in) input rounded to bf16 for NativeCpu
    private float[] permuted = new float[0]; // (rows, in) input de-interleaved for 16-bit weights
    private float[] packed = new float[0];   // (rows, in) input packed into row panels (rows >= 2)
    private float[] loraT = new float[0];    // (rows, maxRank) LoRA shrink output

    /**
     * A backend with the form chosen for this JVM ({@link CpuKernelForm#describe}) and the native
     * bf16 GEMM where it runs and is not turned off ({@link NativeCpu#usedByDefault}).
     */
    public CpuBackend(int threads) {
        this(threads, CpuKernelForm.selected(), NativeCpu.usedByDefault());
    }

    /** Which kernels a backend runs bf16 matmuls on: {@code auto} (native where available), {@code native} or {@code java}. */
    public enum Kernels {
        AUTO, NATIVE, JAVA;

        /** {@code auto}, {@code native} or {@code java}, any case; throws naming the allowed values otherwise. */
        public static Kernels parse(String s) {
            for (Kernels k : values()) {
                if (k.name().equalsIgnoreCase(s.trim())) {
                    return k;
                }
            }
            throw new IllegalArgumentException("CPU kernels must be auto, native or java, got '" + s + "'");
        }
    }

    /**
     * A backend with the form chosen for this JVM and the kernels asked for: {@code NATIVE} throws
     * (naming why) when the native kernels are not available here; {@code AUTO} is the
     * {@link #CpuBackend(int)} default.
     */
    public CpuBackend(int threads, Kernels kernels) {
        this(threads, CpuKernelForm.selected(), switch (kernels) {
            case AUTO -> NativeCpu.usedByDefault();
            case NATIVE -> true;
            case JAVA -> false;
        });
    }

    /** A backend loading weights with {@code form}, Vector API kernels only (tests run each available form). */
    CpuBackend(int threads, CpuKernelForm form) {
        this(threads, form, false);
    }

    /**
     * A backend loading weights with {@code form} that sends bf16 matmuls to {@link NativeCpu} when
     * {@code useNative} (which then must be {@link NativeCpu#available}).
     */
    CpuBackend(int threads, CpuKernelForm form, boolean useNative) {
        if (useNative && !NativeCpu.available()) {
            throw new IllegalStateException("the native CPU kernels are not available: " + NativeCpu.describe());
        }
        this.form = form;
        this.useNative = useNative;
        this.team = new ParallelFor(threads);
    }

    /** Whether bf16 matmuls run on the native kernels ({@link NativeCpu}). */
    public boolean usesNative() {
        return useNative;
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
        if (useNative && NativeCpu.serves(w)) {
            nativeMatmul(x, rows, w, out, outDim, in);
            return;
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

    /** {@link #matmul} on {@link NativeCpu}: the input rounded to bf16 once, columns split across the team. */
    private void nativeMatmul(float[] x, int rows, Tensor w, float[] out, int outDim, int in) {
        ByteBuffer xb = toBf16(x, rows, in);
        ByteBuffer wb = w.buffer();
        team.run(outDim, 16, (j0, j1) -> NativeCpu.gemmBf16(xb, rows, in, wb, j0, j1, out, outDim));
    }

    /** {@code x: (rows, in)} rounded to bf16 into the scratch buffer, rows split across the team. */
    private ByteBuffer toBf16(float[] x, int rows, int in) {
        int n = rows * in;
        if (xBf16.capacity() < 2 * n) {
            xBf16 = ByteBuffer.allocateDirect(2 * n).order(ByteOrder.LITTLE_ENDIAN);
        }
        final ByteBuffer xb = xBf16;
        team.run(rows, 1, (r0, r1) -> NativeCpu.toBf16(x, r0 * in, r1 * in, xb));
        return xb;
    }

    /**
     * {@code outs[i] = x · ws[i]ᵀ} for weights that share the input (q, k, v; gate, up): the same
     * numbers as {@link #matmul} on each, but on the native kernels one bf16 rounding of the input
     * and one parallel region over the columns of all of them.
     */
    public void matmuls(float[] x, int rows, Tensor[] ws, float[][] outs) {
        boolean together = useNative && ws.length > 1;
        int in = ws[0].dim(1);
        int total = 0;
        for (int i = 0; i < ws.length; i++) {
            Tensor w = ws[i];
            together &= w.rank() == 2 && NativeCpu.serves(w) && w.dim(1) == in && outs[i].length >= rows * w.dim(0);
            total += w.dim(0);
        }
        if (!together || x.length < rows * in) {
            for (int i = 0; i < ws.length; i++) {
                matmul(x, rows, ws[i], outs[i]);
            }
            return;
        }
        ByteBuffer xb = toBf16(x, rows, in);
        team.run(total, 16, (c0, c1) -> {
            int base = 0;
            for (int i = 0; i < ws.length; i++) {
                int n = ws[i].dim(0);
                int lo = Math.max(c0, base);
                int hi = Math.min(c1, base + n);
                if (lo < hi) {
                    NativeCpu.gemmBf16(xb, rows, in, ws[i].buffer(), lo - base, hi - base, outs[i], n);
                }
                base += n;
            }
        });
    }

    /** {@code gate[i] = silu(gate[i]) · up[i]} for {@code i < n}, split across the team (vectorized on the native kernels). */
    public void siluMul(float[] gate, float[] up, int n) {
        int grain = 16384; // one decode row's SiLU costs less than waking the team
        if (useNative) {
            team.run(n, grain, (i0, i1) -> NativeCpu.siluMul(gate, up, i0, i1));
        } else {
            team.run(n, grain, (i0, i1) -> Ops.siluMul(gate, up, i0, i1));
        }
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
        if (useNative && nativeLora(pool, batch, layer, module, x, xs, y, ys, t, tStride)) {
            return;
        }
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

    private int[] segA = new int[0];
    private int[] segB = new int[0];
    private int[] segRank = new int[0];
    private float[] segScale = new float[0];

    /**
     * {@link #lora} on {@link NativeCpu#loraBf16} when every adapter of the batch is held as bf16
     * and the packing's vector length is one the kernel reads; false (nothing done) otherwise.
     */
    private boolean nativeLora(LoraSlotPool pool, LoraBatch batch, int layer, int module, float[] x, int xs, float[] y, int ys,
                               float[] t, int tStride) {
        int lanes = Bf16Rows.L;
        if (lanes != 8 && lanes != 16) {
            return false;
        }
        int segs = batch.segments();
        if (segA.length < segs) {
            segA = new int[segs];
            segB = new int[segs];
            segRank = new int[segs];
            segScale = new float[segs];
        }
        for (int g = 0; g < segs; g++) {
            int s = batch.segSlot(g);
            if (s < 0) {
                segRank[g] = 0;
                continue;
            }
            if (!pool.isBf16(s)) {
                return false;
            }
            segRank[g] = pool.rank(s, layer, module);
            segA[g] = pool.offA(s, layer, module);
            segB[g] = pool.offB(s, layer, module);
            segScale[g] = pool.scaling(s, layer, module);
        }
        int[] start = batch.segStarts();
        int[] seg = batch.segSlots();
        int[][] packed = pool.packedSlots();
        int in = pool.in(module);
        int out = pool.out(module);
        team.run(batch.rows(), 1, (r0, r1) -> {
            int s0 = segmentOf(start, segs, r0);
            int s1 = segmentOf(start, segs, r1 - 1) + 1;
            NativeCpu.loraBf16(packed, lanes, start, seg, segA, segB, segRank, segScale, s0, s1, r0, r1, in, out, x, xs, t, tStride, y, ys);
        });
        return true;
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
