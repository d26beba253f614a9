package dev.loragateway.kernels.cpu;

import static dev.loragateway.kernels.Fixtures.assertWithin;

/**
 * The double-precision reference the matmul tests compare with: {@code out[r][j] = Σ_k x[r][k] · w[j][k]
 * (+ bias[j])} over the weights as stored, tolerance per element {@code 1e-5·Σ_k |x[r][k]·w[j][k]|
 * (+ |bias[j]|) + 1e-6}.
 */
final class MatMulReference {
    private MatMulReference() {
    }

    /**
     * Asserts {@code out: (rows, outDim)} against the reference for {@code x: (rows, in)},
     * {@code w: (outDim, in)} as floats and {@code bias} (may be null); messages start with {@code shape}.
     */
    static void assertMatches(float[] x, int rows, int in, float[] w, float[] bias, float[] out, int outDim, String shape) {
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < outDim; j++) {
                double sum = 0;
                double magnitude = 0;
                for (int k = 0; k < in; k++) {
                    double p = (double) x[r * in + k] * w[j * in + k];
                    sum += p;
                    magnitude += Math.abs(p);
                }
                if (bias != null) {
                    sum += bias[j];
                    magnitude += Math.abs(bias[j]);
                }
                final int rr = r;
                final int jj = j;
                assertWithin(sum, out[r * outDim + j], 1e-5 * magnitude + 1e-6, () -> shape + " out[" + rr + "][" + jj + "]");
            }
        }
    }
}
