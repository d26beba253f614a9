package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaDevice;
import dev.loragateway.kernels.cuda.CudaOps;
import dev.loragateway.bench.gpu.GpuBenchConfig.Section;
import java.io.PrintWriter;
import java.util.Optional;
import jcuda.driver.CUdevice_attribute;

/**
 * The GPU bench: the three tables, each printed as Markdown as soon as it is done
 * ({@code docs/gpu.md} says how to read them):
 * <ol>
 *   <li>SGMV latency against the number of distinct adapters, beside BGMV and gather + batched
 *       matmul ({@link SgmvBench});
 *   <li>achieved memory bandwidth of the batch-1 GEMV beside a device-to-device copy
 *       ({@link BandwidthBench});
 *   <li>decode throughput at batch 1..64, base vs one vs many adapters, through the CUDA forward
 *       pass ({@link DecodeSection}, {@link GpuDecodeBench}).
 * </ol>
 * Entry points: {@code lora-gateway bench gpu} and {@link GpuBenchMain} ({@code gpu-check.sh bench}).
 * GPU times come from CUDA events (see {@link GpuTimer}).
 */
public final class GpuBench {
    /** Exit status when there is no usable device (as picocli's usage errors). */
    public static final int NO_DEVICE = 2;

    private GpuBench() {
    }

    /** Runs the sections of {@code config} on the probe's device, the decode table through {@link CudaDecodeBench}. */
    public static int run(GpuBenchConfig config, CudaDevice.Probe probe, PrintWriter out, PrintWriter err) {
        return run(config, probe, decodeBench(), out, err);
    }

    /** The decode table's bench for the entry points: the CUDA forward pass of the batcher module. */
    static Optional<GpuDecodeBench> decodeBench() {
        return Optional.of(new CudaDecodeBench());
    }

    /**
     * Runs the sections of {@code config} on the probe's device. Without a usable device prints
     * "no usable CUDA device: REASON" to {@code err} and returns {@link #NO_DEVICE}; else returns 0.
     */
    public static int run(GpuBenchConfig config, CudaDevice.Probe probe, Optional<GpuDecodeBench> decode, PrintWriter out,
                          PrintWriter err) {
        if (!probe.usable()) {
            err.println("gpu bench: no usable CUDA device: " + probe.reason());
            err.flush();
            return NO_DEVICE;
        }
        try (CudaContext ctx = CudaContext.open(probe, CudaContext.Options.defaults())) {
            CudaOps ops = new CudaOps(ctx);
            long[] mem = ctx.memoryInfo();
            out.printf("# GPU bench on %s: %d SMs, %.1f GB free of %.1f GB%n%n", probe.describe(),
                ctx.deviceAttribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT), mem[0] / 1e9,
                mem[1] / 1e9);
            out.flush();
            if (config.sections().contains(Section.SGMV)) {
                new SgmvBench(ops, config).run(out);
            }
            if (config.sections().contains(Section.BANDWIDTH)) {
                new BandwidthBench(ops, config).run(out);
            }
            if (config.sections().contains(Section.DECODE)) {
                new DecodeSection(decode, config).run(ctx, out);
            }
        }
        return 0;
    }
}
