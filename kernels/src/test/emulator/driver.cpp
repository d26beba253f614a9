// The CUDA driver API of the emulator (the functions lora-gateway's Java side reaches through
// JCuda), exported under the names libJCudaDriver imports (the `_v2` ones where cuda.h maps to
// them). One device: "lora-gateway CUDA emulator (CPU)", compute capability 9.0, 8 GiB. Device
// memory is host memory (mmap, committed lazily), so a device pointer is a host address. Streams
// run synchronously in call order; a kernel fault becomes the context's sticky error, returned
// by the next synchronize (and by every stream operation after it) until the primary context
// is released to zero references. Everything else JCuda imports is a weak stub (stubs.cpp,
// generated) that reports the call and returns CUDA_ERROR_NOT_SUPPORTED.
#include <sys/mman.h>

#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "emu_runtime.h"

#define LG_API extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

namespace {

constexpr const char* DEVICE_NAME = "lora-gateway CUDA emulator (CPU)";
constexpr unsigned long long TOTAL_MEMORY = 8ull << 30;
constexpr int SMEM_PER_BLOCK = 49152;
constexpr int SMEM_PER_BLOCK_OPTIN = 232448;
constexpr int SM_COUNT = 4;

struct Ctx;
struct Module;

struct Function {
    Module* module;
    const lg_emu::KernelInfo* kernel;
    int max_dynamic_smem = SMEM_PER_BLOCK;
    unsigned static_smem = 0;  // learned from the first launch
};

struct Module {
    std::map<std::string, std::unique_ptr<Function>> functions;
};

struct Stream {
    unsigned flags;
};

struct Event {
    unsigned flags;
    bool recorded = false;
    std::chrono::steady_clock::time_point at;
};

struct Ctx {
    int refs = 0;
    CUresult sticky = CUDA_SUCCESS;
    std::string sticky_message;
};

// All driver state, behind one lock (launches run one at a time).
std::recursive_mutex g_lock;
bool g_initialized = false;
Ctx g_primary;
thread_local Ctx* t_current = nullptr;
std::map<uintptr_t, size_t> g_device;  // base -> bytes
std::map<uintptr_t, size_t> g_host;    // pinned host allocations
unsigned long long g_used = 0;
std::set<Module*> g_modules;
std::set<Function*> g_functions;
std::set<Stream*> g_streams;
std::set<Event*> g_events;

bool verbose() {
    static const bool v = std::getenv("LG_CUDA_EMU_VERBOSE") != nullptr;
    return v;
}

CUresult fail(CUresult r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
CUresult fail(CUresult r, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "[cuda-emu] %s -> error %d\n", buf, r);
    return r;
}

#define LOCK std::lock_guard<std::recursive_mutex> lock_(g_lock)
#define NEED_INIT \
    if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED
#define NEED_CTX                                                                                      \
    NEED_INIT;                                                                                        \
    if (t_current == nullptr) return fail(CUDA_ERROR_INVALID_CONTEXT, "%s: no current context", __func__); \
    if (t_current->refs <= 0) return fail(CUDA_ERROR_INVALID_CONTEXT, "%s: the current context was released", __func__)
#define NEED_STREAM(s)                                                                                \
    if ((s) != nullptr && g_streams.count(static_cast<Stream*>(s)) == 0)                              \
        return fail(CUDA_ERROR_INVALID_HANDLE, "%s: stream %p is not a live stream", __func__, (void*)(s)); \
    if (t_current->sticky != CUDA_SUCCESS) return t_current->sticky

// The device allocation holding [p, p + n), or a message.
bool device_range(CUdeviceptr p, size_t n, const char* what) {
    auto it = g_device.upper_bound((uintptr_t)p);
    if (it != g_device.begin()) {
        --it;
        if ((uintptr_t)p >= it->first && (uintptr_t)p + n <= it->first + it->second) {
            return true;
        }
        if ((uintptr_t)p < it->first + it->second) {
            fail(CUDA_ERROR_INVALID_VALUE, "%s: %zu bytes at 0x%llx run past the end of the %zu-byte allocation at 0x%lx",
                 what, n, p, it->second, (unsigned long)it->first);
            return false;
        }
    }
    fail(CUDA_ERROR_INVALID_VALUE, "%s: 0x%llx (%zu bytes) is not in any device allocation", what, p, n);
    return false;
}

void destroy_context_state() {
    for (auto& [p, n] : g_device) munmap(reinterpret_cast<void*>(p), n);
    if (verbose() && !g_device.empty()) {
        std::fprintf(stderr, "[cuda-emu] primary context released with %zu device allocations live\n", g_device.size());
    }
    g_device.clear();
    g_used = 0;
    for (Module* m : g_modules) {
        for (auto& [n, f] : m->functions) g_functions.erase(f.get());
        delete m;
    }
    g_modules.clear();
    for (Stream* s : g_streams) delete s;
    g_streams.clear();
    for (Event* e : g_events) delete e;
    g_events.clear();
    g_primary.sticky = CUDA_SUCCESS;
    g_primary.sticky_message.clear();
}

CUresult copy(void* dst, const void* src, size_t n) {
    if (n > 0) std::memmove(dst, src, n);
    return CUDA_SUCCESS;
}

}  // namespace

// ---------------------------------------------------------------- init, device

LG_API CUresult cuInit(unsigned flags) {
    LOCK;
    if (flags != 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuInit(%u): flags must be 0", flags);
    g_initialized = true;
    return CUDA_SUCCESS;
}

LG_API CUresult cuDriverGetVersion(int* v) {
    if (v == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *v = 12060;
    return CUDA_SUCCESS;
}

LG_API CUresult cuDeviceGetCount(int* n) {
    LOCK;
    NEED_INIT;
    if (n == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return CUDA_SUCCESS;
}

LG_API CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    LOCK;
    NEED_INIT;
    if (d == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return fail(CUDA_ERROR_INVALID_DEVICE, "cuDeviceGet(%d): the emulator has device 0 only", ordinal);
    *d = 0;
    return CUDA_SUCCESS;
}

LG_API CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    std::snprintf(name, (size_t)len, "%s", DEVICE_NAME);
    return CUDA_SUCCESS;
}

LG_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *bytes = TOTAL_MEMORY;
    return CUDA_SUCCESS;
}

LG_API CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (v == nullptr) return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
        case 1: *v = 1024; break;                    // MAX_THREADS_PER_BLOCK
        case 2: case 3: *v = 1024; break;            // MAX_BLOCK_DIM_X, _Y
        case 4: *v = 64; break;                      // MAX_BLOCK_DIM_Z
        case 5: *v = 2147483647; break;              // MAX_GRID_DIM_X
        case 6: case 7: *v = 65535; break;           // MAX_GRID_DIM_Y, _Z
        case 8: *v = SMEM_PER_BLOCK; break;          // MAX_SHARED_MEMORY_PER_BLOCK
        case 9: *v = 65536; break;                   // TOTAL_CONSTANT_MEMORY
        case 10: *v = 32; break;                     // WARP_SIZE
        case 12: *v = 65536; break;                  // MAX_REGISTERS_PER_BLOCK
        case 13: *v = 1000000; break;                // CLOCK_RATE (kHz)
        case 14: *v = 512; break;                    // TEXTURE_ALIGNMENT
        case 16: *v = SM_COUNT; break;               // MULTIPROCESSOR_COUNT
        case 17: *v = 0; break;                      // KERNEL_EXEC_TIMEOUT
        case 18: *v = 0; break;                      // INTEGRATED
        case 19: *v = 1; break;                      // CAN_MAP_HOST_MEMORY
        case 20: *v = 0; break;                      // COMPUTE_MODE default
        case 31: *v = 1; break;                      // CONCURRENT_KERNELS
        case 32: *v = 0; break;                      // ECC_ENABLED
        case 33: case 34: case 50: *v = 0; break;    // PCI bus/device/domain
        case 36: *v = 1000000; break;                // MEMORY_CLOCK_RATE
        case 37: *v = 256; break;                    // GLOBAL_MEMORY_BUS_WIDTH
        case 38: *v = 4 << 20; break;                // L2_CACHE_SIZE
        case 39: *v = 2048; break;                   // MAX_THREADS_PER_MULTIPROCESSOR
        case 40: *v = 1; break;                      // ASYNC_ENGINE_COUNT
        case 41: *v = 1; break;                      // UNIFIED_ADDRESSING
        case 75: *v = 9; break;                      // COMPUTE_CAPABILITY_MAJOR
        case 76: *v = 0; break;                      // COMPUTE_CAPABILITY_MINOR
        case 81: *v = 233472; break;                 // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        case 82: *v = 65536; break;                  // MAX_REGISTERS_PER_MULTIPROCESSOR
        case 83: *v = 0; break;                      // MANAGED_MEMORY
        case 95: *v = 0; break;                      // COOPERATIVE_LAUNCH
        case 97: *v = SMEM_PER_BLOCK_OPTIN; break;   // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        case 106: *v = 32; break;                    // MAX_BLOCKS_PER_MULTIPROCESSOR
        case 111: *v = 1024; break;                  // RESERVED_SHARED_MEMORY_PER_BLOCK
        default:
            return fail(CUDA_ERROR_INVALID_VALUE, "cuDeviceGetAttribute(%d): attribute not emulated", attr);
    }
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- contexts

LG_API CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice d) {
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    g_primary.refs++;
    *ctx = &g_primary;
    return CUDA_SUCCESS;
}

LG_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (g_primary.refs <= 0) return fail(CUDA_ERROR_INVALID_CONTEXT, "cuDevicePrimaryCtxRelease: not retained");
    if (--g_primary.refs == 0) destroy_context_state();
    return CUDA_SUCCESS;
}

LG_API CUresult cuDevicePrimaryCtxGetState(CUdevice d, unsigned* flags, int* active) {
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (flags) *flags = 0;
    if (active) *active = g_primary.refs > 0;
    return CUDA_SUCCESS;
}

LG_API CUresult cuCtxSetCurrent(void* ctx) {
    LOCK;
    NEED_INIT;
    if (ctx != nullptr && ctx != &g_primary) return fail(CUDA_ERROR_INVALID_CONTEXT, "cuCtxSetCurrent(%p): not a context", ctx);
    t_current = static_cast<Ctx*>(ctx);
    return CUDA_SUCCESS;
}

LG_API CUresult cuCtxGetCurrent(void** ctx) {
    LOCK;
    NEED_INIT;
    if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *ctx = t_current;
    return CUDA_SUCCESS;
}

LG_API CUresult cuCtxSynchronize() {
    LOCK;
    NEED_CTX;
    return t_current->sticky;
}

// ---------------------------------------------------------------- streams and events

LG_API CUresult cuStreamCreate(void** s, unsigned flags) {
    LOCK;
    NEED_CTX;
    if (s == nullptr || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    Stream* st = new Stream{flags};
    g_streams.insert(st);
    *s = st;
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamDestroy_v2(void* s) {
    LOCK;
    NEED_CTX;
    if (g_streams.erase(static_cast<Stream*>(s)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamDestroy(%p)", s);
    delete static_cast<Stream*>(s);
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamSynchronize(void* s) {
    LOCK;
    NEED_CTX;
    if (s != nullptr && g_streams.count(static_cast<Stream*>(s)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamSynchronize(%p)", s);
    return t_current->sticky;
}

LG_API CUresult cuStreamQuery(void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    return CUDA_SUCCESS;
}

LG_API CUresult cuEventCreate(void** e, unsigned flags) {
    LOCK;
    NEED_CTX;
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Event* ev = new Event{flags, false, {}};
    g_events.insert(ev);
    *e = ev;
    return CUDA_SUCCESS;
}

LG_API CUresult cuEventDestroy_v2(void* e) {
    LOCK;
    NEED_CTX;
    if (g_events.erase(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventDestroy(%p)", e);
    delete static_cast<Event*>(e);
    return CUDA_SUCCESS;
}

LG_API CUresult cuEventRecord(void* e, void* s) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventRecord(%p)", e);
    NEED_STREAM(s);
    Event* ev = static_cast<Event*>(e);
    ev->recorded = true;
    ev->at = std::chrono::steady_clock::now();  // the stream has run everything before it already
    return CUDA_SUCCESS;
}

LG_API CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }

LG_API CUresult cuEventSynchronize(void* e) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventSynchronize(%p)", e);
    return t_current->sticky;
}

LG_API CUresult cuEventQuery(void* e) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventQuery(%p)", e);
    return t_current->sticky;
}

LG_API CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    LOCK;
    NEED_CTX;
    Event* a = static_cast<Event*>(start);
    Event* b = static_cast<Event*>(end);
    if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (g_events.count(a) == 0 || g_events.count(b) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: not an event");
    if ((a->flags | b->flags) & 2u) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: an event has CU_EVENT_DISABLE_TIMING");
    if (!a->recorded || !b->recorded) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: an event was never recorded");
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamWaitEvent(void* s, void* e, unsigned) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamWaitEvent(%p)", e);
    NEED_STREAM(s);
    return CUDA_SUCCESS;  // streams run in call order: the event's work is done
}

// ---------------------------------------------------------------- memory

LG_API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    LOCK;
    NEED_CTX;
    if (free_bytes == nullptr || total == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *total = TOTAL_MEMORY;
    *free_bytes = TOTAL_MEMORY - g_used;
    return CUDA_SUCCESS;
}

LG_API CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    LOCK;
    NEED_CTX;
    if (p == nullptr || bytes == 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemAlloc(%zu)", bytes);
    const size_t rounded = (bytes + 4095) & ~(size_t)4095;
    if (g_used + rounded > TOTAL_MEMORY) return CUDA_ERROR_OUT_OF_MEMORY;
    void* m = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    g_device[(uintptr_t)m] = bytes;
    g_used += rounded;
    *p = (CUdeviceptr)(uintptr_t)m;
    return CUDA_SUCCESS;
}

LG_API CUresult cuMemFree_v2(CUdeviceptr p) {
    LOCK;
    NEED_CTX;
    auto it = g_device.find((uintptr_t)p);
    if (it == g_device.end()) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemFree(0x%llx): not the base of a device allocation", p);
    const size_t rounded = (it->second + 4095) & ~(size_t)4095;
    munmap(reinterpret_cast<void*>(it->first), rounded);
    g_used -= rounded;
    g_device.erase(it);
    return CUDA_SUCCESS;
}

LG_API CUresult cuMemAllocHost_v2(void** p, size_t bytes) {
    LOCK;
    NEED_CTX;
    if (p == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    void* m = std::aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    if (m == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    g_host[(uintptr_t)m] = bytes;
    *p = m;
    return CUDA_SUCCESS;
}

LG_API CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) { return cuMemAllocHost_v2(p, bytes); }

LG_API CUresult cuMemFreeHost(void* p) {
    LOCK;
    NEED_CTX;
    if (g_host.erase((uintptr_t)p) == 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemFreeHost(%p): not a pinned allocation", p);
    std::free(p);
    return CUDA_SUCCESS;
}

LG_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (!device_range(dst, n, "cuMemcpyHtoD")) return CUDA_ERROR_INVALID_VALUE;
    return copy(reinterpret_cast<void*>(dst), src, n);
}

LG_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (!device_range(src, n, "cuMemcpyDtoH")) return CUDA_ERROR_INVALID_VALUE;
    return copy(dst, reinterpret_cast<const void*>(src), n);
}

LG_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (!device_range(dst, n, "cuMemcpyDtoD (destination)") || !device_range(src, n, "cuMemcpyDtoD (source)")) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    return copy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
}

LG_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr); }
LG_API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr); }
LG_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr); }

LG_API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    return copy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);  // unified addressing
}
LG_API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) { return cuMemcpyAsync(dst, src, n, nullptr); }

template <typename T>
static CUresult memset_n(CUdeviceptr dst, T v, size_t n, void* s, const char* what) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if ((dst % sizeof(T)) != 0) return fail(CUDA_ERROR_INVALID_VALUE, "%s: 0x%llx is not %zu-byte aligned", what, dst, sizeof(T));
    if (!device_range(dst, n * sizeof(T), what)) return CUDA_ERROR_INVALID_VALUE;
    T* p = reinterpret_cast<T*>(dst);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return CUDA_SUCCESS;
}

LG_API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void* s) { return memset_n<unsigned char>(d, v, n, s, "cuMemsetD8"); }
LG_API CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { return memset_n<unsigned char>(d, v, n, nullptr, "cuMemsetD8"); }
LG_API CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, void* s) { return memset_n<unsigned short>(d, v, n, s, "cuMemsetD16"); }
LG_API CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) { return memset_n<unsigned short>(d, v, n, nullptr, "cuMemsetD16"); }
LG_API CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, void* s) { return memset_n<unsigned>(d, v, n, s, "cuMemsetD32"); }
LG_API CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned v, size_t n) { return memset_n<unsigned>(d, v, n, nullptr, "cuMemsetD32"); }

// ---------------------------------------------------------------- modules and kernels

LG_API CUresult cuModuleLoadData(void** module, const void* image) {
    LOCK;
    NEED_CTX;
    if (module == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const unsigned char* b = static_cast<const unsigned char*>(image);
    const bool fatbin = b[0] == 0x50 && b[1] == 0xed && b[2] == 0x55 && b[3] == 0xba;
    const bool elf = b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F';
    const char* text = static_cast<const char*>(image);
    const bool ptx = !fatbin && !elf && std::strstr(text, ".version") != nullptr && std::strstr(text, ".entry") != nullptr;
    if (!fatbin && !elf && !ptx) {
        return fail(CUDA_ERROR_INVALID_IMAGE, "cuModuleLoadData: not a fatbin, cubin or PTX text");
    }
    Module* m = new Module();
    auto add = [&](const lg_emu::KernelInfo& k) {
        auto f = std::make_unique<Function>();
        f->module = m;
        f->kernel = &k;
        g_functions.insert(f.get());
        m->functions[k.name] = std::move(f);
    };
    if (ptx) {
        // no PTX execution: every .entry must have a stand-in (kernels.cpp, namespace ptx)
        for (const char* e = std::strstr(text, ".entry"); e != nullptr; e = std::strstr(e + 6, ".entry")) {
            const char* n = e + 6;
            while (*n == ' ' || *n == '\t') n++;
            size_t len = 0;
            while (n[len] == '_' || n[len] == '$' || std::isalnum((unsigned char)n[len])) len++;
            const std::string name(n, len);
            const lg_emu::KernelInfo* k = nullptr;
            for (int i = 0; i < lg_emu::ptx_count; i++) {
                if (name == lg_emu::ptx_table[i].name) k = &lg_emu::ptx_table[i];
            }
            if (k == nullptr) {
                for (auto& [fn, f] : m->functions) g_functions.erase(f.get());
                delete m;
                return fail(CUDA_ERROR_NOT_SUPPORTED, "cuModuleLoadData: PTX kernel '%s' has no stand-in in the emulator "
                            "(it runs the project's fatbin kernels from source and does not execute PTX)", name.c_str());
            }
            add(*k);
        }
    } else {
        for (int i = 0; i < lg_emu::kernel_count; i++) add(lg_emu::kernel_table[i]);
    }
    g_modules.insert(m);
    *module = m;
    return CUDA_SUCCESS;
}

LG_API CUresult cuModuleLoadDataEx(void** module, const void* image, unsigned, void*, void**) {
    return cuModuleLoadData(module, image);
}

LG_API CUresult cuModuleUnload(void* module) {
    LOCK;
    NEED_CTX;
    Module* m = static_cast<Module*>(module);
    if (g_modules.erase(m) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuModuleUnload(%p)", module);
    for (auto& [n, f] : m->functions) g_functions.erase(f.get());
    delete m;
    return CUDA_SUCCESS;
}

LG_API CUresult cuModuleGetFunction(void** f, void* module, const char* name) {
    LOCK;
    NEED_CTX;
    Module* m = static_cast<Module*>(module);
    if (g_modules.count(m) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuModuleGetFunction(%s): no such module", name);
    if (f == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto it = m->functions.find(name);
    if (it == m->functions.end()) return CUDA_ERROR_NOT_FOUND;
    *f = it->second.get();
    return CUDA_SUCCESS;
}

LG_API CUresult cuFuncGetAttribute(int* v, int attr, void* func) {
    LOCK;
    NEED_CTX;
    Function* f = static_cast<Function*>(func);
    if (g_functions.count(f) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuFuncGetAttribute: not a live function");
    if (v == nullptr) return CUDA_ERROR_INVALID_VALUE;
    switch (attr) {
        case 0: *v = f->kernel->max_threads; break;  // MAX_THREADS_PER_BLOCK (__launch_bounds__)
        case 1: *v = (int)f->static_smem; break;    // SHARED_SIZE_BYTES (known after a launch)
        case 2: case 3: *v = 0; break;               // CONST, LOCAL
        case 4: *v = 32; break;                      // NUM_REGS (a guess)
        case 5: case 6: *v = 90; break;              // PTX_VERSION, BINARY_VERSION
        case 7: *v = 0; break;                       // CACHE_MODE_CA
        case 8: *v = f->max_dynamic_smem; break;     // MAX_DYNAMIC_SHARED_SIZE_BYTES
        case 9: *v = -1; break;                      // PREFERRED_SHARED_MEMORY_CARVEOUT
        default: return fail(CUDA_ERROR_INVALID_VALUE, "cuFuncGetAttribute(%d): not emulated", attr);
    }
    return CUDA_SUCCESS;
}

LG_API CUresult cuFuncSetAttribute(void* func, int attr, int v) {
    LOCK;
    NEED_CTX;
    Function* f = static_cast<Function*>(func);
    if (g_functions.count(f) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuFuncSetAttribute: not a live function");
    switch (attr) {
        case 8:
            if (v < 0 || v + (int)f->static_smem > SMEM_PER_BLOCK_OPTIN) {
                return fail(CUDA_ERROR_INVALID_VALUE, "cuFuncSetAttribute(%s, MAX_DYNAMIC_SHARED_SIZE_BYTES, %d): above the "
                            "device's %d per block", f->kernel->name, v, SMEM_PER_BLOCK_OPTIN);
            }
            f->max_dynamic_smem = v;
            return CUDA_SUCCESS;
        case 9:
            return CUDA_SUCCESS;
        default:
            return fail(CUDA_ERROR_INVALID_VALUE, "cuFuncSetAttribute(%d): not emulated", attr);
    }
}

LG_API CUresult cuLaunchKernel(void* func, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               unsigned smem, void* s, void** params, void** extra) {
    LOCK;
    NEED_CTX;
    Function* f = static_cast<Function*>(func);
    if (g_functions.count(f) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuLaunchKernel: not a live function (module unloaded?)");
    NEED_STREAM(s);
    const char* name = f->kernel->name;
    if (extra != nullptr) return fail(CUDA_ERROR_NOT_SUPPORTED, "cuLaunchKernel(%s): 'extra' is not emulated", name);
    if (params == nullptr && f->kernel->params > 0) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): no kernelParams for %d parameters", name, f->kernel->params);
    }
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): grid %ux%ux%u block %ux%ux%u has a zero dimension", name, gx, gy,
                    gz, bx, by, bz);
    }
    if (gx > 2147483647u || gy > 65535 || gz > 65535) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): grid %ux%ux%u exceeds 2^31-1 x 65535 x 65535", name, gx, gy, gz);
    }
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    if (bx > 1024 || by > 1024 || bz > 64 || threads > 1024) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): block %ux%ux%u exceeds 1024 threads (1024 x 1024 x 64)", name,
                    bx, by, bz);
    }
    if (threads > (unsigned long long)f->kernel->max_threads) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): block of %llu threads exceeds its __launch_bounds__(%d)", name,
                    threads, f->kernel->max_threads);
    }
    if ((int)smem > f->max_dynamic_smem) {
        return fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): %u bytes of dynamic shared memory exceed "
                    "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = %d (raise it with cuFuncSetAttribute first)", name,
                    smem, f->max_dynamic_smem);
    }
    lg_emu::LaunchShape shape{{gx, gy, gz}, {bx, by, bz}, smem,
                              (unsigned)(f->max_dynamic_smem > SMEM_PER_BLOCK ? SMEM_PER_BLOCK_OPTIN : SMEM_PER_BLOCK)};
    if (verbose()) {
        std::fprintf(stderr, "[cuda-emu] launch %s grid %ux%ux%u block %ux%ux%u smem %u\n", name, gx, gy, gz, bx, by, bz, smem);
    }
    std::string fault = lg_emu::launch(*f->kernel, shape, params, &f->static_smem);
    if (!fault.empty()) {
        std::fprintf(stderr, "[cuda-emu] KERNEL FAULT in %s (grid %ux%ux%u, block %ux%ux%u, dynamic smem %u): %s\n", name, gx,
                     gy, gz, bx, by, bz, smem, fault.c_str());
        t_current->sticky = CUDA_ERROR_LAUNCH_FAILED;
        t_current->sticky_message = fault;
    }
    return CUDA_SUCCESS;  // like an asynchronous launch: the fault shows at the next synchronize
}
