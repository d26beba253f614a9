// Rotary position embedding, HF Llama's rotate_half ("neox") convention, as the CPU Rope class:
// for each head vector h of a row at position p and each i < d/2, with f_i = inv_freq[i]
//   x'[i]       = x[i]·cos(p·f_i) − x[i+d/2]·sin(p·f_i)
//   x'[i + d/2] = x[i+d/2]·cos(p·f_i) + x[i]·sin(p·f_i)
// inv_freq is the host's double array (θ^(−2i/d), already rescaled for llama3 rope_scaling), so
// every scaling scheme is the host's business. The angle and its cos/sin are computed in double
// and rounded to float, and the products are not fused, as in the CPU code.
#include "../common.cuh"

constexpr int LG_ROPE_MAX_HALF = 256;  // head_dim up to 512

// grid (rows), block 128 (any multiple of 32). q: (rows, q_stride), heads × head_dim from the row
// start; k: (rows, k_stride), kv_heads × head_dim (k may be null with kv_heads 0). In place.
LG_KERNEL void __launch_bounds__(1024)
rope_neox(float* q, float* k, const int* positions, const double* inv_freq, int rows, int heads, int kv_heads,
          int head_dim, int q_stride, int k_stride) {
    __shared__ float cs[LG_ROPE_MAX_HALF];
    __shared__ float sn[LG_ROPE_MAX_HALF];
    const int row = blockIdx.x;
    if (row >= rows) {
        return;
    }
    const int half = head_dim / 2;
    const double pos = (double)positions[row];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos(pos * inv_freq[i], &s, &c);
        cs[i] = (float)c;
        sn[i] = (float)s;
    }
    __syncthreads();
    const int pairs = (heads + kv_heads) * half;
    for (int e = threadIdx.x; e < pairs; e += blockDim.x) {
        const int h = e / half;
        const int i = e - h * half;
        float* v = h < heads ? q + (size_t)row * q_stride + (size_t)h * head_dim
                             : k + (size_t)row * k_stride + (size_t)(h - heads) * head_dim;
        const float x1 = v[i];
        const float x2 = v[i + half];
        v[i] = __fsub_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x2, sn[i]));
        v[i + half] = __fadd_rn(__fmul_rn(x2, cs[i]), __fmul_rn(x1, sn[i]));
    }
}
