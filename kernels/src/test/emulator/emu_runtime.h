// The CUDA execution model as the emulated kernels see it (threadIdx, shared memory, barriers,
// warp collectives) and the launch entry the fake driver calls. Implemented in runtime.cpp:
// every block's threads are fibers on one worker OS thread, blocks spread over a few workers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#define LG_EMU_TLS __attribute__((tls_model("initial-exec"))) thread_local

namespace lg_emu {

struct uint3v {
    unsigned x, y, z;
};

// What kernel code reads of the running thread and block (set by the scheduler before a switch).
struct ThreadPub {
    uint3v tid;
    unsigned lane;
    unsigned warp;
    unsigned linear;
};
struct BlockPub {
    uint3v bid;
    uint3v bdim;
    uint3v gdim;
};
extern LG_EMU_TLS ThreadPub* tls_thread;
extern LG_EMU_TLS BlockPub* tls_block;

// ---- barriers and warp collectives (each may switch fibers) ----
void syncthreads();
void syncwarp(unsigned mask);

enum ShflKind { SHFL_IDX, SHFL_XOR, SHFL_UP, SHFL_DOWN };
uint64_t shfl(ShflKind kind, unsigned mask, uint64_t bits, int arg, int width);

// A warp-collective operation (WMMA load/mma/store): every lane of the warp arrives with `key`
// (what must be identical across the warp, e.g. pointer and ldm) and its own `mine`; the last
// lane to arrive checks the keys and runs fn once with all 32 lanes' `mine` pointers.
using CollectiveFn = void (*)(void* const* lanes, const void* key);
void warp_collective(const char* what, const void* key, size_t key_bytes, void* mine, CollectiveFn fn);

// ---- shared memory ----
// Static __shared__ variables: one address per (block, declaration), found by the declaration's
// tag; the arena is filled with 0xff (NaN for floats) at every block start.
void* static_shared(const void* tag, size_t bytes, size_t align, const char* name);
void* dynamic_shared();

// Stops the calling kernel thread with a kernel fault (sticky CUDA_ERROR_LAUNCH_FAILED).
[[noreturn]] void fault(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- the kernel table (generated from the sources) and the launch ----
// A launch's arguments copied by value (stream capture: CUDA copies kernelParams when the launch
// is captured, so a graph replays the values of capture time whatever the caller's storage holds
// later). args() is a kernelParams array pointing into the owned copies.
struct CapturedArgs {
    virtual ~CapturedArgs() = default;
    virtual void** args() = 0;
};
struct KernelInfo {
    const char* name;
    void (*entry)(void** args);  // unpacks CUDA's kernelParams and calls the kernel
    int max_threads;             // __launch_bounds__
    int params;
    // copies each of kernelParams' values into owned storage, typed by the kernel's parameters
    std::unique_ptr<CapturedArgs> (*capture)(void** args);
};
extern const KernelInfo kernel_table[];
extern const int kernel_count;
extern const KernelInfo ptx_table[];  // stand-ins for the Java tests' hand-written PTX
extern const int ptx_count;

struct LaunchShape {
    uint3v grid;
    uint3v block;
    unsigned dynamic_smem;
    unsigned smem_limit;  // static + dynamic bytes a block may use (48 KB unless raised)
};
// Runs every block of the launch to completion (synchronously). Returns "" or the fault message.
std::string launch(const KernelInfo& k, const LaunchShape& shape, void** args, unsigned* static_smem_out);

}  // namespace lg_emu
