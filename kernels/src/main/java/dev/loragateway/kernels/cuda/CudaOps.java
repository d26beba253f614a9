package dev.loragateway.kernels.cuda;

import static dev.loragateway.kernels.cuda.CudaKernels.ceilDiv;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.JCudaDriver;

/**
 * One launcher per kernel family of {@code kernels/src/main/cuda/README.md} (the ABI): each method
 * takes device addresses (a {@link DeviceBuffer}'s {@code pointer()}, or {@code at(byteOffset, bytes)}
 * for a part of one) and the scalars, and queues the kernel on the context's stream with the
 * README's argument order and grid/block shapes. Nothing is uploaded, allocated or synchronised
 * here; callers own every buffer. A {@code null} address is passed as the 0 pointer and is only
 * legal where the README says "nullable".
 *
 * <p>Launches with nothing to do (0 rows, 0 segments, 0 outputs) are skipped on the host: a 0
 * grid dimension is a launch error in CUDA.
 */
public final class CudaOps {
    /** Element type of the device LoRA slot pool: picks the {@code _f32} or {@code _bf16} kernel. */
    public enum PoolType { F32, BF16 }

    /**
     * The device LoRA table (README "The device slot pool and its table"): four arrays of
     * {@code slots · lmCount} entries ({@code int32 rank, float32 scale, int64 offA, int64 offB}),
     * entry {@code slot · lmCount + layer · modules + module}; offsets in pool elements.
     */
    public record LoraTable(CUdeviceptr rank, CUdeviceptr scale, CUdeviceptr offA, CUdeviceptr offB, int lmCount) {
    }

    /** Attention heads: {@code heads} query heads sharing {@code kvHeads} key/value heads (GQA), {@code headDim} floats each. */
    public record Heads(int heads, int kvHeads, int headDim) {
    }

    /**
     * One layer's paged KV cache as the attention kernels read it: key and value pools of
     * {@code blocks · blockSize} rows of {@code kvDim} floats, and the step's block tables,
     * {@code maxBlocks} entries per sequence.
     */
    public record PagedKv(CUdeviceptr kCache, CUdeviceptr vCache, CUdeviceptr blockTables, int blockSize, int maxBlocks) {
    }

    /**
     * How {@code attention_decode} splits each row's positions: {@code count} partitions of
     * {@code size} positions ({@code count} from {@link #decodeParts}); with more than one, the
     * scratch {@code partOut} ({@code rows·heads·count·headDim} floats) and {@code partMl}
     * ({@code rows·heads·count·2}), which may be null when {@code count == 1}.
     */
    public record DecodeParts(int count, int size, CUdeviceptr partOut, CUdeviceptr partMl) {
    }

    private final CudaContext ctx;
    private final CudaModule kernels;
    private final ConcurrentMap<String, Integer> sharedLimit = new ConcurrentHashMap<>(); // raised limits

    /** Loads (or reuses) the context's fatbin; throws {@link IllegalStateException} when the build has none. */
    public CudaOps(CudaContext ctx) {
        this.ctx = ctx;
        this.kernels = ctx.kernels();
    }

    public CudaContext context() {
        return ctx;
    }

    // ---------------------------------------------------------------- LoRA

    /**
     * {@code lora_sgmv_shrink_{f32,bf16}}: grid {@code (segments, ceil(maxSegmentRows / 16), splits)},
     * block 256. {@code splits} is a grid dimension only (no kernel argument): the expand must be
     * given the same value. Writes planes {@code v[z]} at {@code z · rows · vStride} floats.
     */
    public void sgmvShrink(PoolType type, CUdeviceptr v, CUdeviceptr x, CUdeviceptr pool, LoraTable t,
                           CUdeviceptr segStart, CUdeviceptr segSlot, int segments, int maxSegmentRows,
                           int lm, int rows, int in, int xStride, int vStride, int splits) {
        checkSplits(splits);
        if (segments == 0 || maxSegmentRows == 0) {
            return;
        }
        String name = type == PoolType.F32 ? CudaKernels.LORA_SGMV_SHRINK_F32 : CudaKernels.LORA_SGMV_SHRINK_BF16;
        ctx.launch(fn(name), segments, ceilDiv(maxSegmentRows, CudaKernels.LORA_SGMV_ROWS), splits,
            CudaKernels.LORA_THREADS, 1, 1, 0,
            p(v), p(x), p(pool), p(t.rank()), p(t.scale()), p(t.offA()), p(t.offB()), p(segStart), p(segSlot),
            i(t.lmCount()), i(lm), i(rows), i(in), i(xStride), i(vStride));
    }

    /** {@code lora_sgmv_expand_{f32,bf16}}: grid {@code (segments, ceil(maxSegmentRows / 16), ceil(out / 256))}, block 256. */
    public void sgmvExpand(PoolType type, CUdeviceptr y, CUdeviceptr v, CUdeviceptr pool, LoraTable t,
                           CUdeviceptr segStart, CUdeviceptr segSlot, int segments, int maxSegmentRows,
                           int lm, int rows, int out, int vStride, int yStride, int splits) {
        checkSplits(splits);
        if (segments == 0 || maxSegmentRows == 0 || out == 0) {
            return;
        }
        String name = type == PoolType.F32 ? CudaKernels.LORA_SGMV_EXPAND_F32 : CudaKernels.LORA_SGMV_EXPAND_BF16;
        ctx.launch(fn(name), segments, ceilDiv(maxSegmentRows, CudaKernels.LORA_SGMV_ROWS),
            ceilDiv(out, CudaKernels.LORA_EXPAND_COLS), CudaKernels.LORA_THREADS, 1, 1, 0,
            p(y), p(v), p(pool), p(t.rank()), p(t.scale()), p(t.offA()), p(t.offB()), p(segStart), p(segSlot),
            i(t.lmCount()), i(lm), i(rows), i(out), i(vStride), i(yStride), i(splits));
    }

    /** {@code lora_bgmv_shrink_{f32,bf16}}: grid {@code (rows, splits)}, block 256. */
    public void bgmvShrink(PoolType type, CUdeviceptr v, CUdeviceptr x, CUdeviceptr pool, LoraTable t,
                           CUdeviceptr rowSlot, int lm, int rows, int in, int xStride, int vStride, int splits) {
        checkSplits(splits);
        if (rows == 0) {
            return;
        }
        String name = type == PoolType.F32 ? CudaKernels.LORA_BGMV_SHRINK_F32 : CudaKernels.LORA_BGMV_SHRINK_BF16;
        ctx.launch(fn(name), rows, splits, 1, CudaKernels.LORA_THREADS, 1, 1, 0,
            p(v), p(x), p(pool), p(t.rank()), p(t.scale()), p(t.offA()), p(t.offB()), p(rowSlot),
            i(t.lmCount()), i(lm), i(rows), i(in), i(xStride), i(vStride));
    }

    /** {@code lora_bgmv_expand_{f32,bf16}}: grid {@code (rows, ceil(out / 256))}, block 256. */
    public void bgmvExpand(PoolType type, CUdeviceptr y, CUdeviceptr v, CUdeviceptr pool, LoraTable t,
                           CUdeviceptr rowSlot, int lm, int rows, int out, int vStride, int yStride, int splits) {
        checkSplits(splits);
        if (rows == 0 || out == 0) {
            return;
        }
        String name = type == PoolType.F32 ? CudaKernels.LORA_BGMV_EXPAND_F32 : CudaKernels.LORA_BGMV_EXPAND_BF16;
        ctx.launch(fn(name), rows, ceilDiv(out, CudaKernels.LORA_EXPAND_COLS), 1, CudaKernels.LORA_THREADS, 1, 1, 0,
            p(y), p(v), p(pool), p(t.rank()), p(t.scale()), p(t.offA()), p(t.offB()), p(rowSlot),
            i(t.lmCount()), i(lm), i(rows), i(out), i(vStride), i(yStride), i(splits));
    }

    /** The README's BGMV suggestion: {@code clamp(ceil(in / 1024), 1, 16)}. */
    public static int bgmvSplits(int in) {
        return Math.max(1, Math.min(16, ceilDiv(in, 1024)));
    }

    private static void checkSplits(int splits) {
        // README: "the shrink's input dimension is cut into splits chunks"; it gives 16 as the
        // suggested upper bound but does not state a hard limit. We only reject < 1.
        if (splits < 1) {
            throw new IllegalArgumentException("splits must be >= 1, got " + splits);
        }
    }

    // ---------------------------------------------------------------- base projections

    /**
     * {@code gemm_bf16}: {@code y = x·Wᵀ (+ bias) (+ y if accumulate)}, W bf16 (out, in); x is rounded
     * to bf16 on staging. Grid {@code (ceil(out / 128), ceil(rows / 64))}, block 256.
     */
    public void gemm(CUdeviceptr y, CUdeviceptr x, CUdeviceptr w, CUdeviceptr bias, int rows, int out, int in,
                     int xStride, int yStride, boolean accumulate) {
        if (rows == 0 || out == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.GEMM_BF16), ceilDiv(out, CudaKernels.GEMM_OUTS), ceilDiv(rows, CudaKernels.GEMM_ROWS), 1,
            CudaKernels.GEMM_THREADS, 1, 1, 0,
            p(y), p(x), p(w), p(bias), i(rows), i(out), i(in), i(xStride), i(yStride), i(accumulate ? 1 : 0));
    }

    /** {@code gemv_bf16}: same arguments as {@link #gemm}, float32 x; grid {@code (ceil(out / 16))}, block 256. */
    public void gemv(CUdeviceptr y, CUdeviceptr x, CUdeviceptr w, CUdeviceptr bias, int rows, int out, int in,
                     int xStride, int yStride, boolean accumulate) {
        if (rows == 0 || out == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.GEMV_BF16), ceilDiv(out, CudaKernels.GEMV_OUTS), 1, 1, CudaKernels.GEMM_THREADS, 1, 1, 0,
            p(y), p(x), p(w), p(bias), i(rows), i(out), i(in), i(xStride), i(yStride), i(accumulate ? 1 : 0));
    }

    /** The README's {@code P(·)}: {@link #gemv} for {@code rows ≤ 8}, else {@link #gemm}. */
    public void project(CUdeviceptr y, CUdeviceptr x, CUdeviceptr w, CUdeviceptr bias, int rows, int out, int in,
                        int xStride, int yStride, boolean accumulate) {
        if (rows <= CudaKernels.GEMV_MAX_ROWS) {
            gemv(y, x, w, bias, rows, out, in, xStride, yStride, accumulate);
        } else {
            gemm(y, x, w, bias, rows, out, in, xStride, yStride, accumulate);
        }
    }

    // ---------------------------------------------------------------- norm, rope, element-wise

    /** {@code rmsnorm}: grid {@code (rows)}, block 256; {@code rowIndex} nullable (gather). */
    public void rmsNorm(CUdeviceptr out, CUdeviceptr x, CUdeviceptr weight, CUdeviceptr rowIndex, int rows, int n,
                        int xStride, int outStride, float eps) {
        if (rows == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.RMSNORM), rows, 256, 0,
            p(out), p(x), p(weight), p(rowIndex), i(rows), i(n), i(xStride), i(outStride), f(eps));
    }

    /**
     * {@code rope_neox}, in place on q and k: grid {@code (rows)}, block 128. {@code invFreq} is a
     * device array of {@code headDim / 2} <em>doubles</em> ({@code Rope.frequency(i)}); k nullable
     * when {@code kvHeads == 0}.
     */
    public void ropeNeox(CUdeviceptr q, int qStride, CUdeviceptr k, int kStride, CUdeviceptr positions, CUdeviceptr invFreq,
                         int rows, Heads h) {
        int heads = h.heads();
        int kvHeads = h.kvHeads();
        int headDim = h.headDim();
        if ((headDim & 1) != 0 || headDim > 512) {
            throw new IllegalArgumentException("rope_neox needs an even head_dim <= 512, got " + headDim);
        }
        if (rows == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.ROPE_NEOX), rows, 128, 0,
            p(q), p(k), p(positions), p(invFreq), i(rows), i(heads), i(kvHeads), i(headDim), i(qStride), i(kStride));
    }

    /** {@code silu_mul}: grid-stride, grid {@code min(ceil(rows·cols / 256), 65535)}, block 256. */
    public void siluMul(CUdeviceptr out, CUdeviceptr gate, CUdeviceptr up, int rows, int cols, int outStride,
                        int gateStride, int upStride) {
        long n = (long) rows * cols;
        if (n == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.SILU_MUL), grid1d(n), 256, 0,
            p(out), p(gate), p(up), i(rows), i(cols), i(outStride), i(gateStride), i(upStride));
    }

    /** {@code add_f32}: {@code y[i] += x[i]}, i < n; grid-stride, block 256. */
    public void addF32(CUdeviceptr y, CUdeviceptr x, long n) {
        if (n == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.ADD_F32), grid1d(n), 256, 0, p(y), p(x), l(n));
    }

    /** {@code f32_to_bf16}: {@code out (bf16) = round(x)}, n elements. */
    public void f32ToBf16(CUdeviceptr out, CUdeviceptr x, long n) {
        if (n > 0) {
            ctx.launch(fn(CudaKernels.F32_TO_BF16), grid1d(n), 256, 0, p(out), p(x), l(n));
        }
    }

    /** {@code bf16_to_f32}: {@code out = float(x (bf16))}, n elements. */
    public void bf16ToF32(CUdeviceptr out, CUdeviceptr x, long n) {
        if (n > 0) {
            ctx.launch(fn(CudaKernels.BF16_TO_F32), grid1d(n), 256, 0, p(out), p(x), l(n));
        }
    }

    /** {@code embedding_bf16}: grid {@code (rows)}, block 256; out-of-range tokens give zeros (validate on the host). */
    public void embeddingBf16(CUdeviceptr out, CUdeviceptr table, CUdeviceptr tokens, int rows, int dim, int vocab,
                              int outStride) {
        if (rows == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.EMBEDDING_BF16), rows, 256, 0,
            p(out), p(table), p(tokens), i(rows), i(dim), i(vocab), i(outStride));
    }

    // ---------------------------------------------------------------- attention

    /** {@code kv_write}: grid {@code (rows)}, block 128; {@code rowSeq} nullable (row i → sequence i). */
    public void kvWrite(PagedKv kv, CUdeviceptr k, int kStride, CUdeviceptr v, int vStride, CUdeviceptr rowSeq,
                        CUdeviceptr positions, int rows, int kvDim) {
        if (rows == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.KV_WRITE), rows, 128, 0,
            p(kv.kCache()), p(kv.vCache()), p(k), p(v), p(kv.blockTables()), p(rowSeq), p(positions),
            i(rows), i(kvDim), i(kv.blockSize()), i(kv.maxBlocks()), i(kStride), i(vStride));
    }

    /**
     * {@code attention_prefill}: grid {@code (kvHeads · ceil(group / hc), ceil(rows / tr))}, block 128,
     * dynamic shared memory {@code 4·(80·headDim + 32)} (the function's limit is raised first when
     * above 48 KB).
     *
     * <p>README ambiguity: it writes "row i attends {@code [from_i, positions[i]]}" without defining
     * {@code from_i} for prefill; we read it as {@code max(0, positions[i] + 1 − window)} for
     * {@code window > 0}, else 0 (the sliding-window rule in the attention section's preamble).
     */
    public void attentionPrefill(CUdeviceptr out, int outStride, CUdeviceptr q, int qStride, PagedKv kv, CUdeviceptr rowSeq,
                                 CUdeviceptr positions, int rows, Heads h, int window, float scale) {
        int heads = h.heads();
        int kvHeads = h.kvHeads();
        int headDim = h.headDim();
        checkAttention(heads, kvHeads, headDim);
        if (rows == 0) {
            return;
        }
        int shared = CudaKernels.attentionSharedBytes(headDim);
        CUfunction f = sharedFn(CudaKernels.ATTENTION_PREFILL, shared);
        ctx.launch(f, CudaKernels.attentionGridX(heads, kvHeads),
            ceilDiv(rows, CudaKernels.attentionPrefillRows(heads, kvHeads)), 1, CudaKernels.ATTENTION_THREADS, 1, 1, shared,
            p(out), p(q), p(kv.kCache()), p(kv.vCache()), p(kv.blockTables()), p(rowSeq), p(positions), i(rows), i(heads),
            i(kvHeads), i(headDim), i(kv.blockSize()), i(kv.maxBlocks()), i(qStride), i(outStride), i(window), f(scale));
    }

    /** Partitions of {@code attention_decode}: {@code ceil(maxAttended / partitionSize)}, at least 1. */
    public static int decodeParts(int maxAttended, int partitionSize) {
        return Math.max(1, ceilDiv(maxAttended, partitionSize));
    }

    /**
     * {@code attention_decode} (and {@code attention_decode_reduce} when {@code parts > 1}): grid
     * {@code (kvHeads · ceil(group / hc), rows, parts)}, block 128, shared memory as prefill.
     * {@code parts} must be {@link #decodeParts} of the largest {@code lengths[i] − from_i} (the
     * README calls it a grid dimension that defines the work); scratch as {@link DecodeParts} says.
     *
     * <p>README ambiguity: {@code parts} is not a kernel argument, so the kernel must take it from
     * {@code gridDim.z}; and with {@code parts == 1} it "writes out" directly, so the reduce is
     * skipped. Also unspecified: what {@code out} holds for a row with {@code lengths[i] == 0}
     * (parts == 1 path); the tests never send one.
     */
    public void attentionDecode(CUdeviceptr out, int outStride, CUdeviceptr q, int qStride, PagedKv kv, CUdeviceptr lengths,
                                int rows, Heads h, int window, float scale, DecodeParts split) {
        int heads = h.heads();
        int kvHeads = h.kvHeads();
        int headDim = h.headDim();
        int parts = split.count();
        int partitionSize = split.size();
        CUdeviceptr partOut = split.partOut();
        CUdeviceptr partMl = split.partMl();
        checkAttention(heads, kvHeads, headDim);
        if (parts < 1 || partitionSize < 1) {
            throw new IllegalArgumentException("parts " + parts + " and partition size " + partitionSize + " must be >= 1");
        }
        if (parts > 1 && (partOut == null || partMl == null)) {
            throw new IllegalArgumentException("attention_decode with " + parts + " partitions needs part_out and part_ml");
        }
        if (rows == 0) {
            return;
        }
        int shared = CudaKernels.attentionSharedBytes(headDim);
        CUfunction f = sharedFn(CudaKernels.ATTENTION_DECODE, shared);
        ctx.launch(f, CudaKernels.attentionGridX(heads, kvHeads), rows, parts, CudaKernels.ATTENTION_THREADS, 1, 1, shared,
            p(out), p(partOut), p(partMl), p(q), p(kv.kCache()), p(kv.vCache()), p(kv.blockTables()), p(lengths), i(rows),
            i(heads), i(kvHeads), i(headDim), i(kv.blockSize()), i(kv.maxBlocks()), i(qStride), i(outStride), i(window),
            i(partitionSize), f(scale));
        if (parts > 1) {
            attentionDecodeReduce(out, partOut, partMl, rows, heads, headDim, parts, outStride);
        }
    }

    /** {@code attention_decode_reduce}: grid {@code (heads, rows)}, block 128. */
    public void attentionDecodeReduce(CUdeviceptr out, CUdeviceptr partOut, CUdeviceptr partMl, int rows, int heads,
                                      int headDim, int parts, int outStride) {
        if (rows == 0) {
            return;
        }
        ctx.launch(fn(CudaKernels.ATTENTION_DECODE_REDUCE), heads, rows, 1, CudaKernels.ATTENTION_THREADS, 1, 1, 0,
            p(out), p(partOut), p(partMl), i(rows), i(heads), i(headDim), i(parts), i(outStride));
    }

    private static void checkAttention(int heads, int kvHeads, int headDim) {
        if (kvHeads < 1 || heads % kvHeads != 0) {
            throw new IllegalArgumentException(heads + " heads are not a multiple of " + kvHeads + " kv heads");
        }
        if ((headDim & 1) != 0 || headDim > CudaKernels.ATTENTION_MAX_HEAD_DIM) {
            throw new IllegalArgumentException("attention needs an even head_dim <= "
                + CudaKernels.ATTENTION_MAX_HEAD_DIM + ", got " + headDim);
        }
    }

    // ---------------------------------------------------------------- sampling helpers

    /** {@code argmax_rows}: grid {@code (rows)}, block 256; {@code val} nullable. */
    public void argmaxRows(CUdeviceptr idx, CUdeviceptr val, CUdeviceptr logits, int rows, int vocab, int stride) {
        if (rows > 0) {
            ctx.launch(fn(CudaKernels.ARGMAX_ROWS), rows, 256, 0, p(idx), p(val), p(logits), i(rows), i(vocab), i(stride));
        }
    }

    /** {@code logsumexp_rows}: grid {@code (rows)}, block 256. */
    public void logsumexpRows(CUdeviceptr lse, CUdeviceptr logits, int rows, int vocab, int stride) {
        if (rows > 0) {
            ctx.launch(fn(CudaKernels.LOGSUMEXP_ROWS), rows, 256, 0, p(lse), p(logits), i(rows), i(vocab), i(stride));
        }
    }

    /** {@code softmax_rows}: grid {@code (rows)}, block 256; probs may alias logits. */
    public void softmaxRows(CUdeviceptr probs, CUdeviceptr logits, int rows, int vocab, int probsStride, int logitsStride,
                            float invTemperature) {
        if (rows > 0) {
            ctx.launch(fn(CudaKernels.SOFTMAX_ROWS), rows, 256, 0,
                p(probs), p(logits), i(rows), i(vocab), i(probsStride), i(logitsStride), f(invTemperature));
        }
    }

    // ---------------------------------------------------------------- helpers

    private CUfunction fn(String name) {
        return kernels.function(name);
    }

    /** The function, with its dynamic shared memory limit raised (never lowered) when {@code bytes} exceeds 48 KB. */
    private CUfunction sharedFn(String name, int bytes) {
        CUfunction f = fn(name);
        if (bytes > CudaKernels.DEFAULT_SHARED_BYTES && bytes > sharedLimit.getOrDefault(name, 0)) {
            synchronized (sharedLimit) {
                if (bytes > sharedLimit.getOrDefault(name, 0)) {
                    ctx.makeCurrent();
                    CudaDevice.check(JCudaDriver.cuFuncSetAttribute(f,
                        CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
                        "cuFuncSetAttribute(" + name + ", max dynamic shared " + bytes + ")");
                    sharedLimit.put(name, bytes);
                }
            }
        }
        return f;
    }

    /** A 1-D grid for grid-stride kernels: {@code min(ceil(n / 256), 65535)}. */
    private static int grid1d(long n) {
        return (int) Math.min((n + 255) / 256, 65535);
    }

    private static Pointer p(CUdeviceptr d) {
        return Pointer.to(d == null ? new CUdeviceptr() : d);
    }

    private static Pointer i(int v) {
        return Pointer.to(new int[] {v});
    }

    private static Pointer l(long v) {
        return Pointer.to(new long[] {v});
    }

    private static Pointer f(float v) {
        return Pointer.to(new float[] {v});
    }
}
