package dev.loragateway.kernels.cuda;

import jcuda.driver.CUevent;
import jcuda.driver.JCudaDriver;

/**
 * A CUDA event of a {@link CudaContext} ({@link CudaContext#event()}): a mark recorded on the
 * context's stream, completed when the GPU reaches it. Two of them time the work queued between
 * them as the GPU saw it (resolution about 0.5 µs), without the host's launch or synchronisation
 * costs:
 * <pre>{@code
 * start.record();
 * for (int i = 0; i < n; i++) ops.gemv(...);
 * end.record();
 * double usPerLaunch = 1000.0 * end.elapsedMillisSince(start) / n;   // waits for end
 * }</pre>
 * If the host issues work more slowly than the GPU runs it, the GPU idles between launches and
 * that idle time is inside the span too: time batches of launches queued back to back.
 */
public final class CudaEvent implements AutoCloseable {
    private final CudaContext context;
    private final CUevent event;

    CudaEvent(CudaContext context, CUevent event) {
        this.context = context;
        this.event = event;
    }

    /** Queues this event on the context's stream ({@code cuEventRecord}); a later record moves it. */
    public void record() {
        context.makeCurrent();
        CudaDevice.check(JCudaDriver.cuEventRecord(event, context.stream()), "cuEventRecord");
    }

    /** Waits until the GPU has reached this event's last record ({@code cuEventSynchronize}). */
    public void synchronize() {
        context.makeCurrent();
        CudaDevice.check(JCudaDriver.cuEventSynchronize(event), "cuEventSynchronize");
    }

    /**
     * Milliseconds of GPU time from {@code start}'s record to this event's ({@code cuEventElapsedTime}),
     * after waiting for this event. Both must have been recorded, {@code start} first.
     */
    public float elapsedMillisSince(CudaEvent start) {
        synchronize();
        float[] ms = new float[1];
        CudaDevice.check(JCudaDriver.cuEventElapsedTime(ms, start.event, event), "cuEventElapsedTime");
        return ms[0];
    }

    CUevent event() {
        return event;
    }

    /** Destroys the event (through the context, which destroys what is left when it closes). */
    @Override
    public void close() {
        context.freeEvent(this);
    }
}
