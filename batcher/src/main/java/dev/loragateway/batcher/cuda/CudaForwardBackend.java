package dev.loragateway.batcher.cuda;

import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.ForwardBackend;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.kernels.cuda.CudaOps;
import dev.loragateway.kernels.cuda.DeviceMemoryPool;

/**
 * Steps on a CUDA device ({@link CudaForwardPass}); the KV cache lives on the device:
 * {@link Engine.Options#kvBytes} of it, at most 80% of the device memory the pool may still take
 * once the weights and adapters are placed. The device's context belongs to the caller.
 */
public final class CudaForwardBackend implements ForwardBackend {
    private final CudaOps ops;

    public CudaForwardBackend(CudaOps ops) {
        this.ops = ops;
    }

    @Override
    public Forward open(LlamaModel model, DeviceTier<?> adapters, Engine.Options opts) {
        CudaForwardPass pass = new CudaForwardPass(model, ops, adapters == null ? null : adapters.pool(), loraBytes(adapters),
            left -> opts.kvBytes(model.config(), left / 10 * 8), opts.blockSize());
        return new Forward(pass, pass.kvPool());
    }

    /**
     * Device bytes for the adapters' weights: the device tier's byte budget (float32 bytes of the
     * resident adapters) plus a quarter for fragmentation, at most a quarter of what the device pool
     * may still take (no overflow for huge budgets).
     */
    private long loraBytes(DeviceTier<?> adapters) {
        if (adapters == null) {
            return 0;
        }
        DeviceMemoryPool pool = ops.context().pool();
        long free = pool.limitBytes() - pool.usedBytes();
        long budget = adapters.byteBudget();
        return budget >= free / 4 ? free / 4 : Math.min(free / 4, budget + budget / 4 + 256L * adapters.pool().slots());
    }

    @Override
    public void close() {
        // nothing: the passes free their device memory, and the context is the caller's
    }
}
