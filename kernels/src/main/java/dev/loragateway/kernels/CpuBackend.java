package dev.loragateway.kernels;

/**
 * The CPU compute backend: matrix products split across a {@link ParallelFor} team, Vector API
 * inner loops. One instance per engine thread (it owns scratch buffers and is not thread-safe).
 */
public final class CpuBackend implements AutoCloseable {
    private final ParallelFor team;
    private float[] permuted = new float[0]; // (rows, in) input de-interleaved for 16-bit weights

    public CpuBackend(int threads) {
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
        team.run(outDim, 16, (j0, j1) -> MatMul.columns(dt, buf, in, xs, rows, out, outDim, j0, j1));
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

    /** Runs {@code body} over {@code [0, total)} on the team. */
    public void parallel(int total, ParallelFor.Body body) {
        team.run(total, 1, body);
    }

    @Override
    public void close() {
        team.close();
    }
}
