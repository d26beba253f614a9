// Base-model projections: y(rows, out) = x(rows, in) · Wᵀ (+ bias) (+ y), W bf16 (out, in)
// row-major as in HF safetensors, x and y float32, accumulation float32.
//
//   gemm_bf16: tensor cores (WMMA bf16 16x16x16, sm_80+). x is rounded to bf16 as it is staged
//              into shared memory; tiles of 64 rows × 128 outputs × 32 inputs, 8 warps each owning
//              32 × 32 of the tile, global loads of the next tile overlapped with the MMAs.
//   gemv_bf16: the memory-bound path for few rows (decode): each warp streams two rows of W with
//              16-byte loads and keeps x in float32 (no rounding); rows are taken 8 at a time, so
//              any row count works, but W is re-read for every 8 rows.
#include <mma.h>

#include "../common.cuh"

namespace lg {
namespace gemm {

using namespace nvcuda;

constexpr int THREADS = 256;
constexpr int BM = 64;         // rows per block
constexpr int BN = 128;        // outputs per block
constexpr int BK = 32;         // inputs per stage
constexpr int LDS = BK + 8;    // bf16 row pitch of the staged tiles (80 bytes: 16-byte aligned, fewer conflicts)
constexpr int CLD = BN + 4;    // float row pitch of the epilogue tile
constexpr int A_STAGE = BM * LDS;  // bf16 elements per stage
constexpr int B_STAGE = BN * LDS;
constexpr int SMEM_TILES = 2 * (A_STAGE + B_STAGE) * 2;  // bytes, double buffered
constexpr int SMEM_EPILOGUE = BM * CLD * 4;
constexpr int SMEM_BYTES = SMEM_TILES > SMEM_EPILOGUE ? SMEM_TILES : SMEM_EPILOGUE;

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x (lo) at the lower address
    return *reinterpret_cast<const uint32_t*>(&h);
}

// The next stage's global data held in registers: 2 × 4 floats of x (as bf16) and 2 × 8 bf16 of W per thread.
struct Stage {
    uint2 x[2];
    uint4 w[2];
};

__device__ __forceinline__ void load_stage(Stage& s, const float* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                                           int rows, int out, int in, int x_stride, int m0, int n0, int k0, bool vec) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int e = tid + j * THREADS;  // 0..511: 64 rows × 8 chunks of 4
        const int row = m0 + (e >> 3);
        const int col = k0 + ((e & 7) << 2);
        float f0 = 0.f, f1 = 0.f, f2 = 0.f, f3 = 0.f;
        if (row < rows) {
            const float* p = x + (size_t)row * x_stride + col;
            if (vec) {
                if (col < in) {
                    const float4 v = *reinterpret_cast<const float4*>(p);
                    f0 = v.x; f1 = v.y; f2 = v.z; f3 = v.w;
                }
            } else {
                if (col < in) f0 = p[0];
                if (col + 1 < in) f1 = p[1];
                if (col + 2 < in) f2 = p[2];
                if (col + 3 < in) f3 = p[3];
            }
        }
        s.x[j] = make_uint2(pack_bf16x2(f0, f1), pack_bf16x2(f2, f3));
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int e = tid + j * THREADS;  // 0..511: 128 outputs × 4 chunks of 8
        const int n = n0 + (e >> 2);
        const int col = k0 + ((e & 3) << 3);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (n < out) {
            const __nv_bfloat16* p = w + (size_t)n * in + col;
            if (vec) {
                if (col < in) {
                    v = *reinterpret_cast<const uint4*>(p);
                }
            } else {
                const unsigned short* q = reinterpret_cast<const unsigned short*>(p);
                uint32_t h[8];
#pragma unroll
                for (int u = 0; u < 8; u++) {
                    h[u] = col + u < in ? q[u] : 0u;
                }
                v = make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
            }
        }
        s.w[j] = v;
    }
}

__device__ __forceinline__ void store_stage(const Stage& s, __nv_bfloat16* as, __nv_bfloat16* bs) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int e = tid + j * THREADS;
        *reinterpret_cast<uint2*>(as + (e >> 3) * LDS + ((e & 7) << 2)) = s.x[j];
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int e = tid + j * THREADS;
        *reinterpret_cast<uint4*>(bs + (e >> 2) * LDS + ((e & 3) << 3)) = s.w[j];
    }
}

// y[i][o] = Σ_k x[i][k]·W[o][k] + bias[o] (when bias) + y[i][o] (when accumulate).
__device__ __forceinline__ float epilogue(float acc, float* y, const float* bias, int o, int accumulate) {
    if (bias != nullptr) {
        acc += bias[o];
    }
    return accumulate ? *y + acc : acc;
}

// grid (ceil(out / BN), ceil(rows / BM)), block THREADS.
__device__ __forceinline__ void gemm(float* y, const float* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                                     const float* bias, int rows, int out, int in, int x_stride, int y_stride,
                                     int accumulate) {
    __shared__ __align__(128) unsigned char smem[SMEM_BYTES];
    __nv_bfloat16* as = reinterpret_cast<__nv_bfloat16*>(smem);  // [2][BM][LDS]
    __nv_bfloat16* bs = as + 2 * A_STAGE;                        // [2][BN][LDS]
    float* cs = reinterpret_cast<float*>(smem);                  // [BM][CLD], after the main loop

    const int n0 = blockIdx.x * BN;
    const int m0 = blockIdx.y * BM;
    const int warp = threadIdx.x >> 5;
    const int wm = warp >> 2;  // 0..1: rows wm·32 .. +32
    const int wn = warp & 3;   // 0..3: outputs wn·32 .. +32
    const bool vec = (in & 7) == 0 && (x_stride & 3) == 0 && aligned16(x) && aligned16(w);

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            wmma::fill_fragment(acc[i][j], 0.f);
        }
    }

    const int tiles = (in + BK - 1) / BK;
    Stage st;
    load_stage(st, x, w, rows, out, in, x_stride, m0, n0, 0, vec);
    store_stage(st, as, bs);
    __syncthreads();
    for (int t = 0; t < tiles; t++) {
        const int buf = t & 1;
        if (t + 1 < tiles) {
            load_stage(st, x, w, rows, out, in, x_stride, m0, n0, (t + 1) * BK, vec);
        }
        const __nv_bfloat16* a = as + buf * A_STAGE;
        const __nv_bfloat16* b = bs + buf * B_STAGE;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                wmma::load_matrix_sync(fa[i], a + (wm * 32 + i * 16) * LDS + kk, LDS);
            }
#pragma unroll
            for (int j = 0; j < 2; j++) {
                // W tile stored [n][k] is B = Wᵀ in column-major order
                wmma::load_matrix_sync(fb[j], b + (wn * 32 + j * 16) * LDS + kk, LDS);
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
                }
            }
        }
        if (t + 1 < tiles) {
            // buffer buf ^ 1 was last read in iteration t - 1, before the barrier that ended it
            store_stage(st, as + (buf ^ 1) * A_STAGE, bs + (buf ^ 1) * B_STAGE);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * CLD + wn * 32 + j * 16, acc[i][j], CLD, wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BM * BN; e += THREADS) {
        const int r = e / BN;
        const int c = e % BN;
        const int row = m0 + r;
        const int o = n0 + c;
        if (row < rows && o < out) {
            float* yp = y + (size_t)row * y_stride + o;
            *yp = epilogue(cs[r * CLD + c], yp, bias, o, accumulate);
        }
    }
}

constexpr int GEMV_OPW = 2;                                // outputs per warp
constexpr int GEMV_OUTS = THREADS / 32 * GEMV_OPW;         // outputs per block
constexpr int GEMV_MAX_ROWS = 8;                           // rows per pass over W

__device__ __forceinline__ void load8(const __nv_bfloat16* p, float (&f)[8]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    f[0] = bf16_lo(u.x); f[1] = bf16_hi(u.x);
    f[2] = bf16_lo(u.y); f[3] = bf16_hi(u.y);
    f[4] = bf16_lo(u.z); f[5] = bf16_hi(u.z);
    f[6] = bf16_lo(u.w); f[7] = bf16_hi(u.w);
}

// Outputs o0, o0 + 1 of rows r0 .. r0 + R by one warp.
template <int R>
__device__ __forceinline__ void gemv_rows(float* y, const float* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                                          const float* bias, int r0, int out, int in, int x_stride, int y_stride,
                                          int accumulate, int o0, bool vec, int lane) {
    float acc[R][GEMV_OPW];
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int q = 0; q < GEMV_OPW; q++) {
            acc[r][q] = 0.f;
        }
    }
    // outputs past the end read the last row of W and are never stored
    const __nv_bfloat16* wq[GEMV_OPW];
#pragma unroll
    for (int q = 0; q < GEMV_OPW; q++) {
        wq[q] = w + (size_t)min(o0 + q, out - 1) * in;
    }
    const float* xr = x + (size_t)r0 * x_stride;
    if (vec) {
#pragma unroll 2
        for (int j = lane * 8; j < in; j += 32 * 8) {
            float wf[GEMV_OPW][8];
#pragma unroll
            for (int q = 0; q < GEMV_OPW; q++) {
                load8(wq[q] + j, wf[q]);
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float4 a = __ldg(reinterpret_cast<const float4*>(xr + (size_t)r * x_stride + j));
                const float4 b = __ldg(reinterpret_cast<const float4*>(xr + (size_t)r * x_stride + j + 4));
#pragma unroll
                for (int q = 0; q < GEMV_OPW; q++) {
                    float s = acc[r][q];
                    s = fmaf(wf[q][0], a.x, s);
                    s = fmaf(wf[q][1], a.y, s);
                    s = fmaf(wf[q][2], a.z, s);
                    s = fmaf(wf[q][3], a.w, s);
                    s = fmaf(wf[q][4], b.x, s);
                    s = fmaf(wf[q][5], b.y, s);
                    s = fmaf(wf[q][6], b.z, s);
                    s = fmaf(wf[q][7], b.w, s);
                    acc[r][q] = s;
                }
            }
        }
    } else {
        for (int j = lane; j < in; j += 32) {
            float wf[GEMV_OPW];
#pragma unroll
            for (int q = 0; q < GEMV_OPW; q++) {
                wf[q] = __bfloat162float(wq[q][j]);
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float a = xr[(size_t)r * x_stride + j];
#pragma unroll
                for (int q = 0; q < GEMV_OPW; q++) {
                    acc[r][q] = fmaf(wf[q], a, acc[r][q]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int q = 0; q < GEMV_OPW; q++) {
            const float s = warp_sum(acc[r][q]);
            if (lane == 0 && o0 + q < out) {
                float* yp = y + (size_t)(r0 + r) * y_stride + o0 + q;
                *yp = epilogue(s, yp, bias, o0 + q, accumulate);
            }
        }
    }
}

// grid (ceil(out / GEMV_OUTS)), block THREADS.
__device__ __forceinline__ void gemv(float* y, const float* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                                     const float* bias, int rows, int out, int in, int x_stride, int y_stride,
                                     int accumulate) {
    const int lane = threadIdx.x & 31;
    const int o0 = blockIdx.x * GEMV_OUTS + (threadIdx.x >> 5) * GEMV_OPW;
    if (o0 >= out) {
        return;
    }
    const bool vec = (in & 7) == 0 && (x_stride & 3) == 0 && aligned16(x) && aligned16(w);
    for (int r0 = 0; r0 < rows; r0 += GEMV_MAX_ROWS) {
        switch (min(GEMV_MAX_ROWS, rows - r0)) {
            case 1: gemv_rows<1>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            case 2: gemv_rows<2>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            case 3: gemv_rows<3>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            case 4: gemv_rows<4>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            case 5: gemv_rows<5>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            case 6: gemv_rows<6>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            case 7: gemv_rows<7>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
            default: gemv_rows<8>(y, x, w, bias, r0, out, in, x_stride, y_stride, accumulate, o0, vec, lane); break;
        }
    }
}

}  // namespace gemm
}  // namespace lg

LG_KERNEL void __launch_bounds__(256)
gemm_bf16(float* y, const float* x, const __nv_bfloat16* w, const float* bias, int rows, int out, int in, int x_stride,
          int y_stride, int accumulate) {
    lg::gemm::gemm(y, x, w, bias, rows, out, in, x_stride, y_stride, accumulate);
}

LG_KERNEL void __launch_bounds__(256)
gemv_bf16(float* y, const float* x, const __nv_bfloat16* w, const float* bias, int rows, int out, int in, int x_stride,
          int y_stride, int accumulate) {
    lg::gemm::gemv(y, x, w, bias, rows, out, in, x_stride, y_stride, accumulate);
}
