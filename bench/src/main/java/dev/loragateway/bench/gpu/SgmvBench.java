package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaKernels;
import dev.loragateway.kernels.cuda.CudaOps;
import dev.loragateway.kernels.cuda.CudaOps.LoraTable;
import dev.loragateway.kernels.cuda.CudaOps.PoolType;
import dev.loragateway.kernels.cuda.DeviceBuffer;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import jcuda.driver.CUdevice_attribute;

/**
 * SGMV latency against the number of distinct adapters, beside BGMV and a gather-then-batched-
 * matmul baseline (Punica's figure of the same name). One LoRA projection, {@code hidden → r →
 * hidden}, bf16 slot pool, {@code batch} rows split into D nearly equal segments, D adapters:
 * <ul>
 *   <li><b>sgmv</b>: {@code lora_sgmv_shrink_bf16} + {@code lora_sgmv_expand_bf16} over the D segments;
 *   <li><b>bgmv</b>: the BGMV pair on the same pool, {@code row_slot[i]} = row i's adapter;
 *   <li><b>gather+bmm</b>: one {@code cuMemcpyDtoDAsync} per row copies its adapter's A and Bᵀ
 *       (contiguous in the pool) into a gathered buffer where row i owns copy i, then the BGMV pair
 *       with {@code row_slot[i] = i} on it: a batched matmul over per-row weights. The gather is
 *       part of the timed work, as in Punica's baseline.
 * </ul>
 * Before timing, each (D, rank) runs every path once from y = 0 and compares the three outputs
 * (the "agree" column: largest difference over the largest |y|), so a fast wrong kernel shows.
 */
final class SgmvBench {
    private static final float SCALE = 0.5f;

    /**
     * The pure arithmetic of one case. Pool slot s holds A {@code (rank, in)} at element
     * {@code s · slotElements()}, then Bᵀ {@code (rank, out)}; the gathered buffer has the same
     * layout with one slot per row. Rows split into {@code adapters} segments, the first
     * {@code rows mod adapters} one row longer: rows 10, adapters 4 → seg_start [0, 3, 6, 8, 10].
     */
    record Layout(int rows, int adapters, int rank, int in, int out) {
        Layout {
            if (adapters < 1 || adapters > rows) {
                throw new IllegalArgumentException(adapters + " adapters for " + rows + " rows: each needs a row");
            }
        }

        long slotElements() {
            return (long) rank * (in + out);
        }

        int[] segStart() {
            int[] s = new int[adapters + 1];
            for (int g = 0; g < adapters; g++) {
                s[g + 1] = s[g] + rows / adapters + (g < rows % adapters ? 1 : 0);
            }
            return s;
        }

        int[] segSlot() {
            int[] s = new int[adapters];
            for (int g = 0; g < adapters; g++) {
                s[g] = g;
            }
            return s;
        }

        int maxSegmentRows() {
            return CudaKernels.ceilDiv(rows, adapters);
        }

        /** Row i's adapter (its segment). */
        int[] rowSlot() {
            int[] start = segStart();
            int[] slot = new int[rows];
            for (int g = 0; g < adapters; g++) {
                for (int i = start[g]; i < start[g + 1]; i++) {
                    slot[i] = g;
                }
            }
            return slot;
        }

        long offA(int slot) {
            return slot * slotElements();
        }

        long offB(int slot) {
            return offA(slot) + (long) rank * in;
        }

        /** Byte offsets in the pool that each row's gather copy reads from: its adapter's slot. */
        long[] gatherSources() {
            int[] slot = rowSlot();
            long[] src = new long[rows];
            for (int i = 0; i < rows; i++) {
                src[i] = 2 * offA(slot[i]);
            }
            return src;
        }

        /** Byte offset in the gathered buffer that row i's copy writes to. */
        long gatherTarget(int row) {
            return 2 * offA(row);
        }

        /** Bytes of one gather copy: one slot's A and Bᵀ. */
        long gatherBytes() {
            return 2 * slotElements();
        }
    }

    /**
     * The README's SGMV suggestion: the fewest input splits with
     * {@code segments · ceil(maxSeg / 16) · splits ≥ 2 × SMs}, at most 16 and at most one per 32 inputs.
     */
    static int sgmvSplits(int segments, int maxSegmentRows, int in, int multiprocessors) {
        int blocks = segments * CudaKernels.ceilDiv(maxSegmentRows, CudaKernels.LORA_SGMV_ROWS);
        int cap = Math.max(1, Math.min(16, CudaKernels.ceilDiv(in, 32)));
        int splits = CudaKernels.ceilDiv(2 * multiprocessors, blocks);
        return Math.max(1, Math.min(cap, splits));
    }

    /** Largest |a − b| over the largest |b| (0 when b is all zeros and a equals it). */
    static double relativeDifference(float[] a, float[] b) {
        double diff = 0;
        double scale = 0;
        for (int i = 0; i < a.length; i++) {
            diff = Math.max(diff, Math.abs((double) a[i] - b[i]));
            scale = Math.max(scale, Math.abs(b[i]));
        }
        return scale == 0 ? diff : diff / scale;
    }

    static Table table() {
        return new Table("D", "rank", "sgmv µs", "bgmv µs", "gather+bmm µs", "gather+bmm / sgmv", "bgmv / sgmv", "agree");
    }

    private final CudaOps ops;
    private final CudaContext ctx;
    private final GpuBenchConfig config;

    SgmvBench(CudaOps ops, GpuBenchConfig config) {
        this.ops = ops;
        this.ctx = ops.context();
        this.config = config;
    }

    void run(PrintWriter out) {
        int rows = config.batch();
        int hidden = config.hidden();
        int sms = ctx.deviceAttribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        out.printf("## SGMV latency: %d rows, %d -> rank -> %d, bf16 pool, %s launch, %d warm-up + %d timed iterations%n%n",
            rows, hidden, hidden, config.launch().name().toLowerCase(Locale.ROOT), config.warmup(),
            config.iterations());
        out.flush();
        Table t = table();
        int maxD = Collections.max(config.adapterCounts());
        try (Staging staging = new Staging(ctx, Math.max(8L << 20, 4L * rows * hidden));
             GpuTimer timer = new GpuTimer(ctx, config.launch())) {
            for (int rank : config.ranks()) {
                for (int d : config.adapterCounts()) {
                    Layout l = new Layout(rows, d, rank, hidden, hidden);
                    runCase(t, l, maxD, sms, staging, timer);
                }
            }
        }
        out.println(t.render());
        out.flush();
    }

    private void runCase(Table t, Layout l, int maxD, int sms, Staging staging, GpuTimer timer) {
        List<DeviceBuffer> live = new ArrayList<>();
        try {
            SplittableRandom rnd = new SplittableRandom(l.rank() * 1000L + l.adapters());
            int rows = l.rows();
            int rank = l.rank();
            DeviceBuffer pool = keep(live, ctx.pool().allocate(2 * maxD * l.slotElements()));
            staging.randomBf16(pool, 0, pool.bytes(), rnd, 0.05f);
            LoraTable poolTable = table(staging, live, l, maxD);
            DeviceBuffer gathered = keep(live, ctx.pool().allocate(2 * rows * l.slotElements()));
            LoraTable gatheredTable = table(staging, live, l, rows);
            DeviceBuffer x = keep(live, ctx.pool().allocate(4L * rows * l.in()));
            staging.randomF32(x, 0, x.bytes(), rnd, 1f);
            DeviceBuffer y = keep(live, ctx.pool().allocate(4L * rows * l.out()));
            int sgmvSplits = sgmvSplits(l.adapters(), l.maxSegmentRows(), l.in(), sms);
            int bgmvSplits = CudaOps.bgmvSplits(l.in());
            DeviceBuffer v = keep(live, ctx.pool().allocate(4L * Math.max(sgmvSplits, bgmvSplits) * rows * rank));
            DeviceBuffer segStart = keep(live, staging.ints(l.segStart()));
            DeviceBuffer segSlot = keep(live, staging.ints(l.segSlot()));
            DeviceBuffer rowSlot = keep(live, staging.ints(l.rowSlot()));
            int[] identity = new int[rows];
            for (int i = 0; i < rows; i++) {
                identity[i] = i;
            }
            DeviceBuffer ownSlot = keep(live, staging.ints(identity));

            Runnable sgmv = () -> {
                ops.sgmvShrink(PoolType.BF16, v.pointer(), x.pointer(), pool.pointer(), poolTable, segStart.pointer(),
                    segSlot.pointer(), l.adapters(), l.maxSegmentRows(), 0, rows, l.in(), l.in(), rank, sgmvSplits);
                ops.sgmvExpand(PoolType.BF16, y.pointer(), v.pointer(), pool.pointer(), poolTable, segStart.pointer(),
                    segSlot.pointer(), l.adapters(), l.maxSegmentRows(), 0, rows, l.out(), rank, l.out(), sgmvSplits);
            };
            Runnable bgmv = () -> bgmvPair(pool, poolTable, rowSlot, x, y, v, l, bgmvSplits);
            long[] from = l.gatherSources();
            Runnable gatherBmm = () -> {
                for (int i = 0; i < rows; i++) {
                    ctx.copyDeviceToDevice(pool, from[i], gathered, l.gatherTarget(i), l.gatherBytes());
                }
                bgmvPair(gathered, gatheredTable, ownSlot, x, y, v, l, bgmvSplits);
            };

            float[] ySgmv = once(sgmv, y, staging);
            double agree = Math.max(relativeDifference(once(bgmv, y, staging), ySgmv),
                relativeDifference(once(gatherBmm, y, staging), ySgmv));

            double us1 = timer.micros(sgmv, config.warmup(), config.iterations());
            double us2 = timer.micros(bgmv, config.warmup(), config.iterations());
            double us3 = timer.micros(gatherBmm, config.warmup(), config.iterations());
            t.row(Integer.toString(l.adapters()), Integer.toString(rank), Table.num(us1, 1), Table.num(us2, 1),
                Table.num(us3, 1), Table.num(us3 / us1, 2), Table.num(us2 / us1, 2), String.format(Locale.ROOT, "%.0e", agree));
        } finally {
            ctx.synchronize();
            live.forEach(ctx.pool()::free);
        }
    }

    private void bgmvPair(DeviceBuffer pool, LoraTable table, DeviceBuffer rowSlot, DeviceBuffer x, DeviceBuffer y,
                          DeviceBuffer v, Layout l, int splits) {
        ops.bgmvShrink(PoolType.BF16, v.pointer(), x.pointer(), pool.pointer(), table, rowSlot.pointer(), 0, l.rows(),
            l.in(), l.in(), l.rank(), splits);
        ops.bgmvExpand(PoolType.BF16, y.pointer(), v.pointer(), pool.pointer(), table, rowSlot.pointer(), 0, l.rows(),
            l.out(), l.rank(), l.out(), splits);
    }

    /** y after one run of {@code path} from y = 0. */
    private float[] once(Runnable path, DeviceBuffer y, Staging staging) {
        ctx.zero(y, 0, y.bytes());
        path.run();
        return staging.readFloats(y, y.bytes());
    }

    /** The device table of {@code slots} entries (lm_count 1): rank, scale, offsets of {@link Layout}. */
    private static LoraTable table(Staging staging, List<DeviceBuffer> live, Layout l, int slots) {
        int[] rank = new int[slots];
        float[] scale = new float[slots];
        long[] offA = new long[slots];
        long[] offB = new long[slots];
        for (int s = 0; s < slots; s++) {
            rank[s] = l.rank();
            scale[s] = SCALE;
            offA[s] = l.offA(s);
            offB[s] = l.offB(s);
        }
        return new LoraTable(keep(live, staging.ints(rank)).pointer(), keep(live, staging.floats(scale)).pointer(),
            keep(live, staging.longs(offA)).pointer(), keep(live, staging.longs(offB)).pointer(), 1);
    }

    private static DeviceBuffer keep(List<DeviceBuffer> live, DeviceBuffer b) {
        live.add(b);
        return b;
    }
}
