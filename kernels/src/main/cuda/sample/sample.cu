// Row-wise reductions over logits (rows, vocab) float32, for the sampler. Greedy decoding needs
// only argmax_rows (copy back one int per row); log-probabilities need logsumexp_rows (logprob of
// token t = logit[t] − lse); temperature sampling can copy softmax_rows' probabilities back, or
// the raw logits, and draw on the host with the request's seeded generator (the CPU Sampler's
// semantics: top-p over the probabilities, ties and random stream included, stay on the host).
// All: grid (rows), block 256 (any multiple of 32 up to 1024).
#include "../common.cuh"

// idx[r] = the index of the largest logits[r][0..vocab), the lowest index on ties (as the CPU
// Ops.argmax / Sampler.argmax); val[r] = that value when val is not null. NaNs never win.
LG_KERNEL void __launch_bounds__(1024)
argmax_rows(int* idx, float* val, const float* logits, int rows, int vocab, int stride) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int r = blockIdx.x;
    if (r >= rows) {
        return;
    }
    const float* x = logits + (size_t)r * stride;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        const float v = x[c];
        if (v > best) {  // c increases, so the first of equal values is kept
            best = v;
            bi = c;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(lg::FULL_MASK, best, o);
        const int oi = __shfl_xor_sync(lg::FULL_MASK, bi, o);
        if (ov > best || (ov == best && oi < bi)) {
            best = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        best = lane < warps ? sv[lane] : -INFINITY;
        bi = lane < warps ? si[lane] : 0x7fffffff;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(lg::FULL_MASK, best, o);
            const int oi = __shfl_xor_sync(lg::FULL_MASK, bi, o);
            if (ov > best || (ov == best && oi < bi)) {
                best = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            // every value -inf or NaN: index 0, as the CPU loop (which starts from element 0)
            idx[r] = bi == 0x7fffffff ? 0 : bi;
            if (val != nullptr) {
                val[r] = bi == 0x7fffffff ? x[0] : best;
            }
        }
    }
}

// lse[r] = max + log(Σ_c exp(logits[r][c] − max)), the sum in double (as Sampler.logprobs).
LG_KERNEL void __launch_bounds__(1024)
logsumexp_rows(float* lse, const float* logits, int rows, int vocab, int stride) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    const int r = blockIdx.x;
    if (r >= rows) {
        return;
    }
    const float* x = logits + (size_t)r * stride;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        m = fmaxf(m, x[c]);
    }
    m = lg::block_max(m, fscratch);
    double s = 0.0;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        s += (double)expf(x[c] - m);
    }
    s = lg::block_sum(s, dscratch);
    if (threadIdx.x == 0) {
        lse[r] = (float)((double)m + log(s));
    }
}

// probs[r][c] = exp((logits[r][c] − max) · inv_temperature) / Σ (the CPU Sampler's weights,
// normalised). probs may alias logits (same stride).
LG_KERNEL void __launch_bounds__(1024)
softmax_rows(float* probs, const float* logits, int rows, int vocab, int probs_stride, int logits_stride,
             float inv_temperature) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    const int r = blockIdx.x;
    if (r >= rows) {
        return;
    }
    const float* x = logits + (size_t)r * logits_stride;
    float* p = probs + (size_t)r * probs_stride;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        m = fmaxf(m, x[c]);
    }
    m = lg::block_max(m, fscratch);
    double s = 0.0;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        const float e = expf((x[c] - m) * inv_temperature);
        p[c] = e;  // each thread rereads only its own elements below
        s += e;
    }
    s = lg::block_sum(s, dscratch);
    const float inv = (float)(1.0 / s);
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        p[c] *= inv;
    }
}
