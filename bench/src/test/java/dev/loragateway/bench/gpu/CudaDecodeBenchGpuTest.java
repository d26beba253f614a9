package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaDevice;
import org.junit.jupiter.api.Test;

/** {@link CudaDecodeBench} on the device (the emulator in {@code mvn verify}); skips without one. */
class CudaDecodeBenchGpuTest {
    @Test
    void theDecodeBenchRunsTheRealPassOnATinyShape() {
        CudaDevice.Probe probe = CudaDevice.probe();
        assumeTrue(probe.usable(), () -> "no usable CUDA device: " + probe.reason());
        try (CudaContext ctx = CudaContext.open(probe, new CudaContext.Options(64L << 20, 1L << 30))) {
            GpuDecodeBench bench = new CudaDecodeBench();
            var shape = ModelShape.TINY;
            try (var model = bench.build(ctx, shape, new GpuDecodeBench.Spec(4, 2, 4, 20))) {
                double seconds = model.decode(new int[] {-1, 0, 1, 0}, 2, 3);
                assertTrue(seconds > 0 && seconds < 60, "3 steps took " + seconds + " s");
                assertThrows(IllegalArgumentException.class, () -> model.decode(new int[5], 1, 1));
            }
        }
    }
}
