// Forced include (g++ -include) of the kernel sources under emulation: the CUDA C++ dialect the
// kernels use, mapped onto plain C++ and the fiber runtime (emu_runtime.h). Shared-memory
// declarations are rewritten by build.sh (sed) into lg_emu::static_shared / dynamic_shared calls;
// a declaration the rewrite missed fails to compile on LG_EMU_UNREWRITTEN_SHARED.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <type_traits>
#include <utility>

#include "../emu_runtime.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ LG_EMU_UNREWRITTEN_SHARED
#define __constant__ LG_EMU_CONSTANT_UNSUPPORTED

#define threadIdx (lg_emu::tls_thread->tid)
#define blockIdx (lg_emu::tls_block->bid)
#define blockDim (lg_emu::tls_block->bdim)
#define gridDim (lg_emu::tls_block->gdim)
#define warpSize 32

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// ---- vector types (CUDA's alignments) ----
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---- integer/float helpers of the CUDA math headers ----
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
// IEEE single-precision operations, round to nearest (the build uses -ffp-contract=off, so
// nothing is fused unless a kernel calls fmaf).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }

template <typename T>
inline T __ldg(const T* p) { return *p; }

// ---- barriers and warp intrinsics ----
inline void __syncthreads() { lg_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { lg_emu::syncwarp(mask); }
inline void __threadfence_block() { std::atomic_signal_fence(std::memory_order_seq_cst); }

namespace lg_emu {
template <typename T>
inline T shfl_as(ShflKind kind, unsigned mask, T v, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = shfl(kind, mask, bits, arg, width);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}
}  // namespace lg_emu

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return lg_emu::shfl_as(lg_emu::SHFL_IDX, mask, v, src, width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return lg_emu::shfl_as(lg_emu::SHFL_XOR, mask, v, lane_mask, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return lg_emu::shfl_as(lg_emu::SHFL_UP, mask, v, (int)delta, width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return lg_emu::shfl_as(lg_emu::SHFL_DOWN, mask, v, (int)delta, width);
}

// ---- shared memory (see build.sh's rewrite) ----
// `__shared__ [__align__(A)] T name[dims];`  ->  LG_EMU_SHARED(T[dims], name, A)
#define LG_EMU_SHARED(TYPE, NAME, ALIGN)                                                              \
    static const char lg_emu_tag_##NAME = 0;                                                          \
    auto& NAME = *static_cast<std::add_pointer_t<TYPE>>(lg_emu::static_shared(&lg_emu_tag_##NAME, sizeof(TYPE),          \
                                                           std::max<size_t>(ALIGN, alignof(TYPE)), #NAME))
// `extern __shared__ T name[];`  ->  LG_EMU_DYNAMIC_SHARED(T, name)
#define LG_EMU_DYNAMIC_SHARED(TYPE, NAME) TYPE* NAME = static_cast<TYPE*>(lg_emu::dynamic_shared())

