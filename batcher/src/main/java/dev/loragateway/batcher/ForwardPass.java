package dev.loragateway.batcher;

import dev.loragateway.adapters.LoraModule;
import dev.loragateway.kernels.cpu.Attention;
import dev.loragateway.kernels.Tensor;
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
    private float[] cos;   // (rows, headDim/2): each row's rotary angles, the same in every layer
    private float[] sin;
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
        this.cos = new float[0];
        this.sin = new float[0];
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

    private int[] lenOf = new int[0];     // per row: one past its position (native attention)
    private int[] fromOf = new int[0];    // per row: first position attended to
    private int[] unitRow = new int[0];   // native attention tasks: first row of the run,
    private int[] unitEnd = new int[0];   // one past its last row,
    private int[] unitHead = new int[0];  // its key/value head, or -1 for all

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
        cos = new float[rowsCap * (cfg.headDim() / 2)];
        sin = new float[rowsCap * (cfg.headDim() / 2)];
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
        int half = cfg.headDim() / 2;
        Rope rope = model.rope();
        cpu.parallel(rows, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                rope.angles(batch.position(r), cos, sin, r * half);
            }
        });
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
        rmsNormRows(layer.inputNorm(), eps, rows);
        cpu.matmuls(xn, rows, new Tensor[] {layer.q(), layer.k(), layer.v()}, new float[][] {q, k, v});
        addBias(q, layer.qBias(), rows, qDim);
        addBias(k, layer.kBias(), rows, kvDim);
        addBias(v, layer.vBias(), rows, kvDim);
        applyLora(l, LoraModule.Q_PROJ, xn, h, q, qDim);
        applyLora(l, LoraModule.K_PROJ, xn, h, k, kvDim);
        applyLora(l, LoraModule.V_PROJ, xn, h, v, kvDim);
        Rope rope = model.rope();
        int half = cfg.headDim() / 2;
        cpu.parallel(rows, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                rope.rotate(q, r * qDim, cfg.numHeads(), cos, sin, r * half);
                rope.rotate(k, r * kvDim, cfg.numKvHeads(), cos, sin, r * half);
            }
        });
        for (int r = 0; r < rows; r++) {
            batch.cache(r).store(l, batch.position(r), k, r * kvDim, v, r * kvDim); // one thread: a store may copy a shared block
        }
        int window = cfg.slidingWindow();
        if (cpu.usesNative()) {
            nativeAttention(batch, l, rows, window);
        } else {
            // rows in turn to each share (row r to share r % shares): a prefill's later rows attend
            // to more positions, so contiguous ranges would leave the first shares idle
            int shares = Math.min(cpu.threads(), rows); // one row (decode): no parallel region
            cpu.parallel(shares, (s0, s1) -> {
                for (int s = s0; s < s1; s++) {
                    for (int r = s; r < rows; r += shares) {
                        KvCache c = batch.cache(r);
                        int len = batch.position(r) + 1;
                        int from = window > 0 ? Math.max(0, len - window) : 0;
                        Attention.attend(q, r * qDim, cfg.numHeads(), cfg.numKvHeads(), cfg.headDim(),
                            c.keys(l), c.values(l), c.table(), c.blockSize(), from, len, att, r * qDim, scores, r * maxLen);
                    }
                }
            });
        }
        cpu.linear(att, rows, layer.o(), layer.oBias(), tmp);
        applyLora(l, LoraModule.O_PROJ, att, qDim, tmp, h);
        addRows(x, tmp, rows, h);
    }

    /** {@code xn = rmsNorm(x) · weight}, row by row, rows split across the team. */
    private void rmsNormRows(float[] weight, float eps, int rows) {
        int h = cfg.hiddenSize();
        cpu.parallel(rows, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                Ops.rmsNorm(x, r * h, weight, eps, xn, r * h, h);
            }
        });
    }

    /** {@code y[r] += a[r]} for rows of n, rows split across the team. */
    private void addRows(float[] y, float[] a, int rows, int n) {
        cpu.parallel(rows, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                Ops.add(y, r * n, a, r * n, n);
            }
        });
    }

    /** {@code y[r] += bias} for every row; nothing when bias is null. */
    private static void addBias(float[] y, float[] bias, int rows, int n) {
        if (bias != null) {
            for (int r = 0; r < rows; r++) {
                Ops.add(y, r * n, bias, 0, n);
            }
        }
    }

    /** Runs of at least this many rows of one sequence (a prefill chunk) get one task per key/value head. */
    static final int SPLIT_HEADS_ROWS = 4;

    /**
     * The native attention kernel ({@link Attention#attendRowsNative}) for every row: rows of one
     * sequence that are next to each other form a run and share each key load; a run of at least
     * {@link #SPLIT_HEADS_ROWS} rows is one task per key/value head, a shorter one (decode) one task.
     * Every row takes this kernel, whatever its batch, so a sequence's numbers do not depend on
     * whether its tokens came as a prefill or one by one beside other sequences.
     */
    private void nativeAttention(StepBatch batch, int l, int rows, int window) {
        if (lenOf.length < rows) {
            lenOf = new int[rows];
            fromOf = new int[rows];
            unitRow = new int[rows * cfg.numKvHeads()];
            unitEnd = new int[rows * cfg.numKvHeads()];
            unitHead = new int[rows * cfg.numKvHeads()];
        }
        int kvHeads = cfg.numKvHeads();
        int units = 0;
        for (int r = 0; r < rows; ) {
            KvCache c = batch.cache(r);
            int e = r + 1;
            while (e < rows && batch.cache(e) == c) {
                e++;
            }
            for (int i = r; i < e; i++) {
                lenOf[i] = batch.position(i) + 1;
                fromOf[i] = window > 0 ? Math.max(0, lenOf[i] - window) : 0;
            }
            if (e - r >= SPLIT_HEADS_ROWS) {
                for (int g = 0; g < kvHeads; g++) {
                    unitRow[units] = r;
                    unitEnd[units] = e;
                    unitHead[units++] = g;
                }
            } else {
                unitRow[units] = r;
                unitEnd[units] = e;
                unitHead[units++] = -1;
            }
            r = e;
        }
        cpu.parallel(units, (u0, u1) -> {
            for (int u = u0; u < u1; u++) {
                int r0 = unitRow[u];
                int g = unitHead[u];
                KvCache c = batch.cache(r0);
                Attention.attendRowsNative(q, r0, unitEnd[u] - r0, lenOf, fromOf, cfg.numHeads(), kvHeads, cfg.headDim(),
                    c.keys(l), c.values(l), c.table(), c.blockSize(), g < 0 ? 0 : g, g < 0 ? kvHeads : g + 1, att);
            }
        });
    }

    private void applyLora(int l, LoraModule m, float[] in, int inStride, float[] out, int outStride) {
        if (lora != null) {
            cpu.lora(pool, lora, l, m.ordinal(), in, inStride, out, outStride);
        }
    }

    private void mlpBlock(int l, LlamaModel.Layer layer, int rows, float eps) {
        int h = cfg.hiddenSize();
        int inter = cfg.intermediateSize();
        rmsNormRows(layer.postNorm(), eps, rows);
        cpu.matmuls(xn, rows, new Tensor[] {layer.gate(), layer.up()}, new float[][] {gate, up});
        applyLora(l, LoraModule.GATE_PROJ, xn, h, gate, inter);
        applyLora(l, LoraModule.UP_PROJ, xn, h, up, inter);
        cpu.siluMul(gate, up, rows * inter);
        cpu.matmul(gate, rows, layer.down(), tmp);
        applyLora(l, LoraModule.DOWN_PROJ, gate, inter, tmp, h);
        addRows(x, tmp, rows, h);
    }
}
