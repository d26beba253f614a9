package dev.loragateway.kernels.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.util.List;

/**
 * Names and launch constants of the CUDA kernels built into the fatbin resource
 * {@link #FATBIN_RESOURCE}. The contract (arguments, layouts, grid and block shapes, shared
 * memory) is {@code kernels/src/main/cuda/README.md}; every kernel is {@code extern "C"}, so a
 * name here is what {@code cuModuleGetFunction} takes. A unit test checks that {@link #NAMES},
 * the README, the CUDA sources and the built fatbin agree.
 *
 * <p>Launch-shape helpers below encode the grid formulas of the README so the launcher and the
 * kernels cannot drift apart; each names the kernels it serves.
 */
public final class CudaKernels {
    /** Classpath resource of the fatbin (SASS sm_80, sm_90, PTX compute_90); absent when built without nvcc. */
    public static final String FATBIN_RESOURCE = "/cuda/lora-gateway.fatbin";

    // LoRA, float32 slot pool
    public static final String LORA_SGMV_SHRINK_F32 = "lora_sgmv_shrink_f32";
    public static final String LORA_SGMV_EXPAND_F32 = "lora_sgmv_expand_f32";
    public static final String LORA_BGMV_SHRINK_F32 = "lora_bgmv_shrink_f32";
    public static final String LORA_BGMV_EXPAND_F32 = "lora_bgmv_expand_f32";
    // LoRA, bf16 slot pool
    public static final String LORA_SGMV_SHRINK_BF16 = "lora_sgmv_shrink_bf16";
    public static final String LORA_SGMV_EXPAND_BF16 = "lora_sgmv_expand_bf16";
    public static final String LORA_BGMV_SHRINK_BF16 = "lora_bgmv_shrink_bf16";
    public static final String LORA_BGMV_EXPAND_BF16 = "lora_bgmv_expand_bf16";
    // base projections
    public static final String GEMM_BF16 = "gemm_bf16";
    public static final String GEMV_BF16 = "gemv_bf16";
    // norm, rope, element-wise
    public static final String RMSNORM = "rmsnorm";
    public static final String ROPE_NEOX = "rope_neox";
    public static final String SILU_MUL = "silu_mul";
    public static final String ADD_F32 = "add_f32";
    public static final String F32_TO_BF16 = "f32_to_bf16";
    public static final String BF16_TO_F32 = "bf16_to_f32";
    public static final String EMBEDDING_BF16 = "embedding_bf16";
    // attention over the paged KV cache
    public static final String KV_WRITE = "kv_write";
    public static final String ATTENTION_PREFILL = "attention_prefill";
    public static final String ATTENTION_DECODE = "attention_decode";
    public static final String ATTENTION_DECODE_REDUCE = "attention_decode_reduce";
    // sampling helpers
    public static final String ARGMAX_ROWS = "argmax_rows";
    public static final String LOGSUMEXP_ROWS = "logsumexp_rows";
    public static final String SOFTMAX_ROWS = "softmax_rows";

    /** Every kernel of the fatbin, in README order. Do not modify; {@link #names()} is the read-only view. */
    public static final String[] NAMES = {
        LORA_SGMV_SHRINK_F32, LORA_SGMV_SHRINK_BF16, LORA_SGMV_EXPAND_F32, LORA_SGMV_EXPAND_BF16,
        LORA_BGMV_SHRINK_F32, LORA_BGMV_SHRINK_BF16, LORA_BGMV_EXPAND_F32, LORA_BGMV_EXPAND_BF16,
        GEMM_BF16, GEMV_BF16,
        RMSNORM, ROPE_NEOX, SILU_MUL, ADD_F32, F32_TO_BF16, BF16_TO_F32, EMBEDDING_BF16,
        KV_WRITE, ATTENTION_PREFILL, ATTENTION_DECODE, ATTENTION_DECODE_REDUCE,
        ARGMAX_ROWS, LOGSUMEXP_ROWS, SOFTMAX_ROWS,
    };

    /** Threads per block of the LoRA kernels. */
    public static final int LORA_THREADS = 256;
    /** Rows of one segment per SGMV block: grid y = ceil(longest segment / this). */
    public static final int LORA_SGMV_ROWS = 16;
    /** Output columns per expand block: grid z (SGMV) or y (BGMV) = ceil(out / this). */
    public static final int LORA_EXPAND_COLS = 256;
    /** Threads per block of gemm_bf16 and gemv_bf16. */
    public static final int GEMM_THREADS = 256;
    /** Rows per gemm_bf16 block (grid y). */
    public static final int GEMM_ROWS = 64;
    /** Outputs per gemm_bf16 block (grid x). */
    public static final int GEMM_OUTS = 128;
    /** Outputs per gemv_bf16 block (grid x). */
    public static final int GEMV_OUTS = 16;
    /** Largest row count for which gemv_bf16 reads W once; use gemm_bf16 above it. */
    public static final int GEMV_MAX_ROWS = 8;
    /** Threads per block of attention_prefill and attention_decode. */
    public static final int ATTENTION_THREADS = 128;
    /** Largest head_dim the attention kernels take. */
    public static final int ATTENTION_MAX_HEAD_DIM = 256;
    /** Query vectors per attention block. */
    public static final int ATTENTION_VECTORS = 16;
    /** Dynamic shared memory a kernel may use without raising its limit. */
    public static final int DEFAULT_SHARED_BYTES = 48 * 1024;

    private CudaKernels() {
    }

    /** {@link #NAMES} as an unmodifiable list. */
    public static List<String> names() {
        return List.of(NAMES);
    }

    /** The fatbin's bytes for {@code cuModuleLoadData}, or null when the build had no nvcc. */
    public static byte[] fatbin() throws IOException {
        try (InputStream in = CudaKernels.class.getResourceAsStream(FATBIN_RESOURCE)) {
            return in == null ? null : in.readAllBytes();
        }
    }

    /** {@code ceil(a / b)} for positive b. */
    public static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /**
     * Dynamic shared memory of attention_prefill and attention_decode: {@code 4·(80·headDim + 32)}
     * bytes; above {@link #DEFAULT_SHARED_BYTES} raise the function's
     * {@code CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES} first.
     */
    public static int attentionSharedBytes(int headDim) {
        return 4 * (80 * headDim + 32);
    }

    /** Query heads per attention block: {@code min(heads / kvHeads, 16)}. */
    public static int attentionHeadChunk(int heads, int kvHeads) {
        return Math.min(heads / kvHeads, ATTENTION_VECTORS);
    }

    /** Grid x of attention_prefill and attention_decode: {@code kvHeads · ceil(group / chunk)}. */
    public static int attentionGridX(int heads, int kvHeads) {
        return kvHeads * ceilDiv(heads / kvHeads, attentionHeadChunk(heads, kvHeads));
    }

    /** Query rows per attention_prefill block: grid y = ceil(rows / this). */
    public static int attentionPrefillRows(int heads, int kvHeads) {
        return ATTENTION_VECTORS / attentionHeadChunk(heads, kvHeads);
    }
}
