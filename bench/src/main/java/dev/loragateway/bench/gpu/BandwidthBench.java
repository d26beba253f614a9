package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaOps;
import dev.loragateway.kernels.cuda.DeviceBuffer;
import dev.loragateway.kernels.cuda.DeviceMemoryPool;
import dev.loragateway.bench.gpu.ModelShape.Matrix;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import jcuda.driver.CUdevice_attribute;

/**
 * Achieved memory bandwidth of decode at batch 1: {@code gemv_bf16} with one row over each of a
 * layer's seven bf16 projections (what one decode step reads per layer), as weight bytes read per
 * second, beside {@code cuMemcpyDtoDAsync} of the same number of bytes. A copy reads and writes
 * each byte, so its DRAM traffic is twice the bytes copied: the table gives both, and the ratio
 * {@code gemv GB/s / copy read+write GB/s} is the fraction of the bandwidth the device reaches
 * in practice that the GEMV gets.
 *
 * <p>So that the weights come from DRAM and not from the L2 cache, the bench allocates enough
 * copies of the layer to cover three times the L2 ({@link #layerCopies}) and one timed iteration
 * sweeps all of them; the copy does the same, copy after copy into one target buffer.
 */
final class BandwidthBench {
    /** Where each matrix of a layer sits in one buffer: 256-byte aligned offsets, and the span. */
    record LayerLayout(List<Matrix> weights, long[] offsets, long span, long weightBytes) {
        static LayerLayout of(ModelShape shape) {
            List<Matrix> w = shape.layerWeights();
            long[] off = new long[w.size()];
            long at = 0;
            long bytes = 0;
            for (int i = 0; i < w.size(); i++) {
                off[i] = at;
                at += (w.get(i).bytes() + DeviceMemoryPool.ALIGNMENT - 1) / DeviceMemoryPool.ALIGNMENT * DeviceMemoryPool.ALIGNMENT;
                bytes += w.get(i).bytes();
            }
            return new LayerLayout(w, off, at, bytes);
        }

        int maxIn() {
            return weights.stream().mapToInt(Matrix::in).max().orElse(0);
        }

        int maxOut() {
            return weights.stream().mapToInt(Matrix::out).max().orElse(0);
        }
    }

    /** Copies of a {@code layerBytes} layer that cover {@code 3 × l2Bytes}: at least 1, at most 16. */
    static int layerCopies(long layerBytes, long l2Bytes) {
        long n = (3 * l2Bytes + layerBytes - 1) / layerBytes;
        return (int) Math.max(1, Math.min(16, n));
    }

    /** Bytes per microsecond is MB/s; GB/s (10⁹) is bytes / µs / 1000. */
    static double gbPerSecond(double bytes, double micros) {
        return bytes / micros / 1e3;
    }

    static Table table() {
        return new Table("model", "layer MB", "copies", "gemv µs / layer", "gemv GB/s", "D2D copy GB/s",
            "D2D read+write GB/s", "gemv / read+write");
    }

    private final CudaOps ops;
    private final CudaContext ctx;
    private final GpuBenchConfig config;

    BandwidthBench(CudaOps ops, GpuBenchConfig config) {
        this.ops = ops;
        this.ctx = ops.context();
        this.config = config;
    }

    void run(PrintWriter out) {
        long l2 = ctx.deviceAttribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
        out.printf("## Memory bandwidth at batch 1: gemv_bf16 over one layer's projections vs cuMemcpyDtoD "
            + "(L2 %.1f MB, %s launch, %d warm-up + %d timed iterations)%n%n", l2 / 1e6,
            config.launch().name().toLowerCase(Locale.ROOT), config.warmup(), config.iterations());
        out.flush();
        Table t = table();
        try (Staging staging = new Staging(ctx, 8L << 20); GpuTimer timer = new GpuTimer(ctx, config.launch())) {
            for (ModelShape shape : config.models()) {
                runShape(t, shape, l2, staging, timer);
            }
        }
        out.println(t.render());
        out.flush();
    }

    private void runShape(Table t, ModelShape shape, long l2, Staging staging, GpuTimer timer) {
        LayerLayout layer = LayerLayout.of(shape);
        int copies = layerCopies(layer.span(), l2);
        List<DeviceBuffer> live = new ArrayList<>();
        try {
            SplittableRandom rnd = new SplittableRandom(shape.hidden());
            List<DeviceBuffer> weights = new ArrayList<>();
            for (int c = 0; c < copies; c++) {
                DeviceBuffer w = ctx.pool().allocate(layer.span());
                live.add(w);
                weights.add(w);
                staging.randomBf16(w, 0, w.bytes(), rnd, 0.03f);
            }
            DeviceBuffer x = ctx.pool().allocate(4L * layer.maxIn());
            live.add(x);
            staging.randomF32(x, 0, x.bytes(), rnd, 1f);
            DeviceBuffer y = ctx.pool().allocate(4L * layer.maxOut());
            live.add(y);
            DeviceBuffer target = ctx.pool().allocate(layer.weightBytes());
            live.add(target);

            Runnable gemv = () -> {
                for (DeviceBuffer w : weights) {
                    for (int i = 0; i < layer.weights().size(); i++) {
                        Matrix m = layer.weights().get(i);
                        ops.gemv(y.pointer(), x.pointer(), w.at(layer.offsets()[i], m.bytes()), null, 1, m.out(), m.in(),
                            m.in(), m.out(), false);
                    }
                }
            };
            Runnable copy = () -> {
                for (DeviceBuffer w : weights) {
                    ctx.copyDeviceToDevice(w, 0, target, 0, layer.weightBytes());
                }
            };
            double gemvUs = timer.micros(gemv, config.warmup(), config.iterations()) / copies;
            double copyUs = timer.micros(copy, config.warmup(), config.iterations()) / copies;
            double gemvGb = gbPerSecond(layer.weightBytes(), gemvUs);
            double copyGb = gbPerSecond(layer.weightBytes(), copyUs);
            t.row(shape.name(), Table.num(layer.weightBytes() / 1e6, 1), Integer.toString(copies), Table.num(gemvUs, 1),
                Table.num(gemvGb, 0), Table.num(copyGb, 0), Table.num(2 * copyGb, 0), Table.num(gemvGb / (2 * copyGb), 2));
        } finally {
            ctx.synchronize();
            live.forEach(ctx.pool()::free);
        }
    }
}
