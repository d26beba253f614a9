package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Element-wise and row-wise CPU ops over float32 activations. All arrays are (rows, n) row-major. */
public final class Ops {
    private static final VectorSpecies<Float> FS = FloatVector.SPECIES_PREFERRED;

    private Ops() {
    }

    /** {@code out[o..o+n) = x[xo..xo+n) / sqrt(mean(x²) + eps) · weight}, accumulated in double. */
    public static void rmsNorm(float[] x, int xo, float[] weight, float eps, float[] out, int oo, int n) {
        double ss = 0;
        for (int i = 0; i < n; i++) {
            double v = x[xo + i];
            ss += v * v;
        }
        float inv = (float) (1.0 / Math.sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) {
            out[oo + i] = x[xo + i] * inv * weight[i];
        }
    }

    /** {@code y[yo..yo+n) += x[xo..xo+n)}. */
    public static void add(float[] y, int yo, float[] x, int xo, int n) {
        int i = 0;
        int upper = FS.loopBound(n);
        for (; i < upper; i += FS.length()) {
            FloatVector.fromArray(FS, y, yo + i).add(FloatVector.fromArray(FS, x, xo + i)).intoArray(y, yo + i);
        }
        for (; i < n; i++) {
            y[yo + i] += x[xo + i];
        }
    }

    /** {@code gate[i] = silu(gate[i]) · up[i]} for {@code i < n}, where silu(g) = g / (1 + e^-g). */
    public static void siluMul(float[] gate, float[] up, int n) {
        siluMul(gate, up, 0, n);
    }

    /** {@link #siluMul(float[], float[], int)} over {@code [from, to)}. */
    public static void siluMul(float[] gate, float[] up, int from, int to) {
        for (int i = from; i < to; i++) {
            float g = gate[i];
            gate[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }

    /** Dot product of {@code a[ao..ao+n)} and {@code b[bo..bo+n)}. */
    public static float dot(float[] a, int ao, float[] b, int bo, int n) {
        FloatVector acc = FloatVector.zero(FS);
        int i = 0;
        int upper = FS.loopBound(n);
        for (; i < upper; i += FS.length()) {
            acc = FloatVector.fromArray(FS, a, ao + i).fma(FloatVector.fromArray(FS, b, bo + i), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < n; i++) {
            s += a[ao + i] * b[bo + i];
        }
        return s;
    }

    /** {@code y[yo..yo+n) += a · x[xo..xo+n)}. */
    public static void axpy(float a, float[] x, int xo, float[] y, int yo, int n) {
        int i = 0;
        int upper = FS.loopBound(n);
        FloatVector av = FloatVector.broadcast(FS, a);
        for (; i < upper; i += FS.length()) {
            FloatVector.fromArray(FS, x, xo + i).fma(av, FloatVector.fromArray(FS, y, yo + i)).intoArray(y, yo + i);
        }
        for (; i < n; i++) {
            y[yo + i] += a * x[xo + i];
        }
    }

    /** In-place softmax of {@code x[o..o+n)} (max-subtracted). */
    public static void softmax(float[] x, int o, int n) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[o + i]);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
            float e = (float) Math.exp(x[o + i] - max);
            x[o + i] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (int i = 0; i < n; i++) {
            x[o + i] *= inv;
        }
    }

    /** Index of the largest of {@code x[o..o+n)} (the first on ties). */
    public static int argmax(float[] x, int o, int n) {
        int best = 0;
        float bv = x[o];
        for (int i = 1; i < n; i++) {
            if (x[o + i] > bv) {
                bv = x[o + i];
                best = i;
            }
        }
        return best;
    }

    /** Copies embedding row {@code token} of {@code table (vocab, dim)} into {@code out[oo..oo+dim)}. */
    public static void embedding(Tensor table, int token, float[] out, int oo) {
        if (token < 0 || token >= table.dim(0)) {
            throw new IllegalArgumentException("token id " + token + " is outside the vocabulary (size " + table.dim(0) + ")");
        }
        table.row(token, out, oo);
    }
}
