// Attention over the paged KV cache (layout of batcher's KvBlockPool, float32):
//   k_cache, v_cache of one layer: (blocks · block_size, kv_dim), kv_dim = kv_heads · head_dim;
//   position t of a sequence with block table T lives in cache row T[t / block_size]·block_size + t % block_size.
//
// For query row i of sequence s at position p (the keys/values of positions ≤ p already written):
//   for h < heads: g = h / (heads / kv_heads)
//     score[t] = scale · q[i][h]·k[t][g]        t in [from, p],  from = window > 0 ? max(0, p + 1 − window) : 0
//     out[i][h] = Σ_t softmax(score)[t] · v[t][g]
//
// One block serves up to 16 query vectors (query rows × the query heads of one KV head), so
// grouped-query heads read each key/value row once per block. Keys and values pass through
// shared memory 32 positions at a time; each warp owns 4 of the vectors (online softmax, one
// lane per position for the scores, one lane per 32nd of head_dim for the output). Works for any
// even head_dim up to 256, any block_size and group size.
//
//   kv_write                 scatters a step's k, v rows into their cache rows
//   attention_prefill        rows with their own positions and sequence (causal; also serves decode)
//   attention_decode         one query row per sequence, positions split into partitions (flash-decoding)
//   attention_decode_reduce  merges the partitions' partial results
#include "../common.cuh"

namespace lg {
namespace attn {

constexpr int THREADS = 128;
constexpr int WARPS = THREADS / 32;
constexpr int KT = 32;               // positions per shared-memory tile: one per lane
constexpr int MAXV = 16;             // query vectors per block
constexpr int VPW = MAXV / WARPS;    // vectors per warp: warp w owns vectors w, w + 4, w + 8, w + 12
constexpr int MAXD = 8;              // head_dim up to 32 · MAXD

struct Cache {
    const float* k;
    const float* v;
    const int* tables;  // (seqs, max_blocks)
    int kv_dim;
    int head_dim;
    int block_size;
    int max_blocks;
};

// Per-warp state of its vectors: which positions each attends and the online-softmax accumulators.
struct Warp {
    int tile_row[VPW];  // row of the block's tile (−1: no vector in this slot)
    int from[VPW];      // first attended position
    int last[VPW];      // last attended position
    float m[VPW];
    float l[VPW];
    float acc[VPW][MAXD];
};

__device__ __forceinline__ void init_warp(Warp& w) {
#pragma unroll
    for (int j = 0; j < VPW; j++) {
        w.tile_row[j] = -1;
        w.m[j] = -INFINITY;
        w.l[j] = 0.f;
#pragma unroll
        for (int i = 0; i < MAXD; i++) {
            w.acc[j][i] = 0.f;
        }
    }
}

// Scores, online softmax and P·V of one tile of KT positions [p0, p0 + KT) ∩ [·, hi) for the
// warp's first NJ vector slots; vectors whose tile row is outside [run0, run1) are masked.
template <int NJ>
__device__ __forceinline__ void tile_compute(Warp& w, const float* qs, const float* ks, const float* vs, int p0, int hi,
                                             int run0, int run1, int head_dim, float scale) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int pos = p0 + lane;
    float s[NJ];
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        s[j] = 0.f;
    }
    const float* kr = ks + lane * (head_dim + 1);
#pragma unroll 4
    for (int d = 0; d < head_dim; d++) {
        const float kd = kr[d];
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            s[j] = fmaf(qs[(warp + WARPS * j) * head_dim + d], kd, s[j]);
        }
    }
    float p[NJ];
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        const int tr = w.tile_row[j];
        const bool ok = tr >= run0 && tr < run1 && pos < hi && pos >= w.from[j] && pos <= w.last[j];
        const float sj = ok ? s[j] * scale : -INFINITY;
        const float mnew = fmaxf(w.m[j], warp_max(sj));
        if (mnew == -INFINITY) {  // nothing attended yet (warp-uniform)
            p[j] = 0.f;
            continue;
        }
        const float alpha = expf(w.m[j] - mnew);  // 0 when m was −inf
        p[j] = expf(sj - mnew);                    // 0 for masked positions
        w.l[j] = w.l[j] * alpha + warp_sum(p[j]);
        w.m[j] = mnew;
#pragma unroll
        for (int i = 0; i < MAXD; i++) {
            w.acc[j][i] *= alpha;
        }
    }
#pragma unroll 4
    for (int t = 0; t < KT; t++) {
        float pt[NJ];
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            pt[j] = __shfl_sync(FULL_MASK, p[j], t);
        }
        const float* vr = vs + t * head_dim;
#pragma unroll
        for (int i = 0; i < MAXD; i++) {
            if (i * 32 < head_dim) {
                const int d = lane + 32 * i;
                const float vv = d < head_dim ? vr[d] : 0.f;
#pragma unroll
                for (int j = 0; j < NJ; j++) {
                    w.acc[j][i] = fmaf(pt[j], vv, w.acc[j][i]);
                }
            }
        }
    }
}

// Positions [lo, hi) of the sequence whose block table is `table`, for the vectors of tile rows
// [run0, run1), KV head g. Every thread of the block calls it with the same arguments.
__device__ __forceinline__ void attend_range(Warp& w, const Cache& c, const int* table, int g, int lo, int hi,
                                             int run0, int run1, int nv, const float* qs, float* ks, float* vs,
                                             float scale) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int hd = c.head_dim;
    const int nj = warp < nv ? (nv - warp + WARPS - 1) / WARPS : 0;  // vector slots this warp owns
    for (int p0 = lo; p0 < hi; p0 += KT) {
        __syncthreads();  // the previous tile (or the q staging) is done with shared memory
        for (int t = warp; t < KT; t += WARPS) {
            const int pos = p0 + t;
            float* kd = ks + t * (hd + 1);
            float* vd = vs + t * hd;
            if (pos < hi) {
                const size_t row = (size_t)table[pos / c.block_size] * c.block_size + pos % c.block_size;
                const float* kp = c.k + row * c.kv_dim + (size_t)g * hd;
                const float* vp = c.v + row * c.kv_dim + (size_t)g * hd;
                for (int d = lane; d < hd; d += 32) {
                    kd[d] = kp[d];
                    vd[d] = vp[d];
                }
            } else {
                for (int d = lane; d < hd; d += 32) {
                    kd[d] = 0.f;
                    vd[d] = 0.f;
                }
            }
        }
        __syncthreads();
        switch (nj) {
            case 1: tile_compute<1>(w, qs, ks, vs, p0, hi, run0, run1, hd, scale); break;
            case 2: tile_compute<2>(w, qs, ks, vs, p0, hi, run0, run1, hd, scale); break;
            case 3: tile_compute<3>(w, qs, ks, vs, p0, hi, run0, run1, hd, scale); break;
            case 4: tile_compute<4>(w, qs, ks, vs, p0, hi, run0, run1, hd, scale); break;
            default: break;
        }
    }
}

// Stages the block's query vectors: vector v = (tile row v / hcn, head head0 + v % hcn).
__device__ __forceinline__ void stage_q(float* qs, const float* q, int row0, int nv, int hcn, int head0, int head_dim,
                                        int q_stride) {
    for (int e = threadIdx.x; e < nv * head_dim; e += THREADS) {
        const int v = e / head_dim;
        const int d = e - v * head_dim;
        const int tr = v / hcn;
        const int h = head0 + (v - tr * hcn);
        qs[e] = q[(size_t)(row0 + tr) * q_stride + (size_t)h * head_dim + d];
    }
}

// Heads of KV head g handled by block x: chunks of hc = min(group, MAXV) query heads.
struct Heads {
    int g;      // KV head
    int head0;  // first query head
    int hcn;    // query heads in this chunk
    int hc;     // chunk width (rows per block = MAXV / hc for prefill)
};

__device__ __forceinline__ Heads heads_of_block(int heads, int kv_heads) {
    const int group = heads / kv_heads;
    const int hc = min(group, MAXV);
    const int chunks = (group + hc - 1) / hc;
    Heads r;
    r.g = blockIdx.x / chunks;
    const int c = blockIdx.x - r.g * chunks;
    r.head0 = r.g * group + c * hc;
    r.hcn = min(hc, group - c * hc);
    r.hc = hc;
    return r;
}

__device__ __forceinline__ int window_from(int last, int window) {
    return window > 0 ? max(0, last + 1 - window) : 0;
}

}  // namespace attn
}  // namespace lg

using namespace lg::attn;

// k_cache[cache_row(i)] = k[i], v_cache[cache_row(i)] = v[i] for the kv_dim values of row i, with
// cache_row(i) = T[p / block_size]·block_size + p % block_size, p = positions[i],
// T = block_tables + (row_seq ? row_seq[i] : i) · max_blocks. Rows with p < 0 are skipped.
// grid (rows), block 128 (any multiple of 32).
LG_KERNEL void __launch_bounds__(1024)
kv_write(float* k_cache, float* v_cache, const float* k, const float* v, const int* block_tables, const int* row_seq,
         const int* positions, int rows, int kv_dim, int block_size, int max_blocks, int k_stride, int v_stride) {
    const int i = blockIdx.x;
    if (i >= rows) {
        return;
    }
    const int p = positions[i];
    if (p < 0) {
        return;
    }
    const int s = row_seq != nullptr ? row_seq[i] : i;
    const size_t row = (size_t)block_tables[(size_t)s * max_blocks + p / block_size] * block_size + p % block_size;
    float* kd = k_cache + row * kv_dim;
    float* vd = v_cache + row * kv_dim;
    const float* ks = k + (size_t)i * k_stride;
    const float* vs = v + (size_t)i * v_stride;
    for (int d = threadIdx.x; d < kv_dim; d += blockDim.x) {
        kd[d] = ks[d];
        vd[d] = vs[d];
    }
}

// Causal attention of `rows` query rows over the paged cache: row i is at position positions[i]
// of sequence row_seq[i] (the row of block_tables; null: i) and attends [from, positions[i]].
// A block takes tr = 16 / min(group, 16) consecutive rows (group = heads / kv_heads) and the
// query heads of one KV head; rows of one sequence may span blocks and a block's rows may mix
// sequences (handled one run of equal sequence at a time).
// grid (kv_heads · ceil(group / min(group, 16)), ceil(rows / tr)), block 128,
// dynamic shared memory 4 · (80 · head_dim + 32) bytes.
LG_KERNEL void __launch_bounds__(THREADS)
attention_prefill(float* out, const float* q, const float* k_cache, const float* v_cache, const int* block_tables,
                  const int* row_seq, const int* positions, int rows, int heads, int kv_heads, int head_dim,
                  int block_size, int max_blocks, int q_stride, int out_stride, int window, float scale) {
    extern __shared__ float smem[];
    const Heads hb = heads_of_block(heads, kv_heads);
    const int tr = MAXV / hb.hc;
    const int row0 = blockIdx.y * tr;
    if (hb.g >= kv_heads || row0 >= rows) {
        return;
    }
    const int tr_n = min(tr, rows - row0);
    const int nv = tr_n * hb.hcn;
    float* qs = smem;                          // [MAXV][head_dim]
    float* ks = qs + MAXV * head_dim;          // [KT][head_dim + 1]
    float* vs = ks + KT * (head_dim + 1);      // [KT][head_dim]
    const Cache c{k_cache, v_cache, block_tables, kv_heads * head_dim, head_dim, block_size, max_blocks};

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    Warp w;
    init_warp(w);
#pragma unroll
    for (int j = 0; j < VPW; j++) {
        const int v = warp + WARPS * j;
        if (v < nv) {
            const int t = v / hb.hcn;
            w.tile_row[j] = t;
            w.last[j] = positions[row0 + t];
            w.from[j] = window_from(w.last[j], window);
        }
    }
    stage_q(qs, q, row0, nv, hb.hcn, hb.head0, head_dim, q_stride);

    for (int r = 0; r < tr_n;) {
        const int seq = row_seq != nullptr ? row_seq[row0 + r] : row0 + r;
        int lo = window_from(positions[row0 + r], window);
        int hi = positions[row0 + r] + 1;
        int r1 = r + 1;
        while (r1 < tr_n && (row_seq != nullptr ? row_seq[row0 + r1] : row0 + r1) == seq) {
            lo = min(lo, window_from(positions[row0 + r1], window));
            hi = max(hi, positions[row0 + r1] + 1);
            r1++;
        }
        attend_range(w, c, block_tables + (size_t)seq * max_blocks, hb.g, lo, hi, r, r1, nv, qs, ks, vs, scale);
        r = r1;
    }

#pragma unroll
    for (int j = 0; j < VPW; j++) {
        const int v = warp + WARPS * j;
        if (v < nv) {
            const int t = v / hb.hcn;
            const int h = hb.head0 + (v - t * hb.hcn);
            float* o = out + (size_t)(row0 + t) * out_stride + (size_t)h * head_dim;
            const float inv = w.l[j] > 0.f ? 1.f / w.l[j] : 0.f;
#pragma unroll
            for (int i = 0; i < MAXD; i++) {
                const int d = lane + 32 * i;
                if (d < head_dim) {
                    o[d] = w.acc[j][i] * inv;
                }
            }
        }
    }
}

// Decode: row i (one per sequence, block table row i) attends positions [from, lengths[i]),
// from = window > 0 ? max(0, lengths[i] − window) : 0, split into gridDim.z partitions of
// partition_size positions counted from `from`. With one partition the result goes to out;
// with more, each partition writes its unnormalised output and (max, sum) to
// part_out (rows, heads, parts, head_dim) and part_ml (rows, heads, parts, 2), and
// attention_decode_reduce produces out.
// grid (kv_heads · ceil(group / min(group, 16)), rows, parts), block 128,
// dynamic shared memory 4 · (80 · head_dim + 32) bytes.
LG_KERNEL void __launch_bounds__(THREADS)
attention_decode(float* out, float* part_out, float* part_ml, const float* q, const float* k_cache, const float* v_cache,
                 const int* block_tables, const int* lengths, int rows, int heads, int kv_heads, int head_dim,
                 int block_size, int max_blocks, int q_stride, int out_stride, int window, int partition_size,
                 float scale) {
    extern __shared__ float smem[];
    const Heads hb = heads_of_block(heads, kv_heads);
    const int row = blockIdx.y;
    if (hb.g >= kv_heads || row >= rows) {
        return;
    }
    const int len = lengths[row];
    const int from = window_from(len - 1, window);
    const int parts = gridDim.z;
    const int part = blockIdx.z;
    const long long lo64 = (long long)from + (long long)part * partition_size;
    const int lo = parts == 1 ? from : (int)min(lo64, (long long)len);
    const int hi = parts == 1 ? len : (int)min(lo64 + partition_size, (long long)len);
    const int nv = hb.hcn;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;

    Warp w;
    init_warp(w);
    if (lo < hi) {
        float* qs = smem;
        float* ks = qs + MAXV * head_dim;
        float* vs = ks + KT * (head_dim + 1);
        const Cache c{k_cache, v_cache, block_tables, kv_heads * head_dim, head_dim, block_size, max_blocks};
#pragma unroll
        for (int j = 0; j < VPW; j++) {
            if (warp + WARPS * j < nv) {
                w.tile_row[j] = 0;
                w.from[j] = from;
                w.last[j] = len - 1;
            }
        }
        stage_q(qs, q, row, nv, hb.hcn, hb.head0, head_dim, q_stride);
        attend_range(w, c, block_tables + (size_t)row * max_blocks, hb.g, lo, hi, 0, 1, nv, qs, ks, vs, scale);
    }

#pragma unroll
    for (int j = 0; j < VPW; j++) {
        const int v = warp + WARPS * j;
        if (v < nv) {
            const int h = hb.head0 + v;
            if (parts == 1) {
                float* o = out + (size_t)row * out_stride + (size_t)h * head_dim;
                const float inv = w.l[j] > 0.f ? 1.f / w.l[j] : 0.f;
#pragma unroll
                for (int i = 0; i < MAXD; i++) {
                    const int d = lane + 32 * i;
                    if (d < head_dim) {
                        o[d] = w.acc[j][i] * inv;
                    }
                }
            } else {
                const size_t e = ((size_t)row * heads + h) * parts + part;
                if (w.l[j] > 0.f) {
                    float* o = part_out + e * head_dim;
#pragma unroll
                    for (int i = 0; i < MAXD; i++) {
                        const int d = lane + 32 * i;
                        if (d < head_dim) {
                            o[d] = w.acc[j][i];
                        }
                    }
                }
                if (lane == 0) {
                    part_ml[2 * e] = w.m[j];
                    part_ml[2 * e + 1] = w.l[j];  // 0: the partition attended nothing (its part_out is not written)
                }
            }
        }
    }
}

// out[i][h] = Σ_p part_out[i][h][p] · e^(m_p − M) / Σ_p l_p · e^(m_p − M) over partitions with l_p > 0,
// M = max of their m_p. grid (heads, rows), block 128 (any multiple of 32).
LG_KERNEL void __launch_bounds__(1024)
attention_decode_reduce(float* out, const float* part_out, const float* part_ml, int rows, int heads, int head_dim,
                        int parts, int out_stride) {
    const int h = blockIdx.x;
    const int row = blockIdx.y;
    if (h >= heads || row >= rows) {
        return;
    }
    const size_t base = ((size_t)row * heads + h) * parts;
    float m = -INFINITY;
    for (int p = 0; p < parts; p++) {
        if (part_ml[2 * (base + p) + 1] > 0.f) {
            m = fmaxf(m, part_ml[2 * (base + p)]);
        }
    }
    float l = 0.f;
    for (int p = 0; p < parts; p++) {
        const float lp = part_ml[2 * (base + p) + 1];
        if (lp > 0.f) {
            l += lp * expf(part_ml[2 * (base + p)] - m);
        }
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    float* o = out + (size_t)row * out_stride + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.f;
        for (int p = 0; p < parts; p++) {
            if (part_ml[2 * (base + p) + 1] > 0.f) {
                acc += part_out[(base + p) * head_dim + d] * expf(part_ml[2 * (base + p)] - m);
            }
        }
        o[d] = acc * inv;
    }
}
