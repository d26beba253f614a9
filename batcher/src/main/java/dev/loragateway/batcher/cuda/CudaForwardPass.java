package dev.loragateway.batcher.cuda;

import dev.loragateway.batcher.StepBatch;
import dev.loragateway.batcher.KvBlockPool;

import dev.loragateway.batcher.StepForward;
import dev.loragateway.batcher.StepRows;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;

import dev.loragateway.adapters.LoraModule;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.LoraBatch;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import dev.loragateway.kernels.Tensor;
import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaOps;
import dev.loragateway.kernels.cuda.DeviceBuffer;
import dev.loragateway.kernels.cuda.DeviceLoraPool;
import dev.loragateway.kernels.cuda.PinnedBuffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongUnaryOperator;
import jcuda.driver.CUdeviceptr;

/**
 * {@link ForwardPass} on a CUDA device: the same step over a {@link StepBatch}, as the launches of
 * the kernels README's "One decoder step, in launches". Weights stay on the device as bf16 (the
 * checkpoint's bytes; float32 or float16 checkpoints are rounded to bf16 once at load), the KV
 * cache is a device copy of the {@link KvBlockPool} layout whose blocks this pass's
 * {@link #kvPool()} hands out, and adapters come from a {@link DeviceLoraPool} that mirrors the
 * host {@link LoraSlotPool} slot by slot.
 *
 * <p>A step uploads its rows' tokens, positions, block tables and LoRA segments in one copy
 * ({@link StepUpload} holds that layout), runs
 * every layer on the stream, copies the rows that want logits back and synchronises once.
 * Attention runs {@code attention_decode} (flash-decoding partitions of 512 positions) when every
 * sequence has one row, else {@code attention_prefill} (chunked prefill and mixed steps).
 * Projections use {@code gemv_bf16} up to 8 rows and {@code gemm_bf16} above (which rounds its
 * input to bf16, so batched logits agree with the CPU to about 1e-2 relative, not bit for bit).
 *
 * <p>Device buffers are sized for the largest step seen and reused; nothing is allocated on the
 * device per step once that size is reached. Not thread-safe: one pass per engine thread.
 */
public final class CudaForwardPass implements StepForward {
    /** Positions per {@code attention_decode} partition. */
    static final int PARTITION = 512;
    private static final int F = 4;

    private final LlamaModel model;
    private final ModelConfig cfg;
    private final CudaOps ops;
    private final CudaContext ctx;
    private final LoraSlotPool slots;   // host pool, null: base model only
    private final DeviceLoraPool lora;  // its device copy
    private final KvBlockPool kvPool;
    private final DeviceBuffer[] kCache;
    private final DeviceBuffer[] vCache;
    private final List<DeviceBuffer> owned = new ArrayList<>();
    private final DeviceBuffer embed;
    private final DeviceBuffer lmHead;
    private final DeviceBuffer finalNorm;
    private final DeviceBuffer invFreq;
    private final DLayer[] layers;
    private final float scale;
    private final float eps;

    private int rowsCap;
    private DeviceBuffer x, xn, q, k, v, att, gate, up, loraV, logitsDev;
    private int partsCap;
    private DeviceBuffer partOut, partMl;
    private final StepUpload upload;
    private int logitFloatsCap;
    private PinnedBuffer hostLogits;
    private int loraRank;
    private int loraSplits;
    private int partition = PARTITION;

    private record DLayer(DeviceBuffer inNorm, DeviceBuffer q, DeviceBuffer qb, DeviceBuffer k, DeviceBuffer kb,
                          DeviceBuffer v, DeviceBuffer vb, DeviceBuffer o, DeviceBuffer ob, DeviceBuffer postNorm,
                          DeviceBuffer gate, DeviceBuffer up, DeviceBuffer down) {
    }

    /**
     * Uploads the model and allocates a device KV cache of {@code kvBlocks} blocks.
     *
     * @param slots          the host slot pool rows' adapters come from, or null for the base model only
     * @param loraDeviceBytes device bytes for the adapters' weights (float32), when {@code slots} is set
     */
    public CudaForwardPass(LlamaModel model, CudaOps ops, LoraSlotPool slots, long loraDeviceBytes, int kvBlocks,
                           int blockSize) {
        this(model, ops, slots, loraDeviceBytes, left -> (long) kvBlocks * KvBlockPool.bytesPerBlock(model.config(), blockSize),
            blockSize);
    }

    /**
     * As above with the KV cache sized once the weights and adapters are placed: {@code kvBytes} is
     * given the device bytes the pool may still take then and answers the cache's bytes (rounded
     * down to whole blocks; {@link CudaForwardBackend} asks for {@code Engine.Options.kvBytes}).
     */
    public CudaForwardPass(LlamaModel model, CudaOps ops, LoraSlotPool slots, long loraDeviceBytes, LongUnaryOperator kvBytes,
                           int blockSize) {
        this.model = model;
        this.cfg = model.config();
        this.ops = ops;
        this.ctx = ops.context();
        this.slots = slots;
        if (slots != null && (slots.layers() != cfg.numLayers() || slots.modules() != LoraModule.COUNT)) {
            throw new IllegalArgumentException("slot pool has " + slots.layers() + " layers, the model " + cfg.numLayers());
        }
        this.scale = (float) (1.0 / Math.sqrt(cfg.headDim()));
        this.eps = (float) cfg.rmsNormEps();
        try (Uploader up = new Uploader()) {
            this.embed = up.bf16(model.embedding());
            this.lmHead = model.lmHead() == model.embedding() ? embed : up.bf16(model.lmHead());
            this.finalNorm = up.floats(model.finalNorm());
            double[] freq = new double[cfg.headDim() / 2];
            for (int i = 0; i < freq.length; i++) {
                freq[i] = model.rope().frequency(i);
            }
            this.invFreq = up.doubles(freq);
            this.layers = new DLayer[cfg.numLayers()];
            for (int l = 0; l < layers.length; l++) {
                LlamaModel.Layer w = model.layer(l);
                layers[l] = new DLayer(up.floats(w.inputNorm()), up.bf16(w.q()), up.floats(w.qBias()), up.bf16(w.k()),
                    up.floats(w.kBias()), up.bf16(w.v()), up.floats(w.vBias()), up.bf16(w.o()), up.floats(w.oBias()),
                    up.floats(w.postNorm()), up.bf16(w.gate()), up.bf16(w.up()), up.bf16(w.down()));
            }
        }
        this.lora = slots == null ? null : new DeviceLoraPool(ctx, slots, loraDeviceBytes);
        long perBlock = KvBlockPool.bytesPerBlock(cfg, blockSize);
        long kvCacheBytes = kvBytes.applyAsLong(ctx.pool().limitBytes() - ctx.pool().usedBytes());
        int kvBlocks = (int) Math.min(Integer.MAX_VALUE, kvCacheBytes / perBlock);
        if (kvBlocks < 1) {
            throw new IllegalArgumentException("a device KV cache of " + kvCacheBytes + " bytes holds no block of " + perBlock + " bytes");
        }
        long layerBytes = (long) kvBlocks * blockSize * cfg.kvDim() * F;
        this.kCache = new DeviceBuffer[cfg.numLayers()];
        this.vCache = new DeviceBuffer[cfg.numLayers()];
        for (int l = 0; l < kCache.length; l++) {
            kCache[l] = alloc(layerBytes);
            vCache[l] = alloc(layerBytes);
        }
        this.kvPool = KvBlockPool.external(cfg, kvBlocks, blockSize, this::copyBlock);
        this.upload = new StepUpload(ctx);
        ctx.synchronize();
        ensureRows(1);
    }

    @Override
    public LlamaModel model() {
        return model;
    }

    @Override
    public LoraSlotPool pool() {
        return slots;
    }

    /** The block bookkeeping of this pass's device KV cache: caches of the rows it runs must come from it. */
    public KvBlockPool kvPool() {
        return kvPool;
    }

    /** Sets the positions per decode-attention partition (tests use small ones to get several). */
    void partition(int positions) {
        if (positions < 32 && positions % 8 != 0 || positions < 1) {
            throw new IllegalArgumentException("partition of " + positions + " positions");
        }
        this.partition = positions;
    }

    /** The device copy of the slot pool, or null. */
    public DeviceLoraPool lora() {
        return lora;
    }

    private DeviceBuffer alloc(long bytes) {
        DeviceBuffer b = ctx.pool().allocate(bytes);
        owned.add(b);
        return b;
    }

    private void free(DeviceBuffer b) {
        if (b != null && owned.remove(b)) {
            ctx.pool().free(b);
        }
    }

    /** Copy-on-write of a KV block, queued on the stream ahead of the step that writes it. */
    private void copyBlock(int src, int dst, int positions) {
        long row = (long) kvPool.blockSize() * cfg.kvDim() * F;
        long n = (long) positions * cfg.kvDim() * F;
        if (n == 0) {
            return;
        }
        for (int l = 0; l < kCache.length; l++) {
            ctx.copyDeviceToDevice(kCache[l], src * row, kCache[l], dst * row, n);
            ctx.copyDeviceToDevice(vCache[l], src * row, vCache[l], dst * row, n);
        }
    }

    private void ensureRows(int rows) {
        if (rows <= rowsCap) {
            return;
        }
        int cap = Math.max(rows, rowsCap * 2);
        for (DeviceBuffer b : new DeviceBuffer[] {x, xn, q, k, v, att, gate, up}) {
            free(b);
        }
        int h = cfg.hiddenSize();
        x = alloc((long) cap * h * F);
        xn = alloc((long) cap * h * F);
        q = alloc((long) cap * cfg.qDim() * F);
        k = alloc((long) cap * cfg.kvDim() * F);
        v = alloc((long) cap * cfg.kvDim() * F);
        att = alloc((long) cap * cfg.qDim() * F);
        gate = alloc((long) cap * cfg.intermediateSize() * F);
        up = alloc((long) cap * cfg.intermediateSize() * F);
        rowsCap = cap;
        loraRank = 0; // re-sized on the next LoRA step
    }

    private void ensureLora(int rank, int splits) {
        if (loraV != null && rank <= loraRank && splits <= loraSplits) {
            return;
        }
        free(loraV);
        loraRank = Math.max(rank, loraRank);
        loraSplits = Math.max(splits, loraSplits);
        loraV = alloc((long) loraSplits * rowsCap * loraRank * F);
    }

    private void ensureParts(int rows, int parts) {
        long need = (long) rows * cfg.numHeads() * parts;
        if (partOut != null && need <= partsCap) {
            return;
        }
        free(partOut);
        free(partMl);
        partsCap = (int) Math.max(need, 2L * partsCap);
        partOut = alloc((long) partsCap * cfg.headDim() * F);
        partMl = alloc((long) partsCap * 2 * F);
    }

    private void ensureLogits(int floats) {
        if (floats <= logitFloatsCap) {
            return;
        }
        free(logitsDev);
        if (hostLogits != null) {
            hostLogits.close();
        }
        logitFloatsCap = Math.max(floats, logitFloatsCap * 2);
        logitsDev = alloc((long) logitFloatsCap * F);
        hostLogits = ctx.pinned((long) logitFloatsCap * F);
    }

    /**
     * Runs the step. The stream is synchronised on every exit: a step that throws after queuing
     * copies (no device memory for a slot, a failed launch) must not return while those copies may
     * still read pinned staging that the next step rewrites; and the slots it uploaded are uploaded
     * again on their next use ({@link DeviceLoraPool#forgetStep()}).
     */
    @Override
    public void step(StepBatch batch, float[] logits) {
        try {
            queueStep(batch, logits);
        } catch (RuntimeException | Error e) {
            try {
                ctx.synchronize();
            } catch (RuntimeException s) {
                e.addSuppressed(s);
            }
            if (lora != null) {
                lora.forgetStep();
            }
            throw e;
        }
    }

    private void queueStep(StepBatch batch, float[] logits) {
        int rows = batch.size();
        if (rows == 0) {
            return;
        }
        int h = cfg.hiddenSize();
        int vocab = cfg.vocabSize();
        int logitRows = StepRows.checkLogits(batch, logits, vocab);
        ensureRows(rows);
        for (int r = 0; r < rows; r++) {
            if (batch.cache(r).pool() != kvPool) {
                throw new IllegalArgumentException("row " + r + "'s KV cache is not from this CUDA pass's pool");
            }
            int tok = batch.token(r);
            if (tok < 0 || tok >= vocab) {
                throw new IllegalArgumentException("row " + r + ": token " + tok + " is outside the vocabulary of " + vocab);
            }
        }
        boolean anyAdapter = StepRows.checkSlots(batch, slots);
        for (int r = 0; r < rows; r++) {
            batch.cache(r).ensureCapacity(batch.position(r) + 1); // may queue copy-on-write block copies
        }
        LoraBatch lb = anyAdapter ? LoraBatch.of(batch.slots(), rows) : null;
        StepUpload in = upload;
        in.stage(batch, lb, slots, cfg.slidingWindow());
        in.upload();
        Lora l8 = null;
        if (lb != null && in.maxRank() > 0) {
            lora.beginStep();
            for (int g = 0; g < in.segments(); g++) {
                if (lb.segSlot(g) >= 0) {
                    lora.sync(lb.segSlot(g));
                }
            }
            int splits = CudaOps.bgmvSplits(Math.max(cfg.qDim(), Math.max(cfg.hiddenSize(), cfg.intermediateSize())));
            ensureLora(in.maxRank(), splits);
            l8 = new Lora(lb, in.segments(), in.maxSegmentRows(), rows, in.segStart(), in.segSlot(), in.rowSlot(), in.maxRank());
        }

        CUdeviceptr tokens = in.tokens();
        CUdeviceptr positions = in.positions();
        CUdeviceptr seqOfRow = in.rowSeq();
        CUdeviceptr tables = in.tables();
        CUdeviceptr lengths = in.lengths();
        boolean decode = in.decode();
        int maxBlocks = in.maxBlocks();
        int window = cfg.slidingWindow();
        int qDim = cfg.qDim();
        int kvDim = cfg.kvDim();
        int inter = cfg.intermediateSize();
        CudaOps.Heads heads = new CudaOps.Heads(cfg.numHeads(), cfg.numKvHeads(), cfg.headDim());
        ops.embeddingBf16(x.pointer(), embed.pointer(), tokens, rows, h, vocab, h);
        int parts = CudaOps.decodeParts(in.maxAttended(), partition);
        if (decode && parts > 1) {
            ensureParts(rows, parts);
        }
        boolean scratch = decode && parts > 1;
        CudaOps.DecodeParts split = new CudaOps.DecodeParts(parts, partition, scratch ? partOut.pointer() : null,
            scratch ? partMl.pointer() : null);
        for (int li = 0; li < layers.length; li++) {
            DLayer w = layers[li];
            ops.rmsNorm(xn.pointer(), x.pointer(), w.inNorm().pointer(), null, rows, h, h, h, eps);
            ops.project(q.pointer(), xn.pointer(), w.q().pointer(), ptr(w.qb()), rows, qDim, h, h, qDim, false);
            ops.project(k.pointer(), xn.pointer(), w.k().pointer(), ptr(w.kb()), rows, kvDim, h, h, kvDim, false);
            ops.project(v.pointer(), xn.pointer(), w.v().pointer(), ptr(w.vb()), rows, kvDim, h, h, kvDim, false);
            lora(l8, li, LoraModule.Q_PROJ, xn, h, h, q, qDim, qDim);
            lora(l8, li, LoraModule.K_PROJ, xn, h, h, k, kvDim, kvDim);
            lora(l8, li, LoraModule.V_PROJ, xn, h, h, v, kvDim, kvDim);
            ops.ropeNeox(q.pointer(), qDim, k.pointer(), kvDim, positions, invFreq.pointer(), rows, heads);
            CudaOps.PagedKv kv = new CudaOps.PagedKv(kCache[li].pointer(), vCache[li].pointer(), tables, kvPool.blockSize(),
                maxBlocks);
            ops.kvWrite(kv, k.pointer(), kvDim, v.pointer(), kvDim, seqOfRow, positions, rows, kvDim);
            if (decode) {
                ops.attentionDecode(att.pointer(), qDim, q.pointer(), qDim, kv, lengths, rows, heads, window, scale, split);
            } else {
                ops.attentionPrefill(att.pointer(), qDim, q.pointer(), qDim, kv, seqOfRow, positions, rows, heads, window, scale);
            }
            ops.project(x.pointer(), att.pointer(), w.o().pointer(), ptr(w.ob()), rows, h, qDim, qDim, h, true);
            lora(l8, li, LoraModule.O_PROJ, att, qDim, qDim, x, h, h);
            ops.rmsNorm(xn.pointer(), x.pointer(), w.postNorm().pointer(), null, rows, h, h, h, eps);
            ops.project(gate.pointer(), xn.pointer(), w.gate().pointer(), null, rows, inter, h, h, inter, false);
            ops.project(up.pointer(), xn.pointer(), w.up().pointer(), null, rows, inter, h, h, inter, false);
            lora(l8, li, LoraModule.GATE_PROJ, xn, h, h, gate, inter, inter);
            lora(l8, li, LoraModule.UP_PROJ, xn, h, h, up, inter, inter);
            ops.siluMul(gate.pointer(), gate.pointer(), up.pointer(), rows, inter, inter, inter, inter);
            ops.project(x.pointer(), gate.pointer(), w.down().pointer(), null, rows, h, inter, inter, h, true);
            lora(l8, li, LoraModule.DOWN_PROJ, gate, inter, inter, x, h, h);
        }
        StepRows.advanceCaches(batch);
        if (logitRows > 0) {
            ensureLogits(logitRows * vocab);
            // xn is free now and holds rows >= logitRows
            ops.rmsNorm(xn.pointer(), x.pointer(), finalNorm.pointer(), in.logitRows(), logitRows, h, h, h, eps);
            ops.project(logitsDev.pointer(), xn.pointer(), lmHead.pointer(), null, logitRows, vocab, h, h, vocab, false);
            ctx.copyToHost(logitsDev, 0, hostLogits, 0, (long) logitRows * vocab * F);
        }
        ctx.synchronize();
        if (logitRows > 0) {
            hostLogits.floats().get(logits, 0, logitRows * vocab);
        }
    }

    /** The step's LoRA segments and where their arrays sit on the device. */
    private record Lora(LoraBatch batch, int segments, int maxSegmentRows, int rows, CUdeviceptr segStart,
                        CUdeviceptr segSlot, CUdeviceptr rowSlot, int vStride) {
    }

    /** {@code y += scaling · (x·Aᵀ)·Bᵀ} for rows with an adapter targeting {@code m}: SGMV, or BGMV when every row is its own segment. */
    private void lora(Lora s, int layer, LoraModule m, DeviceBuffer xb, int in, int xStride, DeviceBuffer yb, int out,
                      int yStride) {
        if (s == null) {
            return;
        }
        int lm = layer * LoraModule.COUNT + m.ordinal();
        int splits = CudaOps.bgmvSplits(in);
        CudaOps.PoolType type = CudaOps.PoolType.F32;
        CUdeviceptr pool = lora.weights().pointer();
        CudaOps.LoraTable t = lora.table();
        if (s.batch().allSingleRows()) {
            ops.bgmvShrink(type, loraV.pointer(), xb.pointer(), pool, t, s.rowSlot(), lm, s.rows(), in, xStride, s.vStride(), splits);
            ops.bgmvExpand(type, yb.pointer(), loraV.pointer(), pool, t, s.rowSlot(), lm, s.rows(), out, s.vStride(), yStride, splits);
        } else {
            ops.sgmvShrink(type, loraV.pointer(), xb.pointer(), pool, t, s.segStart(), s.segSlot(), s.segments(),
                s.maxSegmentRows(), lm, s.rows(), in, xStride, s.vStride(), splits);
            ops.sgmvExpand(type, yb.pointer(), loraV.pointer(), pool, t, s.segStart(), s.segSlot(), s.segments(),
                s.maxSegmentRows(), lm, s.rows(), out, s.vStride(), yStride, splits);
        }
    }

    private static CUdeviceptr ptr(DeviceBuffer b) {
        return b == null ? null : b.pointer();
    }

    @Override
    public void close() {
        ctx.synchronize();
        if (lora != null) {
            lora.close();
        }
        for (DeviceBuffer b : new ArrayList<>(owned)) {
            free(b);
        }
        upload.close();
        if (hostLogits != null) {
            hostLogits.close();
        }
    }

    /** Uploads host data through one pinned staging buffer (synchronising per chunk). */
    private final class Uploader implements AutoCloseable {
        private static final int CHUNK = 32 << 20;
        private PinnedBuffer stage;

        DeviceBuffer bf16(Tensor t) {
            long n = t.size();
            DeviceBuffer d = alloc(2 * n);
            if (t.dtype() == DType.BF16) {
                ByteBuffer src = t.buffer().duplicate();
                src.position(0);
                copy(src, d, 2 * n);
            } else {
                ByteBuffer conv = ByteBuffer.allocate((int) Math.min(CHUNK, 2 * n)).order(ByteOrder.LITTLE_ENDIAN);
                long done = 0;
                while (done < n) {
                    int m = (int) Math.min(conv.capacity() / 2, n - done);
                    conv.clear();
                    for (int i = 0; i < m; i++) {
                        conv.putShort(DType.floatToBf16(t.get(done + i)));
                    }
                    conv.flip();
                    copyAt(conv, d, 2 * done);
                    done += m;
                }
            }
            return d;
        }

        DeviceBuffer floats(float[] a) {
            if (a == null) {
                return null;
            }
            ByteBuffer b = ByteBuffer.allocate(4 * a.length).order(ByteOrder.nativeOrder());
            b.asFloatBuffer().put(a);
            DeviceBuffer d = alloc(4L * a.length);
            copy(b, d, 4L * a.length);
            return d;
        }

        DeviceBuffer doubles(double[] a) {
            ByteBuffer b = ByteBuffer.allocate(8 * a.length).order(ByteOrder.nativeOrder());
            b.asDoubleBuffer().put(a);
            DeviceBuffer d = alloc(8L * a.length);
            copy(b, d, 8L * a.length);
            return d;
        }

        private void copy(ByteBuffer src, DeviceBuffer dst, long bytes) {
            long done = 0;
            while (done < bytes) {
                int m = (int) Math.min(CHUNK, bytes - done);
                ByteBuffer part = src.duplicate();
                part.position((int) done);
                part.limit((int) (done + m));
                copyAt(part, dst, done);
                done += m;
            }
        }

        /** Copies the remaining bytes of {@code src} (at most one chunk) to {@code dst} at {@code offset}. */
        private void copyAt(ByteBuffer src, DeviceBuffer dst, long offset) {
            int m = src.remaining();
            if (stage == null) {
                stage = ctx.pinned(CHUNK);
            }
            ByteBuffer s = stage.buffer();
            s.put(src);
            ctx.copyToDevice(stage, 0, dst, offset, m);
            ctx.synchronize();
        }

        @Override
        public void close() {
            if (stage != null) {
                stage.close();
            }
        }
    }
}
