package dev.loragateway.kernels.cuda;

import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The device copy of a host {@link LoraSlotPool}: the float32 slot pool and its table in the layout
 * the LoRA kernels read (kernels README, "The device slot pool and its table").
 *
 * <p>One device buffer holds every slot's weights; an {@link OffsetAllocator} places each slot's
 * range when it is uploaded (adapters differ in size, nothing is padded), and the table's
 * {@code off_a}/{@code off_b} are absolute float offsets from that buffer's base. A slot is
 * uploaded when the host pool's {@link LoraSlotPool#generation generation} of it differs from the
 * one last uploaded: {@link #sync} unpacks its A and Bᵀ rows (float32 or packed bf16 on the host)
 * into pinned staging and queues the copies on the context's stream, so the upload runs ahead of
 * the step's kernels in stream order and the host thread does not wait for it.
 *
 * <p>A step's uploads: {@link #beginStep()}, {@link #sync} for each slot the step uses, then the
 * caller synchronises the stream on every exit of the step, and when the step failed calls
 * {@link #forgetStep()} so that the slots it uploaded are uploaded again on their next use (their
 * copies may not have completed, or may have read staging rewritten since). Staging is reused only
 * after that synchronisation: {@code beginStep} rewinds it. Not thread-safe (the engine thread
 * owns it).
 */
public final class DeviceLoraPool implements AutoCloseable {
    private static final long ALIGN = 256;
    private static final long NOT_UPLOADED = -1; // a generation no slot has

    private final CudaContext ctx;
    private final LoraSlotPool host;
    private final int lmCount;
    private final int modules;
    private final DeviceBuffer weights;
    private final OffsetAllocator ranges;
    private final long[] rangeOffset;   // [slot] byte offset of the slot's range, -1 when none
    private final long[] uploaded;      // [slot] host generation the device copy matches
    private int[] stepSlots;            // the slots uploaded since beginStep, stepUploads of them
    private final int[] entryRank;      // (lmCount) one slot's table entries, staged by sync
    private final float[] entryScale;
    private final long[] entryOffA;
    private final long[] entryOffB;
    private int stepUploads;
    private final DeviceBuffer rank;
    private final DeviceBuffer scale;
    private final DeviceBuffer offA;
    private final DeviceBuffer offB;
    private final CudaOps.LoraTable table;
    private PinnedBuffer staging;
    private long stagingUsed;
    private float[] rows = new float[0];
    private long uploads;

    /**
     * @param weightBytes device bytes for all slots' weights (float32): at least the bytes of the
     *                    adapters the host pool may hold at once, plus some room for fragmentation
     */
    public DeviceLoraPool(CudaContext ctx, LoraSlotPool host, long weightBytes) {
        this.ctx = ctx;
        this.host = host;
        this.modules = host.modules();
        this.lmCount = host.layers() * modules;
        long entries = (long) host.slots() * lmCount;
        this.ranges = new OffsetAllocator(Math.max(ALIGN, weightBytes), ALIGN);
        this.weights = ctx.pool().allocate(Math.max(ALIGN, weightBytes));
        this.rangeOffset = new long[host.slots()];
        java.util.Arrays.fill(rangeOffset, -1);
        this.uploaded = new long[host.slots()];
        for (int s = 0; s < host.slots(); s++) {
            uploaded[s] = host.occupied(s) ? NOT_UPLOADED : host.generation(s); // an empty slot matches the zeroed table
        }
        this.stepSlots = new int[host.slots()];
        this.entryRank = new int[lmCount];
        this.entryScale = new float[lmCount];
        this.entryOffA = new long[lmCount];
        this.entryOffB = new long[lmCount];
        this.rank = ctx.pool().allocate(4 * entries);
        this.scale = ctx.pool().allocate(4 * entries);
        this.offA = ctx.pool().allocate(8 * entries);
        this.offB = ctx.pool().allocate(8 * entries);
        ctx.zero(rank, 0, 4 * entries);
        ctx.zero(scale, 0, 4 * entries);
        ctx.zero(offA, 0, 8 * entries);
        ctx.zero(offB, 0, 8 * entries);
        this.table = new CudaOps.LoraTable(rank.pointer(), scale.pointer(), offA.pointer(), offB.pointer(), lmCount);
    }

    /** The table the LoRA kernels take. */
    public CudaOps.LoraTable table() {
        return table;
    }

    /** The float32 pool buffer the table's offsets count from. */
    public DeviceBuffer weights() {
        return weights;
    }

    /** Slot uploads queued so far. */
    public long uploads() {
        return uploads;
    }

    /** Marks the staging free again; call after the stream was synchronised. */
    public void beginStep() {
        stagingUsed = 0;
        stepUploads = 0;
    }

    /**
     * After a failed step (and the stream's synchronisation): the slots uploaded since
     * {@link #beginStep()} count as not uploaded, so their next {@link #sync} uploads them again.
     */
    public void forgetStep() {
        for (int i = 0; i < stepUploads; i++) {
            uploaded[stepSlots[i]] = NOT_UPLOADED;
        }
        stepUploads = 0;
    }

    /**
     * Makes the device copy of {@code slot} match the host pool: when its generation changed, queues
     * the upload of its weights and its table entries (an emptied slot gets rank 0 everywhere).
     *
     * @return whether anything was queued
     */
    public boolean sync(int slot) {
        long gen = host.generation(slot);
        if (uploaded[slot] == gen) {
            return false;
        }
        if (rangeOffset[slot] >= 0) {
            ranges.free(rangeOffset[slot]);
            rangeOffset[slot] = -1;
        }
        long floats = 0;
        for (int l = 0; l < host.layers(); l++) {
            for (int m = 0; m < modules; m++) {
                floats += (long) host.rank(slot, l, m) * (host.in(m) + host.out(m));
            }
        }
        long base = 0; // float offset of the slot's range from the pool's base
        if (floats > 0) {
            long at = ranges.allocate(4 * floats);
            if (at < 0) {
                at = reclaimAndAllocate(4 * floats);
            }
            rangeOffset[slot] = at;
            base = at / 4;
        }
        long tableBytes = (long) lmCount * (4 + 4 + 8 + 8);
        ByteBuffer stage = reserve(4 * floats + tableBytes);
        long stageStart = stagingUsed - (4 * floats + tableBytes);
        int[] rk = entryRank;
        float[] sc = entryScale;
        long[] oa = entryOffA;
        long[] ob = entryOffB;
        long pos = 0;
        for (int l = 0; l < host.layers(); l++) {
            for (int m = 0; m < modules; m++) {
                int e = l * modules + m;
                int r = host.rank(slot, l, m);
                rk[e] = r;
                sc[e] = 0;
                oa[e] = 0;
                ob[e] = 0;
                if (r == 0) {
                    continue;
                }
                sc[e] = host.scaling(slot, l, m);
                int na = r * host.in(m);
                int nb = r * host.out(m);
                if (rows.length < Math.max(na, nb)) {
                    rows = new float[Math.max(na, nb)];
                }
                oa[e] = base + pos;
                host.copyA(slot, l, m, rows, 0);
                stage.asFloatBuffer().put(rows, 0, na);
                stage.position(stage.position() + 4 * na);
                pos += na;
                ob[e] = base + pos;
                host.copyBt(slot, l, m, rows, 0);
                stage.asFloatBuffer().put(rows, 0, nb);
                stage.position(stage.position() + 4 * nb);
                pos += nb;
            }
        }
        long tableAt = stageStart + 4 * floats;
        stage.asIntBuffer().put(rk);
        stage.position(stage.position() + 4 * lmCount);
        stage.asFloatBuffer().put(sc);
        stage.position(stage.position() + 4 * lmCount);
        stage.asLongBuffer().put(oa);
        stage.position(stage.position() + 8 * lmCount);
        stage.asLongBuffer().put(ob);
        if (floats > 0) {
            ctx.copyToDevice(staging, stageStart, weights, rangeOffset[slot], 4 * floats);
        }
        long e0 = (long) slot * lmCount;
        ctx.copyToDevice(staging, tableAt, rank, 4 * e0, 4L * lmCount);
        ctx.copyToDevice(staging, tableAt + 4L * lmCount, scale, 4 * e0, 4L * lmCount);
        ctx.copyToDevice(staging, tableAt + 8L * lmCount, offA, 8 * e0, 8L * lmCount);
        ctx.copyToDevice(staging, tableAt + 16L * lmCount, offB, 8 * e0, 8L * lmCount);
        uploaded[slot] = gen;
        if (stepUploads == stepSlots.length) { // the host rewrote a slot mid-step
            stepSlots = java.util.Arrays.copyOf(stepSlots, 2 * stepUploads);
        }
        stepSlots[stepUploads++] = slot;
        uploads++;
        return true;
    }

    /** Frees the ranges of slots whose host copy moved on (they are re-uploaded on their next use), then retries. */
    private long reclaimAndAllocate(long bytes) {
        for (int s = 0; s < rangeOffset.length; s++) {
            if (rangeOffset[s] >= 0 && uploaded[s] != host.generation(s)) {
                ranges.free(rangeOffset[s]);
                rangeOffset[s] = -1;
            }
        }
        long at = ranges.allocate(bytes);
        if (at < 0) {
            throw new DeviceMemoryExhaustedException("the device LoRA pool of " + weights.bytes() + " bytes has no free range of "
                + bytes + " bytes (" + ranges.largestFree() + " is the largest): give the adapters more device memory");
        }
        return at;
    }

    /** A native-order view of {@code bytes} more of the staging area, growing it (after a synchronise) when full. */
    private ByteBuffer reserve(long bytes) {
        if (staging == null || stagingUsed + bytes > staging.bytes()) {
            if (staging != null) {
                ctx.synchronize(); // copies from the old staging may still be in flight
                staging.close();
                stagingUsed = 0;
            }
            staging = ctx.pinned(Math.max(bytes, 4L << 20));
        }
        ByteBuffer b = staging.buffer();
        b.position((int) stagingUsed);
        b.limit((int) (stagingUsed + bytes));
        ByteBuffer view = b.slice().order(ByteOrder.nativeOrder());
        stagingUsed += bytes;
        return view;
    }

    @Override
    public void close() {
        if (staging != null) {
            staging.close();
        }
        ctx.pool().free(weights);
        ctx.pool().free(rank);
        ctx.pool().free(scale);
        ctx.pool().free(offA);
        ctx.pool().free(offB);
    }
}
