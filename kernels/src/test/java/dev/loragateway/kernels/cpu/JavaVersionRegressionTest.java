package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import static dev.loragateway.kernels.Fixtures.assertWithin;
import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Regression (issue 12, item 2): under Java 25 every completion was a 500, {@code NoSuchMethodError:
 * FloatVector.fromByteBuffer}, because the kernels were compiled against Java 17's Vector API. The
 * suite runs on Java 17 and on a JDK 22+ (see the parent pom), so this runs on both.
 */
class JavaVersionRegressionTest {
    @Test
    void javaTwentyFiveCompletionDoesNotThrowNoSuchMethodError() {
        // what a completion does to every weight, on the kernels a server uses here (native bf16 GEMM where available): a prefill (rows >= 2, the batched kernels) and decode
        // steps (1 row, the GEMV kernels), through the public entry point with the form chosen for this JVM
        Random rnd = new Random(12);
        int in = 67;
        int outDim = 9;
        try (CpuBackend cpu = CpuBackend.create()) {
            for (DType dtype : DType.values()) {
                Tensor w = Tensor.of("q_proj", dtype, gaussian(rnd, outDim * in, 0.5, 0.05), outDim, in);
                float[] wf = w.toFloats();
                float[] bias = gaussian(rnd, outDim, 0.5, 0);
                for (int rows : new int[] {5, 1}) {
                    float[] x = gaussian(rnd, rows * in, 1, 0);
                    float[] y = new float[rows * outDim];
                    cpu.linear(x, rows, w, bias, y);
                    for (int r = 0; r < rows; r++) {
                        for (int j = 0; j < outDim; j++) {
                            double sum = bias[j];
                            double magnitude = Math.abs(bias[j]);
                            for (int k = 0; k < in; k++) {
                                sum += (double) x[r * in + k] * wf[j * in + k];
                                magnitude += Math.abs((double) x[r * in + k] * wf[j * in + k]);
                            }
                            String at = dtype + " rows=" + rows + " y[" + r + "][" + j + "] with " + CpuKernelForm.describe()
                                + "; " + NativeCpu.describe();
                            // the native bf16 GEMM rounds the activations to bf16 (relative error up to 2^-9 each)
                            double rel = dtype == DType.BF16 && cpu.usesNative() ? 0x1p-8 : 1e-5;
                            assertWithin(sum, y[r * outDim + j], rel * magnitude + 1e-6, () -> at);
                        }
                    }
                }
            }
        }
        if (Runtime.version().feature() >= 20) {
            assertFalse(CpuKernelForm.describe().contains("ByteBuffer"), CpuKernelForm.describe());
        }
    }
}
