/*
 * lora-gateway's native CPU kernels, called through JNI by dev.loragateway.kernels.cpu.NativeCpu.
 *
 * One kernel today: out = x · wᵀ with bf16 weights w [n][k] (as stored, row-major, read in place
 * from the mapped safetensors file) and bf16 activations x [m][k] (the float32 rows rounded to
 * nearest even once per call), float32 sums, through AVX-512 BF16's vdpbf16ps (32 products per
 * instruction). The Java Vector API has no such instruction; its kernels widen each bf16 weight
 * to float32 first.
 *
 * Every output element is computed the same way whatever the row count and wherever it falls in a
 * register tile: one 16-lane accumulator per (row, column) over the k-chunks of KC elements in
 * order, the last 32-element step masked, the 16 lanes reduced in a fixed order, the chunks summed
 * in order. So a row's result does not depend on the other rows of its batch (batch invariance).
 *
 * Built with gcc by build.sh during the Maven build, without -march: the AVX-512 code carries its
 * own target attribute and is only called after lg_features() says the CPU runs it.
 */
#include <jni.h>
#include <immintrin.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Register tile: up to MR activation rows times NR weight rows, MR*NR accumulators. */
#define MR 4
#define NR 6
/* Elements of k per pass over a tile, so a tile's rows stay in L1 (a multiple of 32). */
#define KC 1024
/* Weight bytes per column panel (walked once for every block of MR rows: stays in L2). */
#define PANEL_BYTES (192 * 1024)

enum { LG_AVX512_BF16 = 1 };

static int lg_features(void) {
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16")) {
        f |= LG_AVX512_BF16;
    }
    return f;
}

BF16_TARGET static void to_bf16(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
        _mm256_storeu_si256((__m256i *)(y + i), (__m256i)h);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
        _mm256_mask_storeu_epi16(y + i, m, (__m256i)h);
    }
}

/*
 * out[r*os + c] (+)= Σ_{k in [k0, k1)} x[r*xs + k] · w[c*ws + k] for r < RM, c < RN; adds to out
 * unless first. RM and RN are constants at every call site, so the loops unroll and the
 * accumulators live in registers.
 */
BF16_TARGET ALWAYS_INLINE void tile(const uint16_t *x, size_t xs, const uint16_t *w, size_t ws, int k0, int k1,
                                    float *out, size_t os, int first, const int RM, const int RN) {
    __m512 acc[MR][NR];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
#pragma GCC unroll 6
        for (int c = 0; c < RN; c++) {
            acc[r][c] = _mm512_setzero_ps();
        }
    }
    int k = k0;
    for (; k + 32 <= k1; k += 32) {
        __m512bh xv[MR];
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            xv[r] = (__m512bh)_mm512_loadu_si512(x + r * xs + k);
        }
#pragma GCC unroll 6
        for (int c = 0; c < RN; c++) {
            __m512bh wv = (__m512bh)_mm512_loadu_si512(w + c * ws + k);
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv[r], wv);
            }
        }
    }
    if (k < k1) {
        __mmask32 mask = (__mmask32)((1ull << (k1 - k)) - 1);
        __m512bh xv[MR];
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            xv[r] = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + r * xs + k);
        }
#pragma GCC unroll 6
        for (int c = 0; c < RN; c++) {
            __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + c * ws + k);
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv[r], wv);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
#pragma GCC unroll 6
        for (int c = 0; c < RN; c++) {
            float s = _mm512_reduce_add_ps(acc[r][c]);
            out[r * os + c] = first ? s : out[r * os + c] + s;
        }
    }
}

typedef void (*tile_fn)(const uint16_t *, size_t, const uint16_t *, size_t, int, int, float *, size_t, int);
#define TILE(RM, RN)                                                                                          \
    BF16_TARGET __attribute__((noinline)) static void tile_##RM##x##RN(const uint16_t *x, size_t xs,            \
        const uint16_t *w, size_t ws, int k0, int k1, float *out, size_t os, int first) {                      \
        tile(x, xs, w, ws, k0, k1, out, os, first, RM, RN);                                                    \
    }
#define TILE_ROW(RM) TILE(RM, 1) TILE(RM, 2) TILE(RM, 3) TILE(RM, 4) TILE(RM, 5) TILE(RM, 6)
TILE_ROW(1)
TILE_ROW(2)
TILE_ROW(3)
TILE_ROW(4)
#define TILES_OF(RM) {tile_##RM##x1, tile_##RM##x2, tile_##RM##x3, tile_##RM##x4, tile_##RM##x5, tile_##RM##x6}
static const tile_fn TILES[MR][NR] = {TILES_OF(1), TILES_OF(2), TILES_OF(3), TILES_OF(4)};

/* out[r*os + c] = Σ_k x[r*K + k] · w[c*K + k] for r < M and c in [c0, c1). */
BF16_TARGET static void gemm_bf16(const uint16_t *x, int M, int K, const uint16_t *w, int c0, int c1, float *out, size_t os) {
    int panel = (int)(PANEL_BYTES / ((size_t)(K < KC ? K : KC) * 2));
    panel -= panel % NR;
    if (panel < NR) {
        panel = NR;
    }
    for (int cb = c0; cb < c1; cb += panel) {
        int ce = cb + panel < c1 ? cb + panel : c1;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int k1 = k0 + KC < K ? k0 + KC : K;
            for (int r = 0; r < M; r += MR) {
                int rm = M - r < MR ? M - r : MR;
                for (int c = cb; c < ce; c += NR) {
                    int rn = ce - c < NR ? ce - c : NR;
                    TILES[rm - 1][rn - 1](x + (size_t)r * K, (size_t)K, w + (size_t)c * K, (size_t)K, k0, k1,
                                          out + (size_t)r * os + c, os, k0 == 0);
                }
            }
        }
    }
}


/* ---- attention ------------------------------------------------------------------------------ */

#define AVX512_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
/* Query rows per pass over the keys and values: each key and value vector loaded once for all. */
#define QR 4

/* e^x for x <= 0 (lanes below -87.3 give ~1e-38, never used: masked lanes are set to 0 apart).
 * x = n·ln2 + r with |r| <= ln2/2 (ln2 in two parts), e^r by its Taylor series to r^7 (relative
 * error below 2e-8 there), times 2^n by vscalefps. */
AVX512_TARGET ALWAYS_INLINE __m512 exp_nonpositive_unclamped(__m512 x) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

AVX512_TARGET ALWAYS_INLINE __m512 exp_nonpositive(__m512 x) {
    return exp_nonpositive_unclamped(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)));
}

/* e^x for any x: as exp_nonpositive, x clamped to [-87.3, 88.7] (e^88.7 is finite). */
AVX512_TARGET ALWAYS_INLINE __m512 exp_any(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    return exp_nonpositive_unclamped(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)));
}

/* gate[i] = gate[i] / (1 + e^-gate[i]) · up[i] for i < n. */
AVX512_TARGET static void silu_mul(float *gate, const float *up, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 e = exp_any(_mm512_sub_ps(_mm512_setzero_ps(), g));
        __m512 r = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u);
        _mm512_mask_storeu_ps(gate + i, m, r);
    }
}

/* r[i][j] -> r[j][i] for a 16×16 block of floats held in 16 registers. */
AVX512_TARGET ALWAYS_INLINE void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 16; i += 8) {
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(u[i + j], u[i + 4 + j], 0x88);
            t[i + 4 + j] = _mm512_shuffle_f32x4(u[i + j], u[i + 4 + j], 0xDD);
        }
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    }
}

/* Per-thread scratch, grown as needed and kept: the gathered keys and values and the scores. */
static __thread float *scratch;
static __thread size_t scratch_floats;

static float *scratch_for(size_t floats) {
    if (floats > scratch_floats) {
        float *p = (float *)aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
        if (p == NULL) {
            return NULL;
        }
        free(scratch);
        scratch = p;
        scratch_floats = floats;
    }
    return scratch;
}

/*
 * Causal attention of `rows` query rows of one sequence for the query heads [g·group, (g+1)·group)
 * that share key/value head g. Row i attends to positions [from[i], len[i]); position t's key and
 * value lie at row (table ? table[t / bs]·bs + t % bs : t) of keys/values (rows kvDim apart).
 * q row i, head h at q[i·qs + h·hd]; out likewise at out[i·os + h·hd]. Returns 0, or -1 when out
 * of memory (out untouched).
 *
 * The positions the rows need are gathered once: keys transposed into blocks of 16 positions
 * (kt[b][d][16], 16×16 register transposes), so 16 scores come from hd broadcast FMAs without
 * horizontal sums; values are read in place through a row pointer per position. Then per head, per QR rows: scores, softmax (masked lanes exactly 0), and the
 * weighted sum of values divided by the sum of weights.
 */
AVX512_TARGET static int attend(const float *q, size_t qs, int rows, const int *len, const int *from, const float *keys,
                                const float *values, const int *table, int bs, int kvDim, int hd, int group, int g,
                                float scale, float *out, size_t os) {
    int lo = from[0], hi = len[0];
    for (int i = 1; i < rows; i++) {
        lo = from[i] < lo ? from[i] : lo;
        hi = len[i] > hi ? len[i] : hi;
    }
    int nt = hi - lo;
    int nb = (nt + 15) / 16;
    /* scratch: keys transposed (kt), each position's value row (vrow), scores (sc) */
    size_t ktf = (size_t)nb * 16 * hd, vf = ((size_t)nt * sizeof(float *) + 63) / 64 * 16, sf = (size_t)QR * nb * 16;
    float *kt = scratch_for(ktf + vf + sf);
    if (kt == NULL) {
        return -1;
    }
    const float **vrow = (const float **)(kt + ktf);
    float *sc = kt + ktf + vf;
    const float *krow[16];
    for (int b = 0; b < nb; b++) {
        int valid = nt - b * 16 < 16 ? nt - b * 16 : 16;
        for (int lane = 0; lane < valid; lane++) {
            int p = lo + b * 16 + lane;
            size_t row = table ? (size_t)table[p / bs] * bs + p % bs : (size_t)p;
            krow[lane] = keys + row * kvDim + (size_t)g * hd;
            vrow[b * 16 + lane] = values + row * kvDim + (size_t)g * hd;
        }
        float *dst = kt + (size_t)b * 16 * hd;
        if (valid == 16 && hd % 16 == 0) {
            for (int d0 = 0; d0 < hd; d0 += 16) {
                __m512 r[16];
                for (int lane = 0; lane < 16; lane++) {
                    r[lane] = _mm512_loadu_ps(krow[lane] + d0);
                }
                transpose16(r);
                for (int j = 0; j < 16; j++) {
                    _mm512_storeu_ps(dst + (size_t)(d0 + j) * 16, r[j]);
                }
            }
        } else {
            for (int lane = 0; lane < 16; lane++) {
                for (int d = 0; d < hd; d++) {
                    dst[d * 16 + lane] = lane < valid ? krow[lane][d] : 0.0f;
                }
            }
        }
    }
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    const __m512i lane_ix = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int i0 = 0; i0 < rows; i0 += QR) {
            int nr = rows - i0 < QR ? rows - i0 : QR;
            int glo = from[i0], ghi = len[i0];
            for (int i = 1; i < nr; i++) {
                glo = from[i0 + i] < glo ? from[i0 + i] : glo;
                ghi = len[i0 + i] > ghi ? len[i0 + i] : ghi;
            }
            int b0 = (glo - lo) / 16, b1 = (ghi - lo + 15) / 16;
            const float *qr[QR];
            for (int i = 0; i < QR; i++) {
                qr[i] = q + (size_t)(i0 + (i < nr ? i : 0)) * qs + (size_t)h * hd;
            }
            /* scores, scaled and masked */
            for (int b = b0; b < b1; b++) {
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                const float *kb = kt + (size_t)b * 16 * hd;
                for (int d = 0; d < hd; d++) {
                    __m512 kv = _mm512_loadu_ps(kb + d * 16);
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(qr[0][d]), kv, a0);
                    a1 = _mm512_fmadd_ps(_mm512_set1_ps(qr[1][d]), kv, a1);
                    a2 = _mm512_fmadd_ps(_mm512_set1_ps(qr[2][d]), kv, a2);
                    a3 = _mm512_fmadd_ps(_mm512_set1_ps(qr[3][d]), kv, a3);
                }
                __m512 acc[QR] = {a0, a1, a2, a3};
                __m512i pos = _mm512_add_epi32(lane_ix, _mm512_set1_epi32(lo + b * 16));
                for (int i = 0; i < nr; i++) {
                    __mmask16 in = _mm512_cmpge_epi32_mask(pos, _mm512_set1_epi32(from[i0 + i]))
                                 & _mm512_cmplt_epi32_mask(pos, _mm512_set1_epi32(len[i0 + i]));
                    __m512 s = _mm512_mask_mov_ps(ninf, in, _mm512_mul_ps(acc[i], _mm512_set1_ps(scale)));
                    _mm512_storeu_ps(sc + (size_t)i * nb * 16 + b * 16, s);
                }
            }
            /* softmax numerators (0 where masked) and their sums */
            float inv[QR];
            for (int i = 0; i < nr; i++) {
                float *s = sc + (size_t)i * nb * 16;
                __m512 m = ninf;
                for (int b = b0; b < b1; b++) {
                    m = _mm512_max_ps(m, _mm512_loadu_ps(s + b * 16));
                }
                __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(m));
                __m512 sum = _mm512_setzero_ps();
                for (int b = b0; b < b1; b++) {
                    __m512 x = _mm512_loadu_ps(s + b * 16);
                    __mmask16 live = _mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_OQ);
                    __m512 e = _mm512_maskz_mov_ps(live, exp_nonpositive(_mm512_sub_ps(x, mx)));
                    _mm512_storeu_ps(s + b * 16, e);
                    sum = _mm512_add_ps(sum, e);
                }
                inv[i] = 1.0f / _mm512_reduce_add_ps(sum);
            }
            /* out = Σ_t e[t]·v[t] / Σ_t e[t], 16 elements of the head at a time */
            int t0 = b0 * 16, t1 = ghi - lo;
            for (int d0 = 0; d0 < hd; d0 += 16) {
                __mmask16 dm = (__mmask16)(hd - d0 >= 16 ? 0xFFFF : (1u << (hd - d0)) - 1);
                __m512 o0 = _mm512_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
                const float *s0 = sc, *s1 = sc + (size_t)nb * 16, *s2 = sc + (size_t)2 * nb * 16, *s3 = sc + (size_t)3 * nb * 16;
                for (int t = t0; t < t1; t++) {
                    __m512 v = _mm512_maskz_loadu_ps(dm, vrow[t] + d0);
                    o0 = _mm512_fmadd_ps(_mm512_set1_ps(s0[t]), v, o0);
                    if (nr > 1) o1 = _mm512_fmadd_ps(_mm512_set1_ps(s1[t]), v, o1);
                    if (nr > 2) o2 = _mm512_fmadd_ps(_mm512_set1_ps(s2[t]), v, o2);
                    if (nr > 3) o3 = _mm512_fmadd_ps(_mm512_set1_ps(s3[t]), v, o3);
                }
                __m512 o[QR] = {o0, o1, o2, o3};
                for (int i = 0; i < nr; i++) {
                    _mm512_mask_storeu_ps(out + (size_t)(i0 + i) * os + (size_t)h * hd + d0, dm,
                                          _mm512_mul_ps(o[i], _mm512_set1_ps(inv[i])));
                }
            }
        }
    }
    return 0;
}

/* ---- LoRA over bf16 adapters in the slot pool's packed rows ---------------------------------- */
/*
 * The slot pool (LoraSlotPool, Bf16Rows) packs each bf16 row of n values for the JVM's vector
 * length L (16 with 512-bit vectors, 8 with 256-bit): each block of 2L values becomes L ints whose
 * int i holds v[b+i] in its low half and v[b+L+i] in its high half; the n mod 2L values after the
 * last block follow as one float32 each. So (int << 16) is v[b..b+L) and (int & 0xFFFF0000) is
 * v[b+L..b+2L) as floats: the activations need no reordering. Sums are float32 FMAs (the LoRA
 * terms keep float32 activations), one row at a time: a row's result never depends on its segment.
 */
#define PAIR_LO(v) _mm512_castsi512_ps(_mm512_slli_epi32((v), 16))
#define PAIR_HI(v) _mm512_castsi512_ps(_mm512_and_si512((v), _mm512_set1_epi32((int)0xFFFF0000)))
#define PAIR_LO8(v) _mm256_castsi256_ps(_mm256_slli_epi32((v), 16))
#define PAIR_HI8(v) _mm256_castsi256_ps(_mm256_and_si256((v), _mm256_set1_epi32((int)0xFFFF0000)))

static inline int packed_words(int n, int L) {
    int full = n - n % (2 * L);
    return full / 2 + (n - full);
}

static inline float bits_to_float(int32_t b) {
    float f;
    __builtin_memcpy(&f, &b, 4);
    return f;
}

/* Σ_j row[j]·x[j] over a packed row of n values. */
AVX512_TARGET static float packed_dot(const int32_t *p, const float *x, int n, int L) {
    int full = n - n % (2 * L);
    int w = 0;
    float s;
    if (L == 16) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int b = 0; b < full; b += 32, w += 16) {
            __m512i v = _mm512_loadu_si512(p + w);
            a0 = _mm512_fmadd_ps(PAIR_LO(v), _mm512_loadu_ps(x + b), a0);
            a1 = _mm512_fmadd_ps(PAIR_HI(v), _mm512_loadu_ps(x + b + 16), a1);
        }
        s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    } else {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int b = 0; b < full; b += 16, w += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(p + w));
            a0 = _mm256_fmadd_ps(PAIR_LO8(v), _mm256_loadu_ps(x + b), a0);
            a1 = _mm256_fmadd_ps(PAIR_HI8(v), _mm256_loadu_ps(x + b + 8), a1);
        }
        float l[8];
        _mm256_storeu_ps(l, _mm256_add_ps(a0, a1));
        s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    }
    for (int j = full; j < n; j++, w++) {
        s += bits_to_float(p[w]) * x[j];
    }
    return s;
}

/* y[o] += Σ_{k<r} t[k]·Bᵀ[k][o] for o < out; the r packed rows of Bᵀ start at p, rowWords apart. */
AVX512_TARGET static void packed_expand(const int32_t *p, int r, int out, int L, const float *t, float *y) {
    int full = out - out % (2 * L);
    int rowWords = packed_words(out, L);
    if (L == 16) {
        for (int b = 0, w = 0; b < full; b += 32, w += 16) {
            __m512 lo = _mm512_loadu_ps(y + b), hi = _mm512_loadu_ps(y + b + 16);
            for (int k = 0; k < r; k++) {
                __m512i v = _mm512_loadu_si512(p + (size_t)k * rowWords + w);
                __m512 tk = _mm512_set1_ps(t[k]);
                lo = _mm512_fmadd_ps(PAIR_LO(v), tk, lo);
                hi = _mm512_fmadd_ps(PAIR_HI(v), tk, hi);
            }
            _mm512_storeu_ps(y + b, lo);
            _mm512_storeu_ps(y + b + 16, hi);
        }
    } else {
        for (int b = 0, w = 0; b < full; b += 16, w += 8) {
            __m256 lo = _mm256_loadu_ps(y + b), hi = _mm256_loadu_ps(y + b + 8);
            for (int k = 0; k < r; k++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(p + (size_t)k * rowWords + w));
                __m256 tk = _mm256_set1_ps(t[k]);
                lo = _mm256_fmadd_ps(PAIR_LO8(v), tk, lo);
                hi = _mm256_fmadd_ps(PAIR_HI8(v), tk, hi);
            }
            _mm256_storeu_ps(y + b, lo);
            _mm256_storeu_ps(y + b + 8, hi);
        }
    }
    int tailWord = full / 2;
    for (int o = full; o < out; o++) {
        float acc = y[o];
        for (int k = 0; k < r; k++) {
            acc += t[k] * bits_to_float(p[(size_t)k * rowWords + tailWord + (o - full)]);
        }
        y[o] = acc;
    }
}

/* ---- JNI ---------------------------------------------------------------------------------- */

JNIEXPORT jint JNICALL Java_dev_loragateway_kernels_cpu_NativeCpu_features(JNIEnv *env, jclass cls) {
    (void)env;
    (void)cls;
    return lg_features();
}

/* dst[from..to) (a direct buffer of bf16) = x[from..to), rounded to bf16 (nearest even). */
JNIEXPORT void JNICALL Java_dev_loragateway_kernels_cpu_NativeCpu_toBf16(JNIEnv *env, jclass cls, jfloatArray x, jint from,
                                                                         jint to, jobject dst) {
    (void)cls;
    uint16_t *d = (uint16_t *)(*env)->GetDirectBufferAddress(env, dst);
    float *s = (float *)(*env)->GetPrimitiveArrayCritical(env, x, NULL);
    if (s == NULL) {
        return; /* OutOfMemoryError pending */
    }
    to_bf16(s + from, d + from, (size_t)(to - from));
    (*env)->ReleasePrimitiveArrayCritical(env, x, s, JNI_ABORT);
}

/*
 * out[r*outStride + c] = x[r]·w[c] for r < rows, c in [c0, c1): x a direct buffer of rows×in bf16
 * (from toBf16), w a direct buffer of the weights [outDim][in] bf16. The caller checked the sizes.
 */
JNIEXPORT void JNICALL Java_dev_loragateway_kernels_cpu_NativeCpu_gemmBf16(JNIEnv *env, jclass cls, jobject x, jint rows,
                                                                           jint in, jobject w, jint c0, jint c1,
                                                                           jfloatArray out, jint outStride) {
    (void)cls;
    const uint16_t *xp = (const uint16_t *)(*env)->GetDirectBufferAddress(env, x);
    const uint16_t *wp = (const uint16_t *)(*env)->GetDirectBufferAddress(env, w);
    float *o = (float *)(*env)->GetPrimitiveArrayCritical(env, out, NULL);
    if (o == NULL) {
        return;
    }
    gemm_bf16(xp, rows, in, wp, c0, c1, o, (size_t)outStride);
    (*env)->ReleasePrimitiveArrayCritical(env, out, o, 0);
}

/*
 * Attention of `rows` query rows of one sequence for key/value heads [g0, g1) (see attend): rows i have
 * len[lo + i], from[lo + i]; q and out from offsets q0 and o0 with row stride qDim = heads·hd.
 * table may be null (contiguous keys). Throws OutOfMemoryError when the scratch cannot grow.
 */
JNIEXPORT void JNICALL Java_dev_loragateway_kernels_cpu_NativeCpu_attend(JNIEnv *env, jclass cls, jfloatArray q, jint q0,
        jint qDim, jint rows, jintArray len, jintArray from, jint lo, jfloatArray keys, jfloatArray values,
        jintArray table, jint bs, jint kvDim, jint hd, jint group, jint g0, jint g1, jfloat scale, jfloatArray out, jint o0) {
    (void)cls;
    float *qp = (*env)->GetPrimitiveArrayCritical(env, q, NULL);
    int *lp = (*env)->GetPrimitiveArrayCritical(env, len, NULL);
    int *fp = (*env)->GetPrimitiveArrayCritical(env, from, NULL);
    float *kp = (*env)->GetPrimitiveArrayCritical(env, keys, NULL);
    float *vp = (*env)->GetPrimitiveArrayCritical(env, values, NULL);
    int *tp = table == NULL ? NULL : (*env)->GetPrimitiveArrayCritical(env, table, NULL);
    float *op = (*env)->GetPrimitiveArrayCritical(env, out, NULL);
    int rc = -1;
    if (qp && lp && fp && kp && vp && (table == NULL || tp) && op) {
        rc = 0;
        for (int g = g0; g < g1 && rc == 0; g++) {
            rc = attend(qp + q0, (size_t)qDim, rows, lp + lo, fp + lo, kp, vp, tp, bs, kvDim, hd, group, g, scale, op + o0,
                        (size_t)qDim);
        }
    }
    if (op) (*env)->ReleasePrimitiveArrayCritical(env, out, op, 0);
    if (tp) (*env)->ReleasePrimitiveArrayCritical(env, table, tp, JNI_ABORT);
    if (vp) (*env)->ReleasePrimitiveArrayCritical(env, values, vp, JNI_ABORT);
    if (kp) (*env)->ReleasePrimitiveArrayCritical(env, keys, kp, JNI_ABORT);
    if (fp) (*env)->ReleasePrimitiveArrayCritical(env, from, fp, JNI_ABORT);
    if (lp) (*env)->ReleasePrimitiveArrayCritical(env, len, lp, JNI_ABORT);
    if (qp) (*env)->ReleasePrimitiveArrayCritical(env, q, qp, JNI_ABORT);
    if (rc != 0 && !(*env)->ExceptionCheck(env)) {
        jclass oom = (*env)->FindClass(env, "java/lang/OutOfMemoryError");
        if (oom) (*env)->ThrowNew(env, oom, "native attention scratch");
    }
}

/* gate[from..to) = silu(gate) · up over the same range. */
JNIEXPORT void JNICALL Java_dev_loragateway_kernels_cpu_NativeCpu_siluMul(JNIEnv *env, jclass cls, jfloatArray gate,
                                                                          jfloatArray up, jint from, jint to) {
    (void)cls;
    float *g = (*env)->GetPrimitiveArrayCritical(env, gate, NULL);
    float *u = (*env)->GetPrimitiveArrayCritical(env, up, NULL);
    if (g && u) {
        silu_mul(g + from, u + from, (size_t)(to - from));
    }
    if (u) (*env)->ReleasePrimitiveArrayCritical(env, up, u, JNI_ABORT);
    if (g) (*env)->ReleasePrimitiveArrayCritical(env, gate, g, 0);
}

/*
 * LoRA of one (layer, module) for the segments [s0, s1) clipped to rows [r0, r1): segment g covers
 * rows [segStart[g], segStart[g+1]) with slot segSlot[g], whose packed bf16 weights are
 * packed[segSlot[g]] with A at segA[g], Bᵀ at segB[g], rank segRank[g] (0: skip) and scaling
 * segScale[g]. t[i·ts + k] = scaling·(x_i·A_k), then y_i += t_i·Bᵀ. L: the packing's vector length.
 */
JNIEXPORT void JNICALL Java_dev_loragateway_kernels_cpu_NativeCpu_loraBf16(JNIEnv *env, jclass cls, jobjectArray packed,
        jint L, jintArray segStart, jintArray segSlot, jintArray segA, jintArray segB, jintArray segRank,
        jfloatArray segScale, jint s0, jint s1, jint r0, jint r1, jint in, jint out, jfloatArray x, jint xs,
        jfloatArray t, jint ts, jfloatArray y, jint ys) {
    (void)cls;
    jint *st = (*env)->GetIntArrayElements(env, segStart, NULL);
    jint *sl = (*env)->GetIntArrayElements(env, segSlot, NULL);
    jint *sa = (*env)->GetIntArrayElements(env, segA, NULL);
    jint *sb = (*env)->GetIntArrayElements(env, segB, NULL);
    jint *sr = (*env)->GetIntArrayElements(env, segRank, NULL);
    jfloat *sc = (*env)->GetFloatArrayElements(env, segScale, NULL);
    if (st && sl && sa && sb && sr && sc) {
        for (int g = s0; g < s1; g++) {
            int lo = st[g] > r0 ? st[g] : r0;
            int hi = st[g + 1] < r1 ? st[g + 1] : r1;
            int r = sr[g];
            if (r == 0 || lo >= hi) {
                continue;
            }
            jintArray pa = (jintArray)(*env)->GetObjectArrayElement(env, packed, sl[g]);
            if (pa == NULL) {
                break; /* exception pending */
            }
            int32_t *p = (*env)->GetPrimitiveArrayCritical(env, pa, NULL);
            float *xp = (*env)->GetPrimitiveArrayCritical(env, x, NULL);
            float *tp = (*env)->GetPrimitiveArrayCritical(env, t, NULL);
            float *yp = (*env)->GetPrimitiveArrayCritical(env, y, NULL);
            if (p && xp && tp && yp) {
                int aw = packed_words(in, L);
                for (int k = 0; k < r; k++) {
                    for (int i = lo; i < hi; i++) {
                        tp[(size_t)i * ts + k] = sc[g] * packed_dot(p + sa[g] + (size_t)k * aw, xp + (size_t)i * xs, in, L);
                    }
                }
                for (int i = lo; i < hi; i++) {
                    packed_expand(p + sb[g], r, out, L, tp + (size_t)i * ts, yp + (size_t)i * ys);
                }
            }
            if (yp) (*env)->ReleasePrimitiveArrayCritical(env, y, yp, 0);
            if (tp) (*env)->ReleasePrimitiveArrayCritical(env, t, tp, 0);
            if (xp) (*env)->ReleasePrimitiveArrayCritical(env, x, xp, JNI_ABORT);
            if (p) (*env)->ReleasePrimitiveArrayCritical(env, pa, p, JNI_ABORT);
            (*env)->DeleteLocalRef(env, pa);
        }
    }
    if (sc) (*env)->ReleaseFloatArrayElements(env, segScale, sc, JNI_ABORT);
    if (sr) (*env)->ReleaseIntArrayElements(env, segRank, sr, JNI_ABORT);
    if (sb) (*env)->ReleaseIntArrayElements(env, segB, sb, JNI_ABORT);
    if (sa) (*env)->ReleaseIntArrayElements(env, segA, sa, JNI_ABORT);
    if (sl) (*env)->ReleaseIntArrayElements(env, segSlot, sl, JNI_ABORT);
    if (st) (*env)->ReleaseIntArrayElements(env, segStart, st, JNI_ABORT);
}
