package dev.loragateway.kernels.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Batched LoRA on the CPU: shrink {@code t = scaling · x·Aᵀ} (in → r, float32 intermediate) and
 * expand {@code y += t·Bᵀ} (r → out), for many adapters in one batch, reading weights from a
 * {@link LoraSlotPool}. The scaling is applied once, to the r-wide intermediate.
 *
 * <p>Shapes: {@code x: [T, in]} (row stride {@code xs}), {@code t: [T, R]} (stride {@code ts} ≥ the
 * largest rank in the batch), {@code y: [T, out]} (stride {@code ys}); per slot {@code A: [r, in]},
 * {@code B: [out, r]} for the given (layer, module). A row or segment whose slot is −1, or whose
 * adapter does not target this (layer, module) (rank 0), is left untouched.
 *
 * <p>Each method works on a sub-range (rows or segments) so callers can split a batch across
 * threads; ranges never share an output row.
 */
final class Lora {
    private static final VectorSpecies<Float> FS = FloatVector.SPECIES_PREFERRED;
    private static final int L = FS.length();

    private Lora() {
    }

    /**
     * BGMV shrink over rows {@code [r0, r1)}:
     * <pre>
     * for i in [r0, r1): s = slot[i]; r = rank(s, layer, m)
     *   for k in [0, r): t[i][k] = scaling(s, layer, m) · Σ_j x[i][j] · A_s[k][j]
     * </pre>
     */
    static void bgmvShrink(LoraSlotPool pool, int layer, int m, int[] slot, int r0, int r1,
                           float[] x, int xs, float[] t, int ts) {
        for (int i = r0; i < r1; i++) {
            shrink(pool, slot[i], layer, m, i, i + 1, x, xs, t, ts);
        }
    }

    /**
     * BGMV expand over rows {@code [r0, r1)}:
     * <pre>
     * for i in [r0, r1): s = slot[i]; r = rank(s, layer, m)
     *   for o in [0, out): y[i][o] += Σ_{k<r} t[i][k] · B_s[o][k]
     * </pre>
     */
    static void bgmvExpand(LoraSlotPool pool, int layer, int m, int[] slot, int r0, int r1,
                           float[] t, int ts, float[] y, int ys) {
        for (int i = r0; i < r1; i++) {
            expand(pool, slot[i], layer, m, i, i + 1, t, ts, y, ys);
        }
    }

    /**
     * SGMV shrink over segments {@code [s0, s1)}; segment {@code g} covers rows
     * {@code [segStart[g], segStart[g+1])} clipped to {@code [r0, r1)} and uses slot {@code segSlot[g]}:
     * <pre>
     * for g in [s0, s1): s = segSlot[g]; r = rank(s, layer, m)
     *   for i in segment g: for k in [0, r): t[i][k] = scaling(s, layer, m) · Σ_j x[i][j] · A_s[k][j]
     * </pre>
     * Each row of A is read once per segment and applied to all of the segment's rows.
     */
    static void sgmvShrink(LoraSlotPool pool, int layer, int m, int[] segStart, int[] segSlot, int s0, int s1,
                           int r0, int r1, float[] x, int xs, float[] t, int ts) {
        for (int g = s0; g < s1; g++) {
            shrink(pool, segSlot[g], layer, m, Math.max(segStart[g], r0), Math.min(segStart[g + 1], r1), x, xs, t, ts);
        }
    }

    /**
     * SGMV expand over segments {@code [s0, s1)} clipped to rows {@code [r0, r1)}:
     * <pre>
     * for g in [s0, s1): s = segSlot[g]; r = rank(s, layer, m)
     *   for i in segment g: for o in [0, out): y[i][o] += Σ_{k<r} t[i][k] · B_s[o][k]
     * </pre>
     */
    static void sgmvExpand(LoraSlotPool pool, int layer, int m, int[] segStart, int[] segSlot, int s0, int s1,
                           int r0, int r1, float[] t, int ts, float[] y, int ys) {
        for (int g = s0; g < s1; g++) {
            expand(pool, segSlot[g], layer, m, Math.max(segStart[g], r0), Math.min(segStart[g + 1], r1), t, ts, y, ys);
        }
    }

    /** The rank slot {@code s} applies to (layer, m): 0 for no slot (−1) or a module its adapter does not target. */
    private static int rank(LoraSlotPool pool, int s, int layer, int m) {
        return s < 0 ? 0 : pool.rank(s, layer, m);
    }

    /**
     * Shrink for rows {@code [lo, hi)} that all use slot {@code s} (one BGMV row, or one SGMV segment):
     * each row of A is read once and applied to two rows at a time; an odd last row is paired with
     * itself, so every row's sums are formed the same way wherever it falls (batch invariance).
     */
    private static void shrink(LoraSlotPool pool, int s, int layer, int m, int lo, int hi,
                               float[] x, int xs, float[] t, int ts) {
        int r = rank(pool, s, layer, m);
        if (r == 0 || lo >= hi) {
            return;
        }
        int in = pool.in(m);
        int a = pool.offA(s, layer, m);
        float sc = pool.scaling(s, layer, m);
        if (pool.isBf16(s)) {
            int[] p = pool.packed(s);
            int stride = Bf16Rows.words(in);
            for (int k = 0; k < r; k++) {
                int ak = a + k * stride;
                int i = lo;
                for (; i + 2 <= hi; i += 2) {
                    Bf16Rows.dot2(p, ak, x, i * xs, (i + 1) * xs, in, t, i * ts + k, (i + 1) * ts + k, sc);
                }
                if (i < hi) { // the odd row as a pair with itself: a row's sum never depends on its segment
                    Bf16Rows.dot2(p, ak, x, i * xs, i * xs, in, t, i * ts + k, i * ts + k, sc);
                }
            }
            return;
        }
        float[] d = pool.data(s);
        for (int k = 0; k < r; k++) {
            int ak = a + k * in;
            int i = lo;
            for (; i + 2 <= hi; i += 2) {
                dot2(d, ak, x, i * xs, (i + 1) * xs, in, t, i * ts + k, (i + 1) * ts + k, sc);
            }
            if (i < hi) { // the odd row as a pair with itself: a row's sum never depends on its segment
                dot2(d, ak, x, i * xs, i * xs, in, t, i * ts + k, i * ts + k, sc);
            }
        }
    }

    /** Expand for rows {@code [lo, hi)} that all use slot {@code s}. */
    private static void expand(LoraSlotPool pool, int s, int layer, int m, int lo, int hi,
                               float[] t, int ts, float[] y, int ys) {
        int r = rank(pool, s, layer, m);
        if (r == 0 || lo >= hi) {
            return;
        }
        int bt = pool.offB(s, layer, m);
        if (pool.isBf16(s)) {
            Bf16Rows.expandRows(pool.packed(s), bt, r, pool.out(m), t, lo, hi, ts, y, ys);
        } else {
            expandRows(pool.data(s), bt, r, pool.out(m), t, lo, hi, ts, y, ys);
        }
    }

    /** Two dot products against one weight row: t[o0] = sc·(w·x0), t[o1] = sc·(w·x1). */
    private static void dot2(float[] w, int wo, float[] x, int x0, int x1, int n, float[] t, int o0, int o1, float sc) {
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        int j = 0;
        int upper = FS.loopBound(n);
        for (; j < upper; j += L) {
            FloatVector wv = FloatVector.fromArray(FS, w, wo + j);
            a0 = wv.fma(FloatVector.fromArray(FS, x, x0 + j), a0);
            a1 = wv.fma(FloatVector.fromArray(FS, x, x1 + j), a1);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD);
        float s1 = a1.reduceLanes(VectorOperators.ADD);
        for (; j < n; j++) {
            s0 += w[wo + j] * x[x0 + j];
            s1 += w[wo + j] * x[x1 + j];
        }
        t[o0] = sc * s0;
        t[o1] = sc * s1;
    }

    /**
     * {@code y[i][o] += Σ_k t[i][k] · Bᵀ[k][o]} for rows {@code [lo, hi)}, walking the output in
     * vector-wide column chunks so each chunk of y is loaded and stored once per row, and the
     * {@code r × L} block of Bᵀ stays in L1 across the rows.
     */
    private static void expandRows(float[] d, int bt, int r, int out, float[] t, int lo, int hi, int ts,
                                   float[] y, int ys) {
        int upper = FS.loopBound(out);
        for (int o = 0; o < upper; o += L) {
            for (int i = lo; i < hi; i++) {
                expandChunk(d, bt + o, r, out, t, i * ts, y, i * ys + o);
            }
        }
        for (int o = upper; o < out; o++) {
            for (int i = lo; i < hi; i++) {
                float acc = y[i * ys + o];
                for (int k = 0; k < r; k++) {
                    acc += t[i * ts + k] * d[bt + k * out + o];
                }
                y[i * ys + o] = acc;
            }
        }
    }

    private static void expandChunk(float[] d, int b, int r, int out, float[] t, int to, float[] y, int yo) {
        FloatVector acc = FloatVector.fromArray(FS, y, yo);
        for (int k = 0; k < r; k++) {
            acc = FloatVector.fromArray(FS, d, b + k * out).fma(FloatVector.broadcast(FS, t[to + k]), acc);
        }
        acc.intoArray(y, yo);
    }
}
