package dev.loragateway.batcher;

import dev.loragateway.adapters.LoraModule;
import dev.loragateway.kernels.cpu.Attention;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cpu.LoraBatch;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import dev.loragateway.kernels.cpu.Ops;
import dev.loragateway.kernels.cpu.Rope;

/**
 * One forward step of a {@link LlamaModel} over the rows of a {@link StepBatch}, on the CPU:
 *
 * <pre>
 * x = embed[token]                                   for every row
 * for each layer:
 *   xn = rmsnorm(x)·w_in;  q,k,v = xn·Wqᵀ(+b), xn·Wkᵀ(+b), xn·Wvᵀ(+b);  rope(q, k, position)
 *   append k, v to the row's cache;  a = attention(q, cache[0..position])
 *   x += a·Woᵀ(+b)
 *   xn = rmsnorm(x)·w_post;  x += (silu(xn·Wgᵀ) ⊙ xn·Wuᵀ)·Wdᵀ
 * logits = rmsnorm(x)·w_final·Wheadᵀ                  for rows that want logits
 * </pre>
 *
 * Every projection P above is followed by its LoRA update for rows whose slot targets it:
 * {@code P(x)[i] += scaling · (x[i]·Aᵀ)·Bᵀ} with the row's adapter from the {@link LoraSlotPool}
 * (SGMV over the step's segments). Rows without an adapter see the base model alone.
 *
 * Buffers are sized for the largest batch seen and reused: a decode step allocates nothing.
 * Not thread-safe: one pass per engine thread.
 */
public final class ForwardPass implements StepForward {
    private final LlamaModel model;
    private final ModelConfig cfg;
    private final CpuBackend cpu;
    private final LoraSlotPool pool; // null: the base model only
    private LoraBatch lora;          // this step's slots and segments
    private int rowsCap;
    private float[] x;      // (rows, hidden)      residual stream
    private float[] xn;     // (rows, hidden)      normed input of a block
    private float[] q;      // (rows, qDim)
    private float[] k;      // (rows, kvDim)
    private float[] v;      // (rows, kvDim)
    private float[] att;    // (rows, qDim)        attention output
    private float[] tmp;    // (rows, hidden)      projection output before the residual add
    private float[] gate;   // (rows, intermediate)
    private float[] up;     // (rows, intermediate)
    private final float[] cos;
    private final float[] sin;
    private float[] scores = new float[0]; // (rows, maxLen) attention scratch, one slice per row

    public ForwardPass(LlamaModel model, CpuBackend cpu) {
        this(model, cpu, null);
    }

    /** A pass whose rows may use adapters from {@code pool} (null: base model only). */
    public ForwardPass(LlamaModel model, CpuBackend cpu, LoraSlotPool pool) {
        this.model = model;
        this.cfg = model.config();
        this.cpu = cpu;
        this.pool = pool;
        if (pool != null && (pool.layers() != cfg.numLayers() || pool.modules() != LoraModule.COUNT)) {
            throw new IllegalArgumentException("slot pool has " + pool.layers() + " layers, the model " + cfg.numLayers());
        }
        this.cos = new float[cfg.headDim() / 2];
        this.sin = new float[cfg.headDim() / 2];
        ensureRows(1);
    }

    @Override
    public LlamaModel model() {
        return model;
    }

    /** The slot pool rows' adapters come from, or null. */
    @Override
    public LoraSlotPool pool() {
        return pool;
    }

    @Override
    public void close() {
        // nothing: the buffers are heap arrays and the backend belongs to the caller
    }

    private void ensureRows(int rows) {
        if (rows <= rowsCap) {
            return;
        }
        rowsCap = Math.max(rows, rowsCap * 2);
        int h = cfg.hiddenSize();
        x = new float[rowsCap * h];
        xn = new float[rowsCap * h];
        q = new float[rowsCap * cfg.qDim()];
        k = new float[rowsCap * cfg.kvDim()];
        v = new float[rowsCap * cfg.kvDim()];
        att = new float[rowsCap * cfg.qDim()];
        tmp = new float[rowsCap * h];
        gate = new float[rowsCap * cfg.intermediateSize()];
        up = new float[rowsCap * cfg.intermediateSize()];
    }

    /**
     * Runs the step and writes {@code batch.logitRows() × vocab} logits into {@code logits} (row
     * order). Every row's cache then holds its token's keys and values.
     */
    @Override
    public void step(StepBatch batch, float[] logits) {
        int rows = batch.size();
        if (rows == 0) {
            return;
        }
        int h = cfg.hiddenSize();
        int vocab = cfg.vocabSize();
        StepRows.checkLogits(batch, logits, vocab);
        ensureRows(rows);
        lora = StepRows.checkSlots(batch, pool) ? LoraBatch.of(batch.slots(), rows) : null;
        int maxLen = 0;
        for (int r = 0; r < rows; r++) {
            Ops.embedding(model.embedding(), batch.token(r), x, r * h);
            KvCache c = batch.cache(r);
            c.ensureCapacity(batch.position(r) + 1);
            maxLen = Math.max(maxLen, batch.position(r) + 1);
        }
        if (scores.length < rows * maxLen) {
            scores = new float[rows * maxLen * 2];
        }
        float eps = (float) cfg.rmsNormEps();
        for (int l = 0; l < cfg.numLayers(); l++) {
            LlamaModel.Layer layer = model.layer(l);
            attentionBlock(batch, l, layer, rows, eps, maxLen);
            mlpBlock(l, layer, rows, eps);
        }
        StepRows.advanceCaches(batch);
        int out = 0;
        for (int r = 0; r < rows; r++) {
            if (batch.wantsLogits(r)) {
                Ops.rmsNorm(x, r * h, model.finalNorm(), eps, xn, out * h, h);
                out++;
            }
        }
        if (out > 0) {
            cpu.matmul(xn, out, model.lmHead(), logits);
        }
    }

    private void attentionBlock(StepBatch batch, int l, LlamaModel.Layer layer, int rows, float eps, int maxLen) {
        int h = cfg.hiddenSize();
        int qDim = cfg.qDim();
        int kvDim = cfg.kvDim();
        for (int r = 0; r < rows; r++) {
            Ops.rmsNorm(x, r * h, layer.inputNorm(), eps, xn, r * h, h);
        }
        cpu.linear(xn, rows, layer.q(), layer.qBias(), q);
        cpu.linear(xn, rows, layer.k(), layer.kBias(), k);
        cpu.linear(xn, rows, layer.v(), layer.vBias(), v);
        applyLora(l, LoraModule.Q_PROJ, xn, h, q, qDim);
        applyLora(l, LoraModule.K_PROJ, xn, h, k, kvDim);
        applyLora(l, LoraModule.V_PROJ, xn, h, v, kvDim);
        Rope rope = model.rope();
        for (int r = 0; r < rows; r++) {
            int pos = batch.position(r);
            rope.apply(q, r * qDim, cfg.numHeads(), pos, cos, sin);
            rope.apply(k, r * kvDim, cfg.numKvHeads(), pos, cos, sin);
            batch.cache(r).store(l, pos, k, r * kvDim, v, r * kvDim);
        }
        int window = cfg.slidingWindow();
        cpu.parallel(rows, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                KvCache c = batch.cache(r);
                int len = batch.position(r) + 1;
                int from = window > 0 ? Math.max(0, len - window) : 0;
                Attention.attend(q, r * qDim, cfg.numHeads(), cfg.numKvHeads(), cfg.headDim(),
                    c.keys(l), c.values(l), c.table(), c.blockSize(), from, len, att, r * qDim, scores, r * maxLen);
            }
        });
        cpu.linear(att, rows, layer.o(), layer.oBias(), tmp);
        applyLora(l, LoraModule.O_PROJ, att, qDim, tmp, h);
        for (int r = 0; r < rows; r++) {
            Ops.add(x, r * h, tmp, r * h, h);
        }
    }

    private void applyLora(int l, LoraModule m, float[] in, int inStride, float[] out, int outStride) {
        if (lora != null) {
            cpu.lora(pool, lora, l, m.ordinal(), in, inStride, out, outStride);
        }
    }

    private void mlpBlock(int l, LlamaModel.Layer layer, int rows, float eps) {
        int h = cfg.hiddenSize();
        int inter = cfg.intermediateSize();
        for (int r = 0; r < rows; r++) {
            Ops.rmsNorm(x, r * h, layer.postNorm(), eps, xn, r * h, h);
        }
        cpu.matmul(xn, rows, layer.gate(), gate);
        cpu.matmul(xn, rows, layer.up(), up);
        applyLora(l, LoraModule.GATE_PROJ, xn, h, gate, inter);
        applyLora(l, LoraModule.UP_PROJ, xn, h, up, inter);
        Ops.siluMul(gate, up, rows * inter);
        cpu.matmul(gate, rows, layer.down(), tmp);
        applyLora(l, LoraModule.DOWN_PROJ, gate, inter, tmp, h);
        for (int r = 0; r < rows; r++) {
            Ops.add(x, r * h, tmp, r * h, h);
        }
    }
}
