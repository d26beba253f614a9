package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.loragateway.kernels.cpu.Attention;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.LoraBatch;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import dev.loragateway.kernels.cpu.Ops;
import dev.loragateway.kernels.cpu.Rope;
import dev.loragateway.kernels.Tensor;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;
import jcuda.driver.CUdeviceptr;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Every {@link CudaOps} launcher against the CPU reference of {@code dev.loragateway.kernels}, on
 * random (never zero) inputs at odd shapes. Skips without a usable device and fatbin; run it on a
 * GPU machine with {@code kernels/gpu-check.sh run}. Errors are ‖out − ref‖ / ‖ref‖ over the part
 * a kernel changes.
 */
class CudaOpsGpuTest {
    static final double F32_BOUND = 3e-5;   // float32 math, different summation order
    static final double BF16_BOUND = 1e-2;  // one operand rounded to bf16 (2^-9 relative per element)

    static CudaContext ctx;
    static CudaOps ops;
    static CpuBackend cpu;
    final List<DeviceBuffer> live = new ArrayList<>();
    final Random rnd = new Random(20240611);

    @BeforeAll
    static void open() {
        CudaDevice.Probe probe = CudaDevice.probe();
        if (probe.usable()) {
            ctx = CudaContext.open(probe, new CudaContext.Options(64L << 20, 1L << 30));
            ops = new CudaOps(ctx);
            cpu = new CpuBackend(1, CpuBackend.Kernels.JAVA); // the reference: float32 activations
        }
    }

    @BeforeEach
    void needsADevice() {
        assumeTrue(CudaDevice.probe().usable(), () -> "no usable CUDA device: " + CudaDevice.probe().reason());
        assumeTrue(ops != null, "context not opened");
    }

    @AfterEach
    void freeBuffers() {
        if (ctx != null) {
            ctx.synchronize();
            live.forEach(ctx.pool()::free);
        }
        live.clear();
    }

    @AfterAll
    static void close() {
        if (ctx != null) {
            ctx.close();
            cpu.close();
        }
    }

    // ------------------------------------------------------------------ LoRA

    static final int LAYERS = 2;
    static final int[] INS = {37, 100, 53};
    static final int[] OUTS = {53, 37, 100};
    static final int SLOTS = 64;
    static final int MAX_RANK = 64;

    /**
     * Values rounded to bf16, as in an adapter saved in bf16 (most PEFT adapters): the bf16 pool holds them exactly,
     * so both pool types must match the CPU to float32 accuracy. (With arbitrary float weights the bf16 pool's
     * rounding alone gave a relative error of 0.0114 on a rank-4, one-row case: over any fixed bound, and not the
     * kernel's doing.)
     */
    static float[] bf16Exact(float[] v) {
        for (int i = 0; i < v.length; i++) {
            v[i] = DType.bf16ToFloat(DType.floatToBf16(v[i]));
        }
        return v;
    }

    /** Random adapter: per (layer, module) rank from {@code ranks} (0 = not adapted when listed), A (r,in), B (out,r). */
    final class Adapter implements LoraSlotPool.Source {
        final int[][] rank = new int[LAYERS][INS.length];
        final float[][] scale = new float[LAYERS][INS.length];
        final float[][][] a = new float[LAYERS][INS.length][];
        final float[][][] b = new float[LAYERS][INS.length][];

        Adapter(int[] ranks) {
            for (int l = 0; l < LAYERS; l++) {
                for (int m = 0; m < INS.length; m++) {
                    int r = ranks[rnd.nextInt(ranks.length)];
                    rank[l][m] = r;
                    scale[l][m] = 0.25f + rnd.nextFloat() * 2;
                    a[l][m] = bf16Exact(gaussian(r * INS[m], 0.3f));
                    b[l][m] = bf16Exact(gaussian(OUTS[m] * r, 0.3f));
                }
            }
        }

        public int rank(int l, int m) {
            return rank[l][m];
        }

        public float scaling(int l, int m) {
            return scale[l][m];
        }

        public float[] a(int l, int m) {
            return a[l][m];
        }

        public float[] b(int l, int m) {
            return b[l][m];
        }
    }

    /** The device pool + table built from the same adapters, in the README's layout. */
    final class DevicePool {
        final CudaOps.PoolType type;
        final DeviceBuffer pool;
        final CudaOps.LoraTable table;

        DevicePool(CudaOps.PoolType type, Adapter[] adapters) {
            this.type = type;
            int lmCount = LAYERS * INS.length;
            int[] rank = new int[SLOTS * lmCount];
            float[] scale = new float[SLOTS * lmCount];
            long[] offA = new long[SLOTS * lmCount];
            long[] offB = new long[SLOTS * lmCount];
            List<Float> data = new ArrayList<>();
            // slots in reverse order with a 7-element gap each: offsets are absolute, slots anywhere
            for (int s = SLOTS - 1; s >= 0; s--) {
                for (int g = 0; g < 7; g++) {
                    data.add(Float.NaN);
                }
                Adapter ad = adapters[s];
                for (int l = 0; l < LAYERS; l++) {
                    for (int m = 0; m < INS.length; m++) {
                        int e = s * lmCount + l * INS.length + m;
                        int r = ad.rank[l][m];
                        rank[e] = r;
                        scale[e] = ad.scale[l][m];
                        offA[e] = data.size();
                        for (float v : ad.a[l][m]) {
                            data.add(v);
                        }
                        offB[e] = data.size();
                        for (int k = 0; k < r; k++) {
                            for (int o = 0; o < OUTS[m]; o++) {
                                data.add(ad.b[l][m][o * r + k]); // Bᵀ
                            }
                        }
                    }
                }
            }
            float[] flat = new float[data.size()];
            for (int i = 0; i < flat.length; i++) {
                flat[i] = data.get(i);
            }
            this.pool = type == CudaOps.PoolType.F32 ? upload(flat) : uploadBf16(flat);
            this.table = new CudaOps.LoraTable(upload(rank).pointer(), upload(scale).pointer(), upload(offA).pointer(),
                upload(offB).pointer(), lmCount);
        }
    }

    @Test
    void loraMatchesTheCpuAcrossThePunicaMatrix() {
        int[][] rankSets = {{4}, {8}, {16}, {64}, {0, 4, 8, 16, 64}};
        String[] dists = {"distinct", "uniform", "zipf", "identical"};
        int[] batches = {1, 3, 7, 32, 64};
        List<String> failures = new ArrayList<>();
        int cases = 0;
        for (int[] ranks : rankSets) {
            Adapter[] adapters = new Adapter[SLOTS];
            LoraSlotPool cpuPool = new LoraSlotPool(SLOTS, LAYERS, INS, OUTS);
            for (int s = 0; s < SLOTS; s++) {
                adapters[s] = new Adapter(ranks);
                cpuPool.write(s, adapters[s]);
            }
            for (CudaOps.PoolType type : CudaOps.PoolType.values()) {
                DevicePool dev = new DevicePool(type, adapters);
                double bound = F32_BOUND; // bf16-exact weights: the bf16 pool loses nothing
                for (String dist : dists) {
                    for (int rows : batches) {
                        int[] slots = slotsFor(dist, rows);
                        LoraBatch batch = LoraBatch.of(slots, rows);
                        for (int m = 0; m < INS.length; m++) {
                            for (String path : new String[] {"sgmv", "bgmv", "sgmv+bgmv"}) {
                                for (int splits : new int[] {1, 3}) {
                                    cases++;
                                    String what = Arrays.toString(ranks) + " " + type + " " + dist + " rows " + rows
                                        + " module " + m + " " + path + " splits " + splits;
                                    String err = loraCase(cpuPool, dev, batch, 1, m, path, splits, bound);
                                    if (err != null) {
                                        failures.add(what + ": " + err);
                                    }
                                }
                            }
                        }
                    }
                }
                freeBuffers();
            }
        }
        assertTrue(failures.isEmpty(), failures.size() + " of " + cases + " cases failed:\n" + String.join("\n", failures));
    }

    int[] slotsFor(String dist, int rows) {
        int[] s = new int[rows];
        switch (dist) {
            case "distinct":
                for (int i = 0; i < rows; i++) {
                    s[i] = (i * 37 + 5) % SLOTS; // 37 is coprime with 64: all distinct for rows <= 64
                }
                break;
            case "uniform": // unsorted: an adapter may give several segments; some rows have no adapter
                for (int i = 0; i < rows; i++) {
                    s[i] = rnd.nextInt(9) == 0 ? -1 : rnd.nextInt(8);
                }
                break;
            case "zipf": // sorted, as the engine orders rows by slot
                for (int i = 0; i < rows; i++) {
                    double u = rnd.nextDouble() * 2.7178571428571425; // Σ_{k=1..8} 1/k: P(k) ∝ 1/(k+1)
                    int k = 0;
                    for (double c = 1; u > c && k < 7; c += 1.0 / (k + 1)) {
                        k++;
                    }
                    s[i] = 3 * k;
                }
                Arrays.sort(s);
                break;
            default: // identical
                Arrays.fill(s, 11);
        }
        return s;
    }

    /** One shrink + expand on the device against {@link CpuBackend#lora}; null when within bound. */
    String loraCase(LoraSlotPool cpuPool, DevicePool dev, LoraBatch batch, int layer, int m, String path, int splits,
                    double bound) {
        int rows = batch.rows();
        int in = INS[m];
        int out = OUTS[m];
        int xs = in + (m == 1 ? 0 : 3);     // aligned and unaligned strides
        int ys = out + 1;
        int vs = MAX_RANK + 1;
        float[] x = gaussian(rows * xs, 1f);
        float[] y0 = gaussian(rows * ys, 1f);
        float[] ref = y0.clone();
        cpu.lora(cpuPool, batch, layer, m, x, xs, ref, ys);

        int[] segStart = new int[batch.segments() + 1];
        int[] segSlot = new int[batch.segments()];
        int maxSeg = 0;
        for (int g = 0; g < batch.segments(); g++) {
            segStart[g] = batch.segStart(g);
            segSlot[g] = batch.segSlot(g);
            maxSeg = Math.max(maxSeg, batch.segStart(g + 1) - batch.segStart(g));
        }
        segStart[batch.segments()] = rows;
        int[] rowSlot = new int[rows];
        for (int i = 0; i < rows; i++) {
            rowSlot[i] = batch.rowSlot(i);
        }
        float[] nan = new float[splits * rows * vs];
        Arrays.fill(nan, Float.NaN); // v is scratch: skipped rows and ranks >= r must never be read
        CUdeviceptr dx = upload(x).pointer();
        DeviceBuffer dy = upload(y0);
        CUdeviceptr dv = upload(nan).pointer();
        CUdeviceptr dStart = upload(segStart).pointer();
        CUdeviceptr dSeg = upload(segSlot).pointer();
        CUdeviceptr dRow = upload(rowSlot).pointer();
        int lm = layer * INS.length + m;
        if (path.startsWith("sgmv")) {
            ops.sgmvShrink(dev.type, dv, dx, dev.pool.pointer(), dev.table, dStart, dSeg, batch.segments(), maxSeg, lm, rows,
                in, xs, vs, splits);
        } else {
            ops.bgmvShrink(dev.type, dv, dx, dev.pool.pointer(), dev.table, dRow, lm, rows, in, xs, vs, splits);
        }
        if (path.equals("sgmv")) {
            ops.sgmvExpand(dev.type, dy.pointer(), dv, dev.pool.pointer(), dev.table, dStart, dSeg, batch.segments(), maxSeg,
                lm, rows, out, vs, ys, splits);
        } else {
            ops.bgmvExpand(dev.type, dy.pointer(), dv, dev.pool.pointer(), dev.table, dRow, lm, rows, out, vs, ys, splits);
        }
        float[] got = downloadFloats(dy, rows * ys);
        for (int i = 0; i < rows; i++) {
            if (rowSlot[i] < 0 || cpuPool.rank(rowSlot[i], layer, m) == 0) {
                for (int o = 0; o < ys; o++) {
                    if (Float.floatToIntBits(got[i * ys + o]) != Float.floatToIntBits(y0[i * ys + o])) {
                        return "row " + i + " (no adapter here) changed at column " + o;
                    }
                }
            }
        }
        double e = relErr(got, ref, y0);
        return e <= bound ? null : "relative error " + e + " > " + bound;
    }

    // ------------------------------------------------------------------ projections

    @Test
    void gemmAndGemvMatchMatMulOnBf16Weights() {
        for (int rows : new int[] {1, 3, 7, 8, 9, 33, 70, 130}) {
            for (int[] shape : new int[][] {{53, 37}, {37, 100}, {130, 64}, {257, 136}}) {
                int out = shape[0];
                int in = shape[1];
                Tensor w = Tensor.of("w", DType.BF16, gaussian(out * in, 0.2f), out, in);
                float[] bias = gaussian(out, 1f);
                boolean aligned = in % 8 == 0; // aligned: the 16-byte load paths; else element loads
                int xs = aligned ? in + 8 : in + 5;
                int c0 = aligned ? 0 : 2;
                float[] x = gaussian(rows * xs, 1f);
                float[] dense = new float[rows * in];
                for (int r = 0; r < rows; r++) {
                    System.arraycopy(x, r * xs + c0, dense, r * in, in); // a column slice at element c0
                }
                float[] lin = new float[rows * out];
                cpu.linear(dense, rows, w, bias, lin);
                int ys = out + 3;
                float[] y0 = gaussian(rows * ys, 1f);
                float[] ref = y0.clone();
                for (int r = 0; r < rows; r++) {
                    for (int o = 0; o < out; o++) {
                        ref[r * ys + o] += lin[r * out + o];
                    }
                }
                DeviceBuffer dx = upload(x);
                CUdeviceptr dw = uploadBytes(w.buffer()).pointer();
                CUdeviceptr db = upload(bias).pointer();
                for (boolean gemm : new boolean[] {false, true}) {
                    if (!gemm && rows > 33) {
                        continue;
                    }
                    DeviceBuffer dy = upload(y0);
                    CUdeviceptr xAt = dx.at(4L * c0, 4L * (rows * xs - c0));
                    if (gemm) {
                        ops.gemm(dy.pointer(), xAt, dw, db, rows, out, in, xs, ys, true);
                    } else {
                        ops.gemv(dy.pointer(), xAt, dw, db, rows, out, in, xs, ys, true);
                    }
                    float[] got = downloadFloats(dy, rows * ys);
                    double e = relErr(got, ref, y0);
                    double bound = gemm ? BF16_BOUND : F32_BOUND;
                    assertTrue(e <= bound, (gemm ? "gemm" : "gemv") + " rows " + rows + " out " + out + " in " + in
                        + ": relative error " + e);
                    for (int r = 0; r < rows; r++) {
                        for (int o = out; o < ys; o++) {
                            assertEquals(y0[r * ys + o], got[r * ys + o], "stride padding written");
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ norm, rope, element-wise

    @Test
    void rmsNormGathersAndMatchesOps() {
        int rows = 5;
        int n = 37;
        int xs = 41;
        float[] x = gaussian(7 * xs, 2f);
        float[] w = gaussian(n, 1f);
        int[] index = {6, 0, 3, 3, 1};
        DeviceBuffer dOut = upload(new float[rows * n]);
        ops.rmsNorm(dOut.pointer(), upload(x).pointer(), upload(w).pointer(), upload(index).pointer(), rows, n, xs, n, 1e-5f);
        float[] got = downloadFloats(dOut, rows * n);
        float[] ref = new float[rows * n];
        for (int j = 0; j < rows; j++) {
            Ops.rmsNorm(x, index[j] * xs, w, 1e-5f, ref, j * n, n);
        }
        assertCloseEach(ref, got, 1e-6, "rmsnorm");
    }

    @Test
    void ropeMatchesRopeApply() {
        for (int headDim : new int[] {10, 64, 128}) {
            Rope rope = new Rope(headDim, 500000, new Rope.Llama3Scaling(8, 1, 4, 8192));
            int rows = 6;
            int heads = 5;
            int kvHeads = 1;
            int qs = heads * headDim + 2;
            int ks = kvHeads * headDim + 4;
            float[] q = gaussian(rows * qs, 1f);
            float[] k = gaussian(rows * ks, 1f);
            int[] pos = new int[rows];
            double[] inv = new double[headDim / 2];
            for (int i = 0; i < inv.length; i++) {
                inv[i] = rope.frequency(i);
            }
            for (int i = 0; i < rows; i++) {
                pos[i] = rnd.nextInt(100000);
            }
            DeviceBuffer dq = upload(q);
            DeviceBuffer dk = upload(k);
            ops.ropeNeox(dq.pointer(), qs, dk.pointer(), ks, upload(pos).pointer(), upload(inv).pointer(), rows,
                new CudaOps.Heads(heads, kvHeads, headDim));
            float[] cos = new float[headDim / 2];
            float[] sin = new float[headDim / 2];
            for (int i = 0; i < rows; i++) {
                rope.apply(q, i * qs, heads, pos[i], cos, sin);
                rope.apply(k, i * ks, kvHeads, pos[i], cos, sin);
            }
            assertCloseEach(q, downloadFloats(dq, rows * qs), 1e-6, "rope q, head_dim " + headDim);
            assertCloseEach(k, downloadFloats(dk, rows * ks), 1e-6, "rope k, head_dim " + headDim);
        }
    }

    @Test
    void siluMulAddAndEmbeddingMatchOps() {
        int rows = 7;
        int cols = 53;
        float[] gate = gaussian(rows * cols, 3f);
        float[] up = gaussian(rows * cols, 1f);
        DeviceBuffer dOut = upload(new float[rows * (cols + 1)]);
        ops.siluMul(dOut.pointer(), upload(gate).pointer(), upload(up).pointer(), rows, cols, cols + 1, cols, cols);
        float[] got = downloadFloats(dOut, rows * (cols + 1));
        float[] ref = gate.clone();
        Ops.siluMul(ref, up, rows * cols);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                assertEquals(ref[r * cols + c], got[r * (cols + 1) + c], 1e-6 * (1 + Math.abs(ref[r * cols + c])), "silu_mul");
            }
        }

        int n = 100_003;
        float[] a = gaussian(n, 1f);
        float[] b = gaussian(n, 1f);
        DeviceBuffer da = upload(a);
        ops.addF32(da.pointer(), upload(b).pointer(), n);
        Ops.add(a, 0, b, 0, n);
        assertEquals(0, Arrays.compare(a, downloadFloats(da, n)), "add_f32 is exact");

        int vocab = 97;
        int dim = 45;
        Tensor table = Tensor.of("embed", DType.BF16, gaussian(vocab * dim, 1f), vocab, dim);
        int[] tokens = {96, 0, 13, 13, vocab, -1};
        DeviceBuffer dEmb = upload(gaussian(tokens.length * (dim + 2), 1f));
        ops.embeddingBf16(dEmb.pointer(), uploadBytes(table.buffer()).pointer(), upload(tokens).pointer(), tokens.length, dim,
            vocab, dim + 2);
        float[] emb = downloadFloats(dEmb, tokens.length * (dim + 2));
        float[] row = new float[dim];
        for (int r = 0; r < tokens.length; r++) {
            if (tokens[r] >= 0 && tokens[r] < vocab) {
                Ops.embedding(table, tokens[r], row, 0);
            } else {
                Arrays.fill(row, 0f); // README: a token outside [0, vocab) gives zeros
            }
            assertEquals(0, Arrays.compare(row, Arrays.copyOfRange(emb, r * (dim + 2), r * (dim + 2) + dim)), "token " + tokens[r]);
        }
    }

    // ------------------------------------------------------------------ attention

    @Test
    void pagedAttentionMatchesAttentionAttend() {
        for (int headDim : new int[] {12, 128, 256}) {
            for (int[] hk : new int[][] {{6, 2}, {4, 4}, {32, 2}}) {
                for (int blockSize : new int[] {1, 16}) {
                    for (int window : new int[] {0, 5}) {
                        attentionCase(hk[0], hk[1], headDim, blockSize, window);
                    }
                }
            }
        }
    }

    void attentionCase(int heads, int kvHeads, int headDim, int blockSize, int window) {
        String what = "heads " + heads + "/" + kvHeads + " head_dim " + headDim + " block " + blockSize + " window " + window;
        int[] lengths = {70, 33, 1, 129};
        int seqs = lengths.length;
        int kvDim = kvHeads * headDim;
        int maxBlocks = CudaKernels.ceilDiv(129, blockSize);
        int blocks = seqs * maxBlocks + 3;
        // block tables: a shuffled permutation of the pool's blocks
        List<Integer> ids = new ArrayList<>();
        for (int b = 0; b < blocks; b++) {
            ids.add(b);
        }
        java.util.Collections.shuffle(ids, rnd);
        int[] tables = new int[seqs * maxBlocks];
        for (int i = 0; i < tables.length; i++) {
            tables[i] = ids.get(i);
        }
        // the whole history through kv_write (rows of all sequences, interleaved)
        int total = Arrays.stream(lengths).sum();
        int ks = kvDim + 1;
        float[] k = gaussian(total * ks, 1f);
        float[] v = gaussian(total * ks, 1f);
        int[] rowSeq = new int[total];
        int[] pos = new int[total];
        float[] kPool = new float[blocks * blockSize * kvDim];
        float[] vPool = new float[blocks * blockSize * kvDim];
        int r = 0;
        for (int s = 0; s < seqs; s++) {
            for (int t = 0; t < lengths[s]; t++, r++) {
                rowSeq[r] = s;
                pos[r] = t;
                int row = tables[s * maxBlocks + t / blockSize] * blockSize + t % blockSize;
                System.arraycopy(k, r * ks, kPool, row * kvDim, kvDim);
                System.arraycopy(v, r * ks, vPool, row * kvDim, kvDim);
            }
        }
        DeviceBuffer dK = upload(new float[kPool.length]);
        DeviceBuffer dV = upload(new float[vPool.length]);
        CUdeviceptr dTables = upload(tables).pointer();
        CudaOps.PagedKv kv = new CudaOps.PagedKv(dK.pointer(), dV.pointer(), dTables, blockSize, maxBlocks);
        ops.kvWrite(kv, upload(k).pointer(), ks, upload(v).pointer(), ks, upload(rowSeq).pointer(), upload(pos).pointer(),
            total, kvDim);
        assertEquals(0, Arrays.compare(kPool, downloadFloats(dK, kPool.length)), "kv_write keys, " + what);
        assertEquals(0, Arrays.compare(vPool, downloadFloats(dV, vPool.length)), "kv_write values, " + what);

        float scale = (float) (1.0 / Math.sqrt(headDim));
        int qs = heads * headDim + 2;
        float[] scores = new float[200];
        // prefill: the last 5 positions (or fewer) of every sequence, as one mixed launch
        List<int[]> pr = new ArrayList<>();
        for (int s = 0; s < seqs; s++) {
            for (int t = Math.max(0, lengths[s] - 5); t < lengths[s]; t++) {
                pr.add(new int[] {s, t});
            }
        }
        int rows = pr.size();
        float[] q = gaussian(rows * qs, 1f);
        int[] pSeq = new int[rows];
        int[] pPos = new int[rows];
        float[] ref = new float[rows * heads * headDim];
        for (int i = 0; i < rows; i++) {
            pSeq[i] = pr.get(i)[0];
            pPos[i] = pr.get(i)[1];
            int from = window > 0 ? Math.max(0, pPos[i] + 1 - window) : 0;
            Attention.attend(q, i * qs, heads, kvHeads, headDim, kPool, vPool,
                Arrays.copyOfRange(tables, pSeq[i] * maxBlocks, (pSeq[i] + 1) * maxBlocks), blockSize, from, pPos[i] + 1,
                ref, i * heads * headDim, scores, 0);
        }
        DeviceBuffer dOut = upload(gaussian(rows * heads * headDim, 1f));
        CUdeviceptr dq = upload(q).pointer();
        CudaOps.Heads hs = new CudaOps.Heads(heads, kvHeads, headDim);
        ops.attentionPrefill(dOut.pointer(), heads * headDim, dq, qs, kv, upload(pSeq).pointer(), upload(pPos).pointer(), rows,
            hs, window, scale);
        double e = relErr(downloadFloats(dOut, ref.length), ref, null);
        assertTrue(e <= F32_BOUND, "attention_prefill " + what + ": relative error " + e);

        // decode: one query per sequence (row i = sequence i), one and several partitions
        float[] dqv = gaussian(seqs * qs, 1f);
        float[] dref = new float[seqs * heads * headDim];
        int maxAttended = 0;
        for (int s = 0; s < seqs; s++) {
            int from = window > 0 ? Math.max(0, lengths[s] - window) : 0;
            maxAttended = Math.max(maxAttended, lengths[s] - from);
            Attention.attend(dqv, s * qs, heads, kvHeads, headDim, kPool, vPool,
                Arrays.copyOfRange(tables, s * maxBlocks, (s + 1) * maxBlocks), blockSize, from, lengths[s],
                dref, s * heads * headDim, scores, 0);
        }
        CUdeviceptr dLen = upload(lengths).pointer();
        CUdeviceptr dQd = upload(dqv).pointer();
        for (int partition : new int[] {512, 32}) {
            int parts = CudaOps.decodeParts(maxAttended, partition);
            DeviceBuffer out = upload(gaussian(dref.length, 1f));
            CUdeviceptr partOut = parts > 1 ? upload(gaussian(seqs * heads * parts * headDim, 1f)).pointer() : null;
            CUdeviceptr partMl = parts > 1 ? upload(gaussian(seqs * heads * parts * 2, 1f)).pointer() : null;
            ops.attentionDecode(out.pointer(), heads * headDim, dQd, qs, kv, dLen, seqs, hs, window, scale,
                new CudaOps.DecodeParts(parts, partition, partOut, partMl));
            double de = relErr(downloadFloats(out, dref.length), dref, null);
            assertTrue(de <= F32_BOUND, "attention_decode " + what + " parts " + parts + ": relative error " + de);
        }
    }

    // ------------------------------------------------------------------ sampling helpers

    @Test
    void argmaxLogsumexpAndSoftmaxMatchTheHost() {
        int rows = 5;
        int vocab = 1001;
        int stride = 1003;
        float[] logits = gaussian(rows * stride, 4f);
        logits[2 * stride + 17] = 50f; // a tie: the lowest index wins
        logits[2 * stride + 900] = 50f;
        DeviceBuffer dl = upload(logits);
        DeviceBuffer idx = upload(new int[rows]);
        DeviceBuffer val = upload(new float[rows]);
        DeviceBuffer lse = upload(new float[rows]);
        DeviceBuffer probs = upload(new float[rows * vocab]);
        ops.argmaxRows(idx.pointer(), val.pointer(), dl.pointer(), rows, vocab, stride);
        ops.logsumexpRows(lse.pointer(), dl.pointer(), rows, vocab, stride);
        ops.softmaxRows(probs.pointer(), dl.pointer(), rows, vocab, vocab, stride, 1 / 0.7f);
        int[] gotIdx = downloadInts(idx, rows);
        float[] gotVal = downloadFloats(val, rows);
        float[] gotLse = downloadFloats(lse, rows);
        float[] gotP = downloadFloats(probs, rows * vocab);
        for (int r = 0; r < rows; r++) {
            int o = r * stride;
            int best = Ops.argmax(logits, o, vocab);
            assertEquals(best, gotIdx[r], "argmax row " + r);
            assertEquals(logits[o + best], gotVal[r], "argmax value row " + r);
            double max = logits[o + best];
            double sum = 0;
            for (int c = 0; c < vocab; c++) {
                sum += Math.exp(logits[o + c] - max);
            }
            assertEquals(max + Math.log(sum), gotLse[r], 1e-5 * Math.abs(max + Math.log(sum)) + 1e-6, "lse row " + r);
            double zsum = 0;
            double[] z = new double[vocab];
            for (int c = 0; c < vocab; c++) {
                z[c] = Math.exp((logits[o + c] - max) * (1 / 0.7f));
                zsum += z[c];
            }
            float[] pr = new float[vocab];
            for (int c = 0; c < vocab; c++) {
                pr[c] = (float) (z[c] / zsum);
            }
            assertTrue(relErr(Arrays.copyOfRange(gotP, r * vocab, (r + 1) * vocab), pr, null) <= 1e-5, "softmax row " + r);
        }
    }

    // ------------------------------------------------------------------ helpers

    float[] gaussian(int n, float sigma) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            float g = (float) rnd.nextGaussian() * sigma;
            a[i] = g == 0f ? sigma : g; // never exactly zero
        }
        return a;
    }

    /** ‖got − ref‖ / ‖ref − base‖ (base null: ‖ref‖), i.e. the error relative to what the kernel adds. */
    static double relErr(float[] got, float[] ref, float[] base) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < ref.length; i++) {
            double d = (double) got[i] - ref[i];
            double b = base == null ? ref[i] : (double) ref[i] - base[i];
            num += d * d;
            den += b * b;
        }
        if (Double.isNaN(num)) {
            return Double.POSITIVE_INFINITY;
        }
        return den == 0 ? Math.sqrt(num) : Math.sqrt(num / den);
    }

    static void assertCloseEach(float[] ref, float[] got, double rel, String what) {
        for (int i = 0; i < ref.length; i++) {
            assertEquals(ref[i], got[i], rel * (1 + Math.abs(ref[i])), what + " at " + i);
        }
    }

    DeviceBuffer stage(long bytes, Consumer<ByteBuffer> fill) {
        DeviceBuffer d = ctx.pool().allocate(Math.max(bytes, 4));
        live.add(d);
        try (PinnedBuffer h = ctx.pinned(Math.max(bytes, 4))) {
            fill.accept(h.buffer());
            ctx.copyToDevice(h, 0, d, 0, Math.max(bytes, 4));
            ctx.synchronize();
        }
        return d;
    }

    DeviceBuffer upload(float[] a) {
        return stage(4L * a.length, b -> b.asFloatBuffer().put(a));
    }

    DeviceBuffer upload(int[] a) {
        return stage(4L * a.length, b -> b.asIntBuffer().put(a));
    }

    DeviceBuffer upload(long[] a) {
        return stage(8L * a.length, b -> b.asLongBuffer().put(a));
    }

    DeviceBuffer upload(double[] a) {
        return stage(8L * a.length, b -> b.asDoubleBuffer().put(a));
    }

    DeviceBuffer uploadBf16(float[] a) {
        return stage(2L * a.length, b -> {
            for (float f : a) {
                b.putShort(DType.floatToBf16(f));
            }
        });
    }

    /** Raw bytes, e.g. a safetensors bf16 tensor (little-endian, as the device reads it). */
    DeviceBuffer uploadBytes(ByteBuffer src) {
        ByteBuffer s = src.duplicate();
        return stage(s.remaining(), b -> b.put(s));
    }

    float[] downloadFloats(DeviceBuffer d, int n) {
        try (PinnedBuffer h = ctx.pinned(4L * n)) {
            ctx.copyToHost(d, 0, h, 0, 4L * n);
            ctx.synchronize();
            float[] a = new float[n];
            h.floats().get(a);
            return a;
        }
    }

    int[] downloadInts(DeviceBuffer d, int n) {
        try (PinnedBuffer h = ctx.pinned(4L * n)) {
            ctx.copyToHost(d, 0, h, 0, 4L * n);
            ctx.synchronize();
            int[] a = new int[n];
            h.buffer().asIntBuffer().get(a);
            return a;
        }
    }
}
