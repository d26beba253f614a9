package dev.loragateway.batcher;

import dev.loragateway.kernels.cpu.LoraSlotPool;

/**
 * One forward step of a model over the rows of a {@link StepBatch}: {@link ForwardPass} on the CPU,
 * {@link CudaForwardPass} on a CUDA device. After {@code step}, every row's cache holds its token's
 * keys and values and {@code logits} holds {@code batch.logitRows() × vocab} floats in row order.
 */
public interface StepForward extends AutoCloseable {
    void step(StepBatch batch, float[] logits);

    LlamaModel model();

    /** The host slot pool rows' adapters come from, or null. */
    LoraSlotPool pool();

    /** Frees what the pass holds (device memory); the CPU pass holds nothing to free. */
    @Override
    void close();
}
