package dev.loragateway.kernels.cuda;

import jcuda.driver.CUgraphExec;
import jcuda.driver.JCudaDriver;

/**
 * An executable CUDA graph made by {@link CudaContext#capture(Runnable)}: the captured copies and
 * launches, replayed on the context's stream by one {@link #launch()} (one host call instead of one
 * per launch, so short kernels are timed without JCuda's per-launch host cost between them).
 * Replays use the device addresses and scalar arguments captured; the buffers' contents may change.
 */
public final class CudaGraph implements AutoCloseable {
    private final CudaContext context;
    private final CUgraphExec exec;

    CudaGraph(CudaContext context, CUgraphExec exec) {
        this.context = context;
        this.exec = exec;
    }

    /** Queues one replay of the graph on the context's stream ({@code cuGraphLaunch}). */
    public void launch() {
        context.makeCurrent();
        CudaDevice.check(JCudaDriver.cuGraphLaunch(exec, context.stream()), "cuGraphLaunch");
    }

    CUgraphExec exec() {
        return exec;
    }

    /** Destroys the graph (through the context, which destroys what is left when it closes). */
    @Override
    public void close() {
        context.freeGraph(this);
    }
}
