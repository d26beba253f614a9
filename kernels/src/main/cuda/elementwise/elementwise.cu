// Element-wise kernels over float32 activations, and the bf16 embedding gather.
// The 1-D kernels use a grid-stride loop: any grid works; ceil(n / 256) blocks of 256 (capped,
// e.g. at 65535) is the intended launch.
#include "../common.cuh"

// out[r][c] = silu(gate[r][c]) · up[r][c], silu(g) = g / (1 + e^−g); out may alias gate or up
// (same stride). (rows, cols) with row strides.
LG_KERNEL void __launch_bounds__(1024)
silu_mul(float* out, const float* gate, const float* up, int rows, int cols, int out_stride, int gate_stride,
         int up_stride) {
    const long long n = (long long)rows * cols;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        const int r = (int)(e / cols);
        const int c = (int)(e - (long long)r * cols);
        const float g = gate[(size_t)r * gate_stride + c];
        const float u = up[(size_t)r * up_stride + c];
        out[(size_t)r * out_stride + c] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.f, expf(-g))), u);
    }
}

// y[i] += x[i] for i < n (the residual add).
LG_KERNEL void __launch_bounds__(1024)
add_f32(float* y, const float* x, long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        y[e] += x[e];
    }
}

// out[i] = bf16(x[i]) (round to nearest even).
LG_KERNEL void __launch_bounds__(1024)
f32_to_bf16(__nv_bfloat16* out, const float* x, long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        out[e] = __float2bfloat16_rn(x[e]);
    }
}

// out[i] = float(x[i]).
LG_KERNEL void __launch_bounds__(1024)
bf16_to_f32(float* out, const __nv_bfloat16* x, long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        out[e] = __bfloat162float(x[e]);
    }
}

// out[r][c] = table[tokens[r]][c] for c < dim: a bf16 (vocab, dim) table gathered into float32 rows.
// A token outside [0, vocab) yields a row of zeros (the host validates tokens first).
// grid (rows), block 256 (any multiple of 32).
LG_KERNEL void __launch_bounds__(1024)
embedding_bf16(float* out, const __nv_bfloat16* table, const int* tokens, int rows, int dim, int vocab,
               int out_stride) {
    const int r = blockIdx.x;
    if (r >= rows) {
        return;
    }
    const int t = tokens[r];
    float* o = out + (size_t)r * out_stride;
    if (t < 0 || t >= vocab) {
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            o[c] = 0.f;
        }
        return;
    }
    const __nv_bfloat16* src = table + (size_t)t * dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        o[c] = __bfloat162float(src[c]);
    }
}
