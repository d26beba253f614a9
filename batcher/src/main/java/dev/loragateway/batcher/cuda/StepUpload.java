package dev.loragateway.batcher.cuda;

import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.cpu.LoraBatch;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.DeviceBuffer;
import dev.loragateway.kernels.cuda.PinnedBuffer;
import java.nio.IntBuffer;
import java.util.Arrays;
import jcuda.driver.CUdeviceptr;

/**
 * The integer arrays one CUDA step's kernels read, staged in pinned memory and sent in one copy.
 * Layout, in ints, each array right after the previous one:
 *
 * <pre>
 * tokens     [rows]              the row's token
 * positions  [rows]              the row's position in its sequence
 * row_seq    [rows]              the row's sequence, numbered in row order
 * tables     [seqs, maxBlocks]   each sequence's block table, 0-padded
 * lengths    [seqs]              position + 1 (decode steps only: one row per sequence)
 * logit_rows [logitRows]         the rows that want logits
 * seg_start  [segments + 1]      LoRA segments (when a row has an adapter)
 * seg_slot   [segments]
 * row_slot   [rows]              the row's slot, −1 for none
 * </pre>
 *
 * Rows of one sequence are contiguous ({@link StepBatch}'s rule), so sequences are numbered by
 * comparing each row's cache with the previous row's: rows {@code [A@0, A@1, A@2, B@17]} give
 * {@code row_seq [0, 0, 0, 1]}. The host and device arrays grow to the largest step seen and are
 * reused; {@link #stage} allocates nothing once they have. The pinned array may be rewritten only
 * after the stream was synchronised past the copy {@link #upload} queued.
 */
final class StepUpload implements AutoCloseable {
    private final CudaContext ctx;
    private int cap;            // ints the buffers hold
    private DeviceBuffer device;
    private PinnedBuffer host;
    private KvCache[] seqCache = new KvCache[8]; // [seqs] each sequence's cache, in row order

    // this step's shape
    private int rows;
    private int seqs;
    private int maxBlocks;
    private int maxAttended;
    private int segments;
    private int maxSegmentRows;
    private int maxRank;
    // offsets of the arrays, in ints
    private int oPos;
    private int oSeq;
    private int oTab;
    private int oLen;
    private int oLog;
    private int oSegStart;
    private int oSegSlot;
    private int oRowSlot;
    private int total;

    StepUpload(CudaContext ctx) {
        this.ctx = ctx;
    }

    /**
     * Writes the step's arrays into the pinned staging (after the rows' caches were given room for
     * their positions).
     *
     * @param lora   the step's LoRA segments, or null when no row has an adapter
     * @param slots  the host slot pool the segments' slots index (for their ranks), or null
     * @param window the model's sliding window, 0 for none
     */
    void stage(StepBatch batch, LoraBatch lora, LoraSlotPool slots, int window) {
        rows = batch.size();
        seqs = 0;
        maxBlocks = 1;
        maxAttended = 1;
        for (int r = 0; r < rows; r++) {
            KvCache c = batch.cache(r);
            if (r == 0 || c != batch.cache(r - 1)) {
                if (seqs == seqCache.length) {
                    seqCache = Arrays.copyOf(seqCache, 2 * seqs);
                }
                seqCache[seqs++] = c;
            }
            maxBlocks = Math.max(maxBlocks, c.blocks());
            int len = batch.position(r) + 1;
            maxAttended = Math.max(maxAttended, window > 0 ? Math.min(len, window) : len);
        }
        segments = lora == null ? 0 : lora.segments();
        oPos = rows;
        oSeq = oPos + rows;
        oTab = oSeq + rows;
        oLen = oTab + seqs * maxBlocks;
        oLog = oLen + seqs;
        oSegStart = oLog + batch.logitRows();
        oSegSlot = oSegStart + segments + 1;
        oRowSlot = oSegSlot + segments;
        total = oRowSlot + rows;
        ensure(total);

        IntBuffer in = host.buffer().asIntBuffer();
        boolean decode = decode();
        int seq = -1;
        int lr = 0;
        for (int r = 0; r < rows; r++) {
            if (r == 0 || batch.cache(r) != batch.cache(r - 1)) {
                seq++;
            }
            in.put(r, batch.token(r));
            in.put(oPos + r, batch.position(r));
            in.put(oSeq + r, seq);
            in.put(oRowSlot + r, batch.slot(r));
            if (decode) {
                in.put(oLen + r, batch.position(r) + 1);
            }
            if (batch.wantsLogits(r)) {
                in.put(oLog + lr++, r);
            }
        }
        for (int s = 0; s < seqs; s++) {
            KvCache c = seqCache[s];
            int[] t = c.table();
            for (int b = 0; b < maxBlocks; b++) {
                in.put(oTab + s * maxBlocks + b, b < c.blocks() ? t[b] : 0);
            }
            seqCache[s] = null; // hold no cache past the step
        }
        maxSegmentRows = 0;
        maxRank = 0;
        for (int g = 0; g < segments; g++) {
            in.put(oSegStart + g, lora.segStart(g));
            in.put(oSegSlot + g, lora.segSlot(g));
            int end = g + 1 < segments ? lora.segStart(g + 1) : rows;
            maxSegmentRows = Math.max(maxSegmentRows, end - lora.segStart(g));
            if (lora.segSlot(g) >= 0) {
                maxRank = Math.max(maxRank, slots.maxRank(lora.segSlot(g)));
            }
        }
        if (lora != null) {
            in.put(oSegStart + segments, rows);
        }
    }

    /** Queues the copy of the staged arrays to the device. */
    void upload() {
        ctx.copyToDevice(host, 0, device, 0, 4L * total);
    }

    /** Every sequence has one row: the step decodes (else it prefills, or mixes both). */
    boolean decode() {
        return seqs == rows;
    }

    int maxBlocks() {
        return maxBlocks;
    }

    /** The most positions a row attends to (within the sliding window). */
    int maxAttended() {
        return maxAttended;
    }

    int segments() {
        return segments;
    }

    int maxSegmentRows() {
        return maxSegmentRows;
    }

    /** The largest rank of the segments' adapters, 0 when no row has one. */
    int maxRank() {
        return maxRank;
    }

    CUdeviceptr tokens() {
        return at(0);
    }

    CUdeviceptr positions() {
        return at(oPos);
    }

    CUdeviceptr rowSeq() {
        return at(oSeq);
    }

    CUdeviceptr tables() {
        return at(oTab);
    }

    CUdeviceptr lengths() {
        return at(oLen);
    }

    CUdeviceptr logitRows() {
        return at(oLog);
    }

    CUdeviceptr segStart() {
        return at(oSegStart);
    }

    CUdeviceptr segSlot() {
        return at(oSegSlot);
    }

    CUdeviceptr rowSlot() {
        return at(oRowSlot);
    }

    private CUdeviceptr at(int intOffset) {
        return device.pointer().withByteOffset(4L * intOffset);
    }

    private void ensure(int ints) {
        if (ints <= cap) {
            return;
        }
        close();
        cap = Math.max(ints, cap * 2);
        device = ctx.pool().allocate(4L * cap);
        host = ctx.pinned(4L * cap);
    }

    @Override
    public void close() {
        if (device != null) {
            ctx.pool().free(device);
            device = null;
        }
        if (host != null) {
            host.close();
            host = null;
        }
    }
}
