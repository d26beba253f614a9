package dev.loragateway.batcher;

import java.util.Arrays;

/**
 * The rows of one forward step. A row is one token of one sequence at that sequence's next
 * position; a prefill adds several consecutive rows of the same sequence, a decode one. Rows of
 * different sequences may be mixed freely (each row carries its own KV cache and its own adapter
 * slot, −1 for the base model alone), but rows of one sequence must be added contiguously and in
 * order. Rows of one adapter should be contiguous too (fewer SGMV segments), but need not be.
 *
 * <p>Example: sequence A prefilling 3 tokens and sequence B decoding one gives rows
 * {@code [A@0, A@1, A@2, B@17]}; logits are wanted for rows 2 and 3.
 */
public final class StepBatch {
    private int size;
    private int[] tokens = new int[8];
    private int[] positions = new int[8];
    private KvCache[] caches = new KvCache[8];
    private boolean[] wantLogits = new boolean[8];
    private int[] slots = new int[8];
    private int logitRows;

    /** Empties the batch, keeping its arrays. */
    public void clear() {
        Arrays.fill(caches, 0, size, null);
        size = 0;
        logitRows = 0;
    }

    /** Appends a base-model row: {@code token} at the next position of {@code cache}; returns the row's position. */
    public int add(KvCache cache, int token, boolean logits) {
        return add(cache, token, logits, -1);
    }

    /**
     * Appends a row that runs with the adapter in LoRA slot {@code slot} (−1: none); returns the
     * row's position.
     */
    public int add(KvCache cache, int token, boolean logits, int slot) {
        if (size == tokens.length) {
            int cap = size * 2;
            tokens = Arrays.copyOf(tokens, cap);
            positions = Arrays.copyOf(positions, cap);
            caches = Arrays.copyOf(caches, cap);
            wantLogits = Arrays.copyOf(wantLogits, cap);
            slots = Arrays.copyOf(slots, cap);
        }
        int pos = size > 0 && caches[size - 1] == cache ? positions[size - 1] + 1 : cache.length();
        tokens[size] = token;
        positions[size] = pos;
        caches[size] = cache;
        wantLogits[size] = logits;
        slots[size] = slot;
        if (logits) {
            logitRows++;
        }
        size++;
        return pos;
    }

    public int size() {
        return size;
    }

    /** Rows that asked for logits; their logits come out in row order. */
    public int logitRows() {
        return logitRows;
    }

    public int token(int row) {
        return tokens[row];
    }

    public int position(int row) {
        return positions[row];
    }

    public KvCache cache(int row) {
        return caches[row];
    }

    public int slot(int row) {
        return slots[row];
    }

    /** The rows' slots (valid up to {@link #size()}). */
    public int[] slots() {
        return slots;
    }

    public boolean wantsLogits(int row) {
        return wantLogits[row];
    }
}
