// Multi-adapter LoRA: SGMV (segments of rows sharing an adapter, prefill) and BGMV (one adapter
// index per row, decode), each as shrink (in -> r) and expand (r -> out), mixed ranks in one launch.
//
//   shrink: v[z][i][k]  = scale(s) · Σ_{j in split z} x[i][j] · A_s[k][j]     k < rank(s)
//   expand: y[i][o]    += Σ_{k < rank(s)} (Σ_z v[z][i][k]) · Bᵀ_s[k][o]
//   s = the row's slot; rows with slot -1, or whose slot has rank 0 for this (layer, module), are
//   skipped by both (their v is neither written nor read, their y is untouched).
//
// Weights come from a device slot pool laid out like the CPU LoraSlotPool's float path: for each
// (slot, layer, module) A (rank × in) row-major at element offset off_a and Bᵀ (rank × out)
// row-major at off_b, offsets absolute from the pool's base, in elements of the pool's type
// (float32 or bf16: one kernel per type). The shrink's input dimension can be split across
// blocks (grid z or y); each split writes its own plane of v and the expand sums the planes in a
// fixed order, so results are deterministic and v needs no zeroing.
#include "../common.cuh"

namespace lg {
namespace lora {

constexpr int THREADS = 256;
constexpr int ROWS = 16;         // rows of a segment per SGMV block
constexpr int TK = 32;           // input columns per shared-memory tile (shrink)
constexpr int SHRINK_RC = 64;    // ranks per shrink pass: ROWS·SHRINK_RC = 4·THREADS outputs
constexpr int EXPAND_RC = 128;   // ranks of v staged per expand pass
constexpr int EXPAND_COLS = THREADS;  // output columns per expand block, one per thread

struct Part {
    long long a;
    long long b;
    int rank;
    float scale;
};

__device__ __forceinline__ Part part(int slot, int lm_count, int lm, const int* rank, const float* scale,
                                     const long long* off_a, const long long* off_b) {
    const size_t e = (size_t)slot * lm_count + lm;
    return Part{off_a[e], off_b[e], rank[e], scale[e]};
}

// Input columns [k0, k1) of split z of n splits: chunks of ceil(in / n) rounded up to 32.
__device__ __forceinline__ void split_range(int in, int splits, int z, int& k0, int& k1) {
    int chunk = (in + splits - 1) / splits;
    chunk = (chunk + 31) & ~31;
    const long long start = (long long)z * chunk;
    k0 = start < in ? (int)start : in;
    k1 = min(in, k0 + chunk);
}

__device__ __forceinline__ void load16(const __nv_bfloat16* p, float (&f)[8]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    f[0] = bf16_lo(u.x); f[1] = bf16_hi(u.x);
    f[2] = bf16_lo(u.y); f[3] = bf16_hi(u.y);
    f[4] = bf16_lo(u.z); f[5] = bf16_hi(u.z);
    f[6] = bf16_lo(u.w); f[7] = bf16_hi(u.w);
}

__device__ __forceinline__ void load16(const float* p, float (&f)[4]) {
    const float4 u = *reinterpret_cast<const float4*>(p);
    f[0] = u.x; f[1] = u.y; f[2] = u.z; f[3] = u.w;
}

// One lane's share of Σ_j w[j]·x[j] for j < n (the caller sums over the warp): 16-byte loads when
// both spans are 16-byte aligned, element loads otherwise and for the tail.
template <typename W>
__device__ __forceinline__ float lane_dot(const W* w, const float* x, int n, int lane) {
    constexpr int V = 16 / sizeof(W);
    float s = 0.f;
    int done = 0;
    if (aligned16(w) && aligned16(x)) {
        const int nv = n / V * V;
#pragma unroll 4
        for (int j = lane * V; j < nv; j += 32 * V) {
            float f[V];
            load16(w + j, f);
#pragma unroll
            for (int u = 0; u < V; u += 4) {
                const float4 xv = *reinterpret_cast<const float4*>(x + j + u);
                s = fmaf(f[u], xv.x, s);
                s = fmaf(f[u + 1], xv.y, s);
                s = fmaf(f[u + 2], xv.z, s);
                s = fmaf(f[u + 3], xv.w, s);
            }
        }
        done = nv;
    }
    for (int j = done + lane; j < n; j += 32) {
        s = fmaf(to_f32(w[j]), x[j], s);
    }
    return s;
}

// grid (segments, ceil(maxSegmentRows / ROWS), splits), block THREADS.
template <typename W>
__device__ __forceinline__ void sgmv_shrink(float* v, const float* x, const W* pool, const int* lrank, const float* lscale,
                                            const long long* loff_a, const long long* loff_b, const int* seg_start,
                                            const int* seg_slot, int lm_count, int lm, int rows, int in, int x_stride,
                                            int v_stride) {
    __shared__ float xs[ROWS][TK + 1];
    __shared__ float as[SHRINK_RC][TK + 1];
    const int g = blockIdx.x;
    const int slot = seg_slot[g];
    if (slot < 0) {
        return;
    }
    const int seg_end = seg_start[g + 1];
    const int row0 = seg_start[g] + blockIdx.y * ROWS;
    if (row0 >= seg_end) {
        return;
    }
    const int nrows = min(ROWS, seg_end - row0);
    const Part p = part(slot, lm_count, lm, lrank, lscale, loff_a, loff_b);
    if (p.rank <= 0) {
        return;
    }
    int k0, k1;
    split_range(in, gridDim.z, blockIdx.z, k0, k1);
    float* vz = v + (size_t)blockIdx.z * rows * v_stride;
    const W* a = pool + p.a;
    const int tid = threadIdx.x;
    for (int rc0 = 0; rc0 < p.rank; rc0 += SHRINK_RC) {
        const int rc = min(SHRINK_RC, p.rank - rc0);
        const int nout = nrows * rc;
        // output j of this thread is (row oi[j], rank ok[j]); those past nout are computed on a
        // clamped row and never stored, which keeps the inner loop free of branches
        int oi[4], ok[4];
        float acc[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int o = tid + j * THREADS;
            oi[j] = min(o / rc, ROWS - 1);
            ok[j] = o % rc;
            acc[j] = 0.f;
        }
        for (int kt = k0; kt < k1; kt += TK) {
            for (int e = tid; e < ROWS * TK; e += THREADS) {
                const int i = e / TK;
                const int c = e % TK;
                const int col = kt + c;
                xs[i][c] = (i < nrows && col < k1) ? x[(size_t)(row0 + i) * x_stride + col] : 0.f;
            }
            for (int e = tid; e < rc * TK; e += THREADS) {
                const int k = e / TK;
                const int c = e % TK;
                const int col = kt + c;
                as[k][c] = col < k1 ? to_f32(a[(size_t)(rc0 + k) * in + col]) : 0.f;
            }
            __syncthreads();
#pragma unroll
            for (int c = 0; c < TK; c++) {
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    acc[j] = fmaf(xs[oi[j]][c], as[ok[j]][c], acc[j]);
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (tid + j * THREADS < nout) {
                vz[(size_t)(row0 + oi[j]) * v_stride + rc0 + ok[j]] = acc[j] * p.scale;
            }
        }
    }
}

// grid (segments, ceil(maxSegmentRows / ROWS), ceil(out / EXPAND_COLS)), block THREADS.
template <typename W>
__device__ __forceinline__ void sgmv_expand(float* y, const float* v, const W* pool, const int* lrank, const float* lscale,
                                            const long long* loff_a, const long long* loff_b, const int* seg_start,
                                            const int* seg_slot, int lm_count, int lm, int rows, int out, int v_stride,
                                            int y_stride, int splits) {
    __shared__ float vs[ROWS][EXPAND_RC];
    const int g = blockIdx.x;
    const int slot = seg_slot[g];
    if (slot < 0) {
        return;
    }
    const int seg_end = seg_start[g + 1];
    const int row0 = seg_start[g] + blockIdx.y * ROWS;
    if (row0 >= seg_end) {
        return;
    }
    const int nrows = min(ROWS, seg_end - row0);
    const Part p = part(slot, lm_count, lm, lrank, lscale, loff_a, loff_b);
    if (p.rank <= 0) {
        return;
    }
    const int tid = threadIdx.x;
    const int o = blockIdx.z * EXPAND_COLS + tid;
    const W* bt = pool + p.b;
    const size_t plane = (size_t)rows * v_stride;
    float acc[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
        acc[i] = 0.f;
    }
    for (int rc0 = 0; rc0 < p.rank; rc0 += EXPAND_RC) {
        const int rc = min(EXPAND_RC, p.rank - rc0);
        __syncthreads();  // the previous pass has finished reading vs
        for (int e = tid; e < ROWS * rc; e += THREADS) {
            const int i = e / rc;
            const int k = e % rc;
            float s = 0.f;
            if (i < nrows) {
                const float* vp = v + (size_t)(row0 + i) * v_stride + rc0 + k;
                for (int z = 0; z < splits; z++) {
                    s += vp[z * plane];
                }
            }
            vs[i][k] = s;
        }
        __syncthreads();
        if (o < out) {
            const W* bk = bt + (size_t)rc0 * out + o;
#pragma unroll 4
            for (int k = 0; k < rc; k++) {
                const float b = to_f32(bk[(size_t)k * out]);
#pragma unroll
                for (int i = 0; i < ROWS; i++) {
                    acc[i] = fmaf(vs[i][k], b, acc[i]);
                }
            }
        }
    }
    if (o < out) {
#pragma unroll
        for (int i = 0; i < ROWS; i++) {
            if (i < nrows) {
                y[(size_t)(row0 + i) * y_stride + o] += acc[i];
            }
        }
    }
}

// grid (rows, splits), block THREADS: warp w computes ranks w, w + 8, ... of its row.
template <typename W>
__device__ __forceinline__ void bgmv_shrink(float* v, const float* x, const W* pool, const int* lrank, const float* lscale,
                                            const long long* loff_a, const long long* loff_b, const int* row_slot,
                                            int lm_count, int lm, int rows, int in, int x_stride, int v_stride) {
    const int i = blockIdx.x;
    if (i >= rows) {
        return;
    }
    const int slot = row_slot[i];
    if (slot < 0) {
        return;
    }
    const Part p = part(slot, lm_count, lm, lrank, lscale, loff_a, loff_b);
    if (p.rank <= 0) {
        return;
    }
    int k0, k1;
    split_range(in, gridDim.y, blockIdx.y, k0, k1);
    float* vi = v + (size_t)blockIdx.y * rows * v_stride + (size_t)i * v_stride;
    const float* xi = x + (size_t)i * x_stride + k0;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    for (int k = warp; k < p.rank; k += THREADS / 32) {
        const float s = warp_sum(lane_dot(pool + p.a + (size_t)k * in + k0, xi, k1 - k0, lane));
        if (lane == 0) {
            vi[k] = s * p.scale;
        }
    }
}

// grid (rows, ceil(out / EXPAND_COLS)), block THREADS: one output column per thread.
template <typename W>
__device__ __forceinline__ void bgmv_expand(float* y, const float* v, const W* pool, const int* lrank, const float* lscale,
                                            const long long* loff_a, const long long* loff_b, const int* row_slot,
                                            int lm_count, int lm, int rows, int out, int v_stride, int y_stride,
                                            int splits) {
    __shared__ float vs[EXPAND_RC];
    const int i = blockIdx.x;
    if (i >= rows) {
        return;
    }
    const int slot = row_slot[i];
    if (slot < 0) {
        return;
    }
    const Part p = part(slot, lm_count, lm, lrank, lscale, loff_a, loff_b);
    if (p.rank <= 0) {
        return;
    }
    const int tid = threadIdx.x;
    const int o = blockIdx.y * EXPAND_COLS + tid;
    const size_t plane = (size_t)rows * v_stride;
    const float* vi = v + (size_t)i * v_stride;
    float acc = 0.f;
    for (int rc0 = 0; rc0 < p.rank; rc0 += EXPAND_RC) {
        const int rc = min(EXPAND_RC, p.rank - rc0);
        __syncthreads();
        for (int k = tid; k < rc; k += THREADS) {
            float s = 0.f;
            for (int z = 0; z < splits; z++) {
                s += vi[z * plane + rc0 + k];
            }
            vs[k] = s;
        }
        __syncthreads();
        if (o < out) {
            const W* bk = pool + p.b + (size_t)rc0 * out + o;
#pragma unroll 8
            for (int k = 0; k < rc; k++) {
                acc = fmaf(vs[k], to_f32(bk[(size_t)k * out]), acc);
            }
        }
    }
    if (o < out) {
        y[(size_t)i * y_stride + o] += acc;
    }
}

}  // namespace lora
}  // namespace lg

// The slot table, indexed [slot · lm_count + lm] with lm = layer · modules + module.
#define LG_LORA_TABLE_ARGS \
    const int *lora_rank, const float *lora_scale, const long long *lora_off_a, const long long *lora_off_b
#define LG_LORA_TABLE lora_rank, lora_scale, lora_off_a, lora_off_b

// ---- float32 pool ----

LG_KERNEL void __launch_bounds__(256)
lora_sgmv_shrink_f32(float* v, const float* x, const float* pool, LG_LORA_TABLE_ARGS, const int* seg_start,
                     const int* seg_slot, int lm_count, int lm, int rows, int in, int x_stride, int v_stride) {
    lg::lora::sgmv_shrink(v, x, pool, LG_LORA_TABLE, seg_start, seg_slot, lm_count, lm, rows, in, x_stride, v_stride);
}

LG_KERNEL void __launch_bounds__(256)
lora_sgmv_expand_f32(float* y, const float* v, const float* pool, LG_LORA_TABLE_ARGS, const int* seg_start,
                     const int* seg_slot, int lm_count, int lm, int rows, int out, int v_stride, int y_stride,
                     int splits) {
    lg::lora::sgmv_expand(y, v, pool, LG_LORA_TABLE, seg_start, seg_slot, lm_count, lm, rows, out, v_stride, y_stride,
                          splits);
}

LG_KERNEL void __launch_bounds__(256)
lora_bgmv_shrink_f32(float* v, const float* x, const float* pool, LG_LORA_TABLE_ARGS, const int* row_slot,
                     int lm_count, int lm, int rows, int in, int x_stride, int v_stride) {
    lg::lora::bgmv_shrink(v, x, pool, LG_LORA_TABLE, row_slot, lm_count, lm, rows, in, x_stride, v_stride);
}

LG_KERNEL void __launch_bounds__(256)
lora_bgmv_expand_f32(float* y, const float* v, const float* pool, LG_LORA_TABLE_ARGS, const int* row_slot,
                     int lm_count, int lm, int rows, int out, int v_stride, int y_stride, int splits) {
    lg::lora::bgmv_expand(y, v, pool, LG_LORA_TABLE, row_slot, lm_count, lm, rows, out, v_stride, y_stride, splits);
}

// ---- bf16 pool ----

LG_KERNEL void __launch_bounds__(256)
lora_sgmv_shrink_bf16(float* v, const float* x, const __nv_bfloat16* pool, LG_LORA_TABLE_ARGS, const int* seg_start,
                      const int* seg_slot, int lm_count, int lm, int rows, int in, int x_stride, int v_stride) {
    lg::lora::sgmv_shrink(v, x, pool, LG_LORA_TABLE, seg_start, seg_slot, lm_count, lm, rows, in, x_stride, v_stride);
}

LG_KERNEL void __launch_bounds__(256)
lora_sgmv_expand_bf16(float* y, const float* v, const __nv_bfloat16* pool, LG_LORA_TABLE_ARGS, const int* seg_start,
                      const int* seg_slot, int lm_count, int lm, int rows, int out, int v_stride, int y_stride,
                      int splits) {
    lg::lora::sgmv_expand(y, v, pool, LG_LORA_TABLE, seg_start, seg_slot, lm_count, lm, rows, out, v_stride, y_stride,
                          splits);
}

LG_KERNEL void __launch_bounds__(256)
lora_bgmv_shrink_bf16(float* v, const float* x, const __nv_bfloat16* pool, LG_LORA_TABLE_ARGS, const int* row_slot,
                      int lm_count, int lm, int rows, int in, int x_stride, int v_stride) {
    lg::lora::bgmv_shrink(v, x, pool, LG_LORA_TABLE, row_slot, lm_count, lm, rows, in, x_stride, v_stride);
}

LG_KERNEL void __launch_bounds__(256)
lora_bgmv_expand_bf16(float* y, const float* v, const __nv_bfloat16* pool, LG_LORA_TABLE_ARGS, const int* row_slot,
                      int lm_count, int lm, int rows, int out, int v_stride, int y_stride, int splits) {
    lg::lora::bgmv_expand(y, v, pool, LG_LORA_TABLE, row_slot, lm_count, lm, rows, out, v_stride, y_stride, splits);
}

#undef LG_LORA_TABLE_ARGS
#undef LG_LORA_TABLE
