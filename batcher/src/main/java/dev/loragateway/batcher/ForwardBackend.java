package dev.loragateway.batcher;

import dev.loragateway.adapters.DeviceTier;

/**
 * Where an {@link Engine}'s steps run: it builds the engine's {@link StepForward} and the
 * {@link KvBlockPool} its sequences' caches come from, sized together from the engine's
 * {@link Engine.Options} ({@link Engine.Options#kvBytes}). {@link CpuForwardBackend} runs on the
 * CPU with the pool in the heap; {@code dev.loragateway.batcher.cuda.CudaForwardBackend} runs on a
 * CUDA device with the pool in device memory.
 */
public interface ForwardBackend extends AutoCloseable {
    /**
     * The pass an engine steps with and the pool its caches come from.
     *
     * @param adapters the device tier whose slot pool rows' adapters come from, or null for the base model only
     */
    Forward open(LlamaModel model, DeviceTier<?> adapters, Engine.Options opts);

    /** Frees what the backend holds beyond its passes (the CPU backend's threads); called once, by the engine's close. */
    @Override
    void close();

    /** A pass and its KV pool: the caches of the rows the pass runs must come from {@code kv}. */
    record Forward(StepForward pass, KvBlockPool kv) {
    }
}
