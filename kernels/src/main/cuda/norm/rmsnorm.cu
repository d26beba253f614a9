// RMSNorm as in HF Llama and the CPU Ops.rmsNorm:
//   out[j][c] = x[src][c] · (1 / sqrt(mean_c(x[src][c]²) + eps)) · weight[c]
//   src = row_index[j] when row_index is not null (gathers, e.g. the rows that want logits), else j
// The sum of squares is accumulated in double, like the CPU path.
#include "../common.cuh"

// grid (rows), block 256 (any multiple of 32 up to 1024).
LG_KERNEL void __launch_bounds__(1024)
rmsnorm(float* out, const float* x, const float* weight, const int* row_index, int rows, int n, int x_stride,
        int out_stride, float eps) {
    __shared__ double scratch[32];
    const int j = blockIdx.x;
    if (j >= rows) {
        return;
    }
    const int src = row_index != nullptr ? row_index[j] : j;
    const float* xr = x + (size_t)src * x_stride;
    float* orow = out + (size_t)j * out_stride;
    double ss = 0.0;
    for (int c = threadIdx.x; c < n; c += blockDim.x) {
        const double v = xr[c];
        ss += v * v;
    }
    ss = lg::block_sum(ss, scratch);
    const float inv = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int c = threadIdx.x; c < n; c += blockDim.x) {
        orow[c] = __fmul_rn(__fmul_rn(xr[c], inv), weight[c]);
    }
}
