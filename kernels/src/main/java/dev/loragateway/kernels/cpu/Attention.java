package dev.loragateway.kernels.cpu;

/**
 * Causal scaled-dot-product attention of one query row over a key/value history, with
 * grouped-query heads: query head {@code h} reads key/value head {@code h / (heads / kvHeads)}.
 *
 * <pre>
 * for h in heads: g = h / (heads / kvHeads)
 *   s[t]   = q[h]·k[t][g] / sqrt(headDim)        for t in [from, len)   (len = position + 1: causal)
 *   p      = softmax(s)
 *   out[h] = Σ_t p[t] · v[t][g]
 * q: (heads, headDim)   k, v: (len, kvHeads · headDim)   out: (heads, headDim)
 * </pre>
 */
public final class Attention {
    private Attention() {
    }

    /** Attention over a contiguous history: row t of the keys and values at {@code t·kvDim}. */
    public static void attend(float[] q, int qo, int heads, int kvHeads, int headDim,
                              float[] keys, float[] values, int from, int len, float[] out, int oo, float[] scores, int so) {
        attend(q, qo, heads, kvHeads, headDim, keys, values, null, 0, from, len, out, oo, scores, so);
    }

    /**
     * Attention over a paged history: position t lives in block {@code table[t / blockSize]} at
     * row {@code t % blockSize}, so its key starts at {@code (table[t / blockSize]·blockSize +
     * t % blockSize)·kvDim} of {@code keys} (a pool shared by many sequences). A null table means
     * contiguous rows.
     *
     * @param q         query row at {@code q[qo..qo + heads·headDim)}
     * @param keys      the key pool (or a contiguous history)
     * @param values    the value pool, same layout
     * @param table     block ids of this sequence, in position order (null: contiguous)
     * @param blockSize positions per block (ignored without a table)
     * @param from      first position attended to (0, or len − window with a sliding window)
     * @param len       one past the last position attended to
     * @param out       output at {@code out[oo..oo + heads·headDim)}
     * @param scores    scratch {@code scores[so..so + len − from)}
     */
    public static void attend(float[] q, int qo, int heads, int kvHeads, int headDim, float[] keys, float[] values,
                              int[] table, int blockSize, int from, int len, float[] out, int oo, float[] scores, int so) {
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException(heads + " attention heads are not a multiple of " + kvHeads + " key/value heads");
        }
        int group = heads / kvHeads;
        int kvDim = kvHeads * headDim;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        for (int h = 0; h < heads; h++) {
            int g = h / group;
            int qh = qo + h * headDim;
            for (int t = from; t < len; t++) {
                scores[so + t - from] = Ops.dot(q, qh, keys, row(table, blockSize, t) * kvDim + g * headDim, headDim) * scale;
            }
            Ops.softmax(scores, so, len - from);
            int oh = oo + h * headDim;
            java.util.Arrays.fill(out, oh, oh + headDim, 0f);
            for (int t = from; t < len; t++) {
                Ops.axpy(scores[so + t - from], values, row(table, blockSize, t) * kvDim + g * headDim, out, oh, headDim);
            }
        }
    }

    private static int row(int[] table, int blockSize, int t) {
        return table == null ? t : table[t / blockSize] * blockSize + t % blockSize;
    }

    /**
     * Attention of the query rows {@code [r0, r0 + rows)} of one sequence, all query heads that read
     * the key/value heads {@code [g0, g1)}, on the native kernels ({@link NativeCpu}; the caller checked that its
     * backend {@link CpuBackend#usesNative uses them}): row r attends to positions
     * {@code [from[r], len[r])} of the paged history ({@code table}, as in {@link #attend}); q and
     * out hold rows of {@code heads·headDim}. The same numbers as {@link #attend} up to float32
     * rounding: the keys are gathered and transposed once per call, so many rows of a prefill share
     * each key load, and the exponentials are vectorized. A row's result does not depend on the
     * other rows of the call (masked positions add exact zeros).
     */
    public static void attendRowsNative(float[] q, int r0, int rows, int[] len, int[] from, int heads, int kvHeads, int headDim,
                                        float[] keys, float[] values, int[] table, int blockSize, int g0, int g1, float[] out) {
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException(heads + " attention heads are not a multiple of " + kvHeads + " key/value heads");
        }
        int qDim = heads * headDim;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        NativeCpu.attend(q, r0 * qDim, qDim, rows, len, from, r0, keys, values, table, blockSize, kvHeads * headDim, headDim,
            heads / kvHeads, g0, g1, scale, out, r0 * qDim);
    }
}
