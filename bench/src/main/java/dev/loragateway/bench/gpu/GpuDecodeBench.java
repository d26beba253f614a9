package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaContext;

/**
 * What the GPU bench's decode-throughput table measures through: {@link CudaDecodeBench} (the real
 * {@code CudaForwardPass}), or a made-up one in the tests. Without one ({@code Optional.empty()}
 * in {@link GpuBench#run}) the bench prints that the table needs the CUDA forward pass and goes on.
 *
 * <p>What the bench does with it, per model shape: {@link #build} once, then for each batch size
 * B and each adapter mode {@link Model#decode} with {@code rowAdapter} of length B: all −1 (base
 * model), all 0 (one adapter), {@code i mod adapters} (many); tokens/s = {@code B · steps / seconds}.
 */
public interface GpuDecodeBench {
    /** What to build: KV room for {@code maxBatch} sequences, {@code adapters} adapters of {@code rank}. */
    record Spec(int maxBatch, int adapters, int rank, int contextTokens) {
    }

    /** One line for the table's heading, e.g. "CudaForwardPass (bf16 weights, fp32 KV cache)". */
    String describe();

    /**
     * A model of {@code shape} on {@code ctx}'s device: bf16 weights with small random values made
     * on the device or from the host (no files: a 7B model is 13.5 GB), {@code spec.adapters()}
     * random LoRA adapters of {@code spec.rank()} on all seven projections resident in device slots,
     * and a KV cache for {@code spec.maxBatch()} sequences of {@code spec.contextTokens()} plus the
     * steps to come. May throw {@link dev.loragateway.kernels.cuda.DeviceMemoryExhaustedException}
     * (the bench reports the shape as not fitting and goes on).
     */
    Model build(CudaContext ctx, ModelShape shape, Spec spec);

    /** A built model. */
    interface Model extends AutoCloseable {
        /**
         * Decodes {@code warmupSteps} then {@code steps} steps of {@code rowAdapter.length}
         * sequences, each already holding {@code contextTokens} tokens of KV cache when timing
         * starts (filled by a prefill or written directly: only the length matters); row i uses
         * adapter {@code rowAdapter[i]} (−1: none). Each step is a whole engine step: inputs
         * uploaded, the forward pass, greedy sampling on the device and the sampled tokens copied
         * back. Returns the wall-clock seconds of the {@code steps} timed steps.
         */
        double decode(int[] rowAdapter, int warmupSteps, int steps);

        /** Frees the model's device memory. */
        @Override
        void close();
    }
}
