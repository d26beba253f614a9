// nvcuda::wmma for the emulated kernels, m16n16k16 with bf16 (or half-free float) operands and
// float accumulators. A fragment is the whole 16x16 tile in every lane (x[] in logical row-major
// order: A(i,k) = x[i*16+k], B(k,j) = x[k*16+j], C(i,j) = x[i*16+j]), so element-wise loops over
// x[0..num_elements) that every lane applies alike give the right result, but code that assumes
// the hardware's per-lane element ownership does not (see README.md).
//
// load_matrix_sync, mma_sync and store_matrix_sync are warp-collective, as on the GPU: all 32
// lanes must arrive with the same pointer, ldm and layout (a fault otherwise), pointers must be
// 256-bit aligned and ldm a multiple of 16 bytes; mma_sync checks that every lane holds the same
// fragments and computes the product once: D(i,j) = C(i,j) + Σ_k A(i,k)·B(k,j), products exact
// (bf16·bf16 fits a float), summed in k order in float.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulator implements WMMA m16n16k16 only");
    static constexpr int num_elements = 256;
    T x[num_elements];
};

namespace detail {

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
inline T from_float(float v) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        return __float2bfloat16_rn(v);
    } else {
        return (T)v;
    }
}

struct MemKey {
    const void* ptr;
    unsigned ldm;
    int col_major;  // element (r, c) of the tile at ptr[c*ldm + r] instead of ptr[r*ldm + c]
    int elem_bytes;
};

inline void check_mem(const MemKey& k, const char* what) {
    if ((reinterpret_cast<uintptr_t>(k.ptr) & 31u) != 0) {
        lg_emu::fault("%s: pointer %p is not 256-bit aligned", what, k.ptr);
    }
    if ((k.ldm * (unsigned)k.elem_bytes) % 16u != 0 || k.ldm < 16) {
        lg_emu::fault("%s: ldm %u elements is not a multiple of 16 bytes of at least 16 elements", what, k.ldm);
    }
}

template <typename T>
void load_all(void* const* lanes, const void* key) {
    const MemKey& k = *static_cast<const MemKey*>(key);
    check_mem(k, "wmma::load_matrix_sync");
    const T* p = static_cast<const T*>(k.ptr);
    T tile[256];
    for (int r = 0; r < 16; r++) {
        for (int c = 0; c < 16; c++) {
            tile[r * 16 + c] = k.col_major ? p[(size_t)c * k.ldm + r] : p[(size_t)r * k.ldm + c];
        }
    }
    for (int l = 0; l < 32; l++) {
        std::memcpy(lanes[l], tile, sizeof(tile));
    }
}

template <typename T>
void store_all(void* const* lanes, const void* key) {
    const MemKey& k = *static_cast<const MemKey*>(key);
    check_mem(k, "wmma::store_matrix_sync");
    for (int l = 1; l < 32; l++) {
        if (std::memcmp(lanes[l], lanes[0], 256 * sizeof(T)) != 0) {
            lg_emu::fault("wmma::store_matrix_sync: lane %d's accumulator differs from lane 0's", l);
        }
    }
    const T* tile = static_cast<const T*>(lanes[0]);
    T* p = static_cast<T*>(const_cast<void*>(k.ptr));
    for (int r = 0; r < 16; r++) {
        for (int c = 0; c < 16; c++) {
            (k.col_major ? p[(size_t)c * k.ldm + r] : p[(size_t)r * k.ldm + c]) = tile[r * 16 + c];
        }
    }
}

struct MmaLane {
    void* d;
    const void* a;
    const void* b;
    const void* c;
};

template <typename TA, typename TC>
void mma_all(void* const* lanes, const void*) {
    const MmaLane& l0 = *static_cast<const MmaLane*>(lanes[0]);
    for (int l = 1; l < 32; l++) {
        const MmaLane& li = *static_cast<const MmaLane*>(lanes[l]);
        if (std::memcmp(li.a, l0.a, 256 * sizeof(TA)) != 0) {
            lg_emu::fault("wmma::mma_sync: lane %d's matrix_a fragment differs from lane 0's", l);
        }
        if (std::memcmp(li.b, l0.b, 256 * sizeof(TA)) != 0) {
            lg_emu::fault("wmma::mma_sync: lane %d's matrix_b fragment differs from lane 0's", l);
        }
        if (std::memcmp(li.c, l0.c, 256 * sizeof(TC)) != 0) {
            lg_emu::fault("wmma::mma_sync: lane %d's accumulator differs from lane 0's", l);
        }
    }
    const TA* a = static_cast<const TA*>(l0.a);
    const TA* b = static_cast<const TA*>(l0.b);
    const TC* c = static_cast<const TC*>(l0.c);
    TC d[256];
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) {
            float s = to_float(c[i * 16 + j]);
            for (int k = 0; k < 16; k++) {
                s += to_float(a[i * 16 + k]) * to_float(b[k * 16 + j]);
            }
            d[i * 16 + j] = from_float<TC>(s);
        }
    }
    for (int l = 0; l < 32; l++) {
        std::memcpy(static_cast<const MmaLane*>(lanes[l])->d, d, sizeof(d));
    }
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
    const T t = detail::from_float<T>((float)v);
    for (int i = 0; i < f.num_elements; i++) {
        f.x[i] = t;
    }
}

template <typename Use, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
    static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load needs a layout_t");
    // matrix_a (M x K): row_major is A(i,k) = p[i*ldm+k]; matrix_b (K x N): row_major is B(k,j) = p[k*ldm+j]
    const detail::MemKey key{p, ldm, std::is_same_v<Layout, col_major> ? 1 : 0, (int)sizeof(T)};
    lg_emu::warp_collective("wmma::load_matrix_sync", &key, sizeof(key), f.x, &detail::load_all<T>);
}

template <typename T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T, void>& f, const T* p, unsigned ldm, layout_t layout) {
    const detail::MemKey key{p, ldm, layout == mem_col_major ? 1 : 0, (int)sizeof(T)};
    lg_emu::warp_collective("wmma::load_matrix_sync", &key, sizeof(key), f.x, &detail::load_all<T>);
}

template <typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T, void>& f, unsigned ldm, layout_t layout) {
    const detail::MemKey key{p, ldm, layout == mem_col_major ? 1 : 0, (int)sizeof(T)};
    lg_emu::warp_collective("wmma::store_matrix_sync", &key, sizeof(key), const_cast<T*>(f.x), &detail::store_all<T>);
}

template <typename TA, typename LA, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, 16, 16, 16, TC, void>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, TA, LB>& b, const fragment<accumulator, 16, 16, 16, TC, void>& c) {
    detail::MmaLane mine{d.x, a.x, b.x, c.x};
    lg_emu::warp_collective("wmma::mma_sync", nullptr, 0, &mine, &detail::mma_all<TA, TC>);
}

}  // namespace wmma
}  // namespace nvcuda
