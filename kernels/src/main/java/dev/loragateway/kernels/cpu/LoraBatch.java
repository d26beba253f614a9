package dev.loragateway.kernels.cpu;

import java.util.Arrays;

/**
 * Which slot of a {@link LoraSlotPool} each row of a step uses, as per-row indices (for BGMV) and
 * as segments of consecutive rows that share a slot (for SGMV). Built once per step and reused by
 * every layer and projection. Slot {@code -1} means "no adapter" (the base model alone).
 *
 * <p>Worked example: row slots {@code [3, 3, 0, 7]} → {@code segStart [0, 2, 3, 4]},
 * {@code segSlot [3, 0, 7]}. The engine orders rows by slot so that rows of one adapter are
 * contiguous; when they are not, one adapter simply yields several segments.
 */
public final class LoraBatch {
    private final int[] rowSlot;
    private final int[] segStart;
    private final int[] segSlot;
    private final int segments;
    private final int rows;
    private final boolean any;

    private LoraBatch(int[] rowSlot, int rows, int[] segStart, int[] segSlot, int segments) {
        this.rowSlot = rowSlot;
        this.rows = rows;
        this.segStart = segStart;
        this.segSlot = segSlot;
        this.segments = segments;
        boolean a = false;
        for (int s = 0; s < segments; s++) {
            a |= segSlot[s] >= 0;
        }
        this.any = a;
    }

    /** Segments of the first {@code rows} entries of {@code rowSlot} (copied). */
    public static LoraBatch of(int[] rowSlot, int rows) {
        if (rows < 0 || rows > rowSlot.length) {
            throw new IllegalArgumentException("rows " + rows + " outside [0, " + rowSlot.length + "]");
        }
        int[] slots = Arrays.copyOf(rowSlot, rows);
        int[] start = new int[rows + 1];
        int[] seg = new int[Math.max(rows, 1)];
        int n = 0;
        for (int i = 0; i < rows; i++) {
            if (i == 0 || slots[i] != slots[i - 1]) {
                start[n] = i;
                seg[n] = slots[i];
                n++;
            }
        }
        start[n] = rows;
        return new LoraBatch(slots, rows, start, seg, n);
    }

    /** A batch of {@code rows} rows that all run the base model alone. */
    public static LoraBatch none(int rows) {
        int[] s = new int[rows];
        Arrays.fill(s, -1);
        return of(s, rows);
    }

    public int rows() {
        return rows;
    }

    public int segments() {
        return segments;
    }

    /** First row of segment {@code s}; {@code segStart(segments())} is {@link #rows()}. */
    public int segStart(int s) {
        return segStart[s];
    }

    public int segSlot(int s) {
        return segSlot[s];
    }

    public int rowSlot(int row) {
        return rowSlot[row];
    }

    /** Whether any row uses an adapter. */
    public boolean anyAdapter() {
        return any;
    }

    /** Whether every segment is a single row (decode with distinct adapters: BGMV's case). */
    public boolean allSingleRows() {
        return segments == rows;
    }

    int[] rowSlots() {
        return rowSlot;
    }

    int[] segStarts() {
        return segStart;
    }

    int[] segSlots() {
        return segSlot;
    }
}
