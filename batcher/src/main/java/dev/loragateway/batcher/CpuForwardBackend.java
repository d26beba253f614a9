package dev.loragateway.batcher;

import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.kernels.cpu.CpuBackend;

/** Steps on the CPU ({@link ForwardPass}), the KV pool in the heap: {@link Engine.Options#kvBytes} of it, at most a quarter of the heap. */
public final class CpuForwardBackend implements ForwardBackend {
    private final CpuBackend cpu;

    /** Steps run on {@code cpu}'s threads; the engine closes it when it closes. */
    public CpuForwardBackend(CpuBackend cpu) {
        this.cpu = cpu;
    }

    @Override
    public Forward open(LlamaModel model, DeviceTier<?> adapters, Engine.Options opts) {
        ForwardPass pass = new ForwardPass(model, cpu, adapters == null ? null : adapters.pool());
        long bytes = opts.kvBytes(model.config(), Runtime.getRuntime().maxMemory() / 4);
        return new Forward(pass, KvBlockPool.ofBytes(model.config(), bytes, opts.blockSize()));
    }

    @Override
    public void close() {
        cpu.close();
    }
}
