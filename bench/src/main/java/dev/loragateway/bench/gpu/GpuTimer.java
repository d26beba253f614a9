package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaEvent;
import dev.loragateway.kernels.cuda.CudaGraph;
import dev.loragateway.bench.gpu.GpuBenchConfig.Launch;

/**
 * Times GPU work with two {@link CudaEvent}s around {@code iterations} back-to-back runs, after
 * {@code warmup} untimed ones. With {@link Launch#GRAPH} the work is first captured into a
 * {@link CudaGraph} and each run is one replay: the GPU then runs the kernels back to back, where
 * launch by launch ({@link Launch#STREAM}) a kernel shorter than JCuda's host cost per launch
 * (a few µs) would leave the GPU waiting for the next one, and that wait would be in the number.
 */
final class GpuTimer implements AutoCloseable {
    private final CudaContext ctx;
    private final Launch launch;
    private final CudaEvent start;
    private final CudaEvent end;

    GpuTimer(CudaContext ctx, Launch launch) {
        this.ctx = ctx;
        this.launch = launch;
        this.start = ctx.event();
        this.end = ctx.event();
    }

    /** Mean GPU microseconds of one run of {@code work}, which must only queue copies and launches. */
    double micros(Runnable work, int warmup, int iterations) {
        if (launch == Launch.GRAPH) {
            try (CudaGraph g = ctx.capture(work)) {
                return time(g::launch, warmup, iterations);
            }
        }
        return time(work, warmup, iterations);
    }

    private double time(Runnable run, int warmup, int iterations) {
        for (int i = 0; i < warmup; i++) {
            run.run();
        }
        start.record();
        for (int i = 0; i < iterations; i++) {
            run.run();
        }
        end.record();
        return 1000.0 * end.elapsedMillisSince(start) / iterations;
    }

    @Override
    public void close() {
        start.close();
        end.close();
    }
}
