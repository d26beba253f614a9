package dev.loragateway.batcher;

import dev.loragateway.kernels.cpu.LoraSlotPool;

/**
 * What every {@link StepForward} does around its arithmetic, written once for the CPU and the CUDA
 * pass: the checks of a step's logits buffer and adapter slots, and advancing each row's cache
 * after the step.
 */
public final class StepRows {
    private StepRows() {
    }

    /**
     * The step's logit rows; throws {@link IllegalArgumentException} when {@code logits} holds fewer
     * than {@code logitRows × vocab} floats.
     */
    public static int checkLogits(StepBatch batch, float[] logits, int vocab) {
        int logitRows = batch.logitRows();
        if (logits.length < logitRows * vocab) {
            throw new IllegalArgumentException("logits buffer holds " + logits.length + " floats, need " + logitRows * vocab);
        }
        return logitRows;
    }

    /**
     * Whether any row runs with an adapter; throws {@link IllegalStateException} when one does and
     * the pass has no slot pool ({@code pool} null).
     */
    public static boolean checkSlots(StepBatch batch, LoraSlotPool pool) {
        for (int r = 0; r < batch.size(); r++) {
            if (batch.slot(r) >= 0) {
                if (pool == null) {
                    throw new IllegalStateException("row " + r + " asks for LoRA slot " + batch.slot(r) + " but this pass has no slot pool");
                }
                return true;
            }
        }
        return false;
    }

    /** Advances each row's cache past its last row of the step (rows of one sequence are contiguous). */
    public static void advanceCaches(StepBatch batch) {
        int rows = batch.size();
        for (int r = 0; r < rows; r++) {
            if (r + 1 == rows || batch.cache(r + 1) != batch.cache(r)) {
                KvCache c = batch.cache(r);
                c.advance(batch.position(r) + 1 - c.length());
            }
        }
    }
}
