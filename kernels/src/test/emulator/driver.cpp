// The CUDA driver API of the emulator (the functions lora-gateway's Java side reaches through
// JCuda), exported under the names libJCudaDriver imports (the `_v2` ones where cuda.h maps to
// them). One device: "lora-gateway CUDA emulator (CPU)", compute capability 9.0, 8 GiB. Device
// memory is host memory (mmap, committed lazily), so a device pointer is a host address. Streams
// run synchronously in call order, except that in the async-copies test mode (below) a copy from
// pinned host memory is only recorded and performed at the stream's next operation, launch or
// synchronisation; a kernel fault becomes the context's sticky error, returned
// by the next synchronize (and by every stream operation after it) until the primary context
// is released to zero references. Stream capture records a capturing stream's operations (kernel
// arguments copied by value) into a graph that cuGraphLaunch replays in order on a stream.
// Everything else JCuda imports is a weak stub (stubs.cpp,
// generated) that reports the call and returns CUDA_ERROR_NOT_SUPPORTED.
#include <sys/mman.h>

#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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
    CUDA_ERROR_ILLEGAL_STATE = 401,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903,
    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906,
    CUDA_ERROR_CAPTURED_EVENT = 907,
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908,
};

// CUstreamCaptureMode, CUstreamCaptureStatus
enum : int { CAPTURE_MODE_GLOBAL = 0, CAPTURE_MODE_THREAD_LOCAL = 1, CAPTURE_MODE_RELAXED = 2 };
enum : int { CAPTURE_STATUS_NONE = 0, CAPTURE_STATUS_ACTIVE = 1, CAPTURE_STATUS_INVALIDATED = 2 };

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

// One operation of a graph: valid() re-checks its handles and ranges before every replay (a
// buffer freed or a module unloaded since the capture), run() performs it and returns false on a
// kernel fault (the sticky error is set; the replay stops there, as a faulted GPU context would).
struct Op {
    std::string what;
    std::function<bool()> valid;
    std::function<bool()> run;
};
using Ops = std::vector<std::shared_ptr<const Op>>;

struct Capture {
    unsigned long long id;
    int mode;
    std::thread::id thread;
    bool invalidated = false;
    Ops ops;
};

struct Stream {
    unsigned flags;
    std::unique_ptr<Capture> capture;  // while cuStreamBeginCapture .. cuStreamEndCapture
    // async-copies mode: host-to-device copies from pinned memory, issued but not yet performed
    std::vector<std::function<void()>> pending;
};

struct Event {
    unsigned flags;
    bool recorded = false;
    std::chrono::steady_clock::time_point at;
    unsigned long long captured = 0;  // the capture it was last recorded in (0: not in a capture)
};

struct Graph {
    Ops ops;
};
struct GraphExec {
    Ops ops;
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
std::set<Graph*> g_graphs;
std::set<GraphExec*> g_execs;
unsigned long long g_capture_ids = 0;
thread_local int t_capture_mode = CAPTURE_MODE_GLOBAL;  // cuThreadExchangeStreamCaptureMode

// The async-copies test mode: cuMemcpyHtoDAsync from pinned host memory on a stream only records
// the copy; it reads the host bytes later, when the stream next runs anything (another copy, a
// memset, a launch, a graph, an event record) or is synchronised (cuStreamSynchronize,
// cuStreamQuery, cuCtxSynchronize, cuMemFree/cuMemFreeHost, which wait for the device as CUDA's
// do). Host code that rewrites a staging buffer before the stream has caught up then sends the new
// bytes, as a GPU may. On with LG_CUDA_EMU_ASYNC_COPIES=1, or per context through the
// emulator-only limit LG_EMU_LIMIT_ASYNC_COPIES of cuCtxSetLimit (tests switch it on and off).
constexpr int LG_EMU_LIMIT_ASYNC_COPIES = 0x4c470001;
bool g_async_copies = [] {
    const char* v = std::getenv("LG_CUDA_EMU_ASYNC_COPIES");
    return v != nullptr && std::strcmp(v, "1") == 0;
}();

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
    if (t_current->sticky != CUDA_SUCCESS) return t_current->sticky;                                \
    if (Capture* c_ = capture_of(s); c_ != nullptr && c_->invalidated)                                \
        return fail(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "%s: stream capture %llu was invalidated", __func__, c_->id); \
    if (CUresult r_ = legacy_stream_use((s), __func__); r_ != CUDA_SUCCESS) return r_
#define UNSAFE(what) \
    if (CUresult r_ = unsafe_call(what); r_ != CUDA_SUCCESS) return r_

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
    for (Graph* g : g_graphs) delete g;
    g_graphs.clear();
    for (GraphExec* x : g_execs) delete x;
    g_execs.clear();
    g_primary.sticky = CUDA_SUCCESS;
    g_primary.sticky_message.clear();
}

CUresult copy(void* dst, const void* src, size_t n) {
    if (n > 0) std::memmove(dst, src, n);
    return CUDA_SUCCESS;
}

// Whether [p, p + n) lies in one cuMemAllocHost allocation (pageable memory is copied at the call,
// as CUDA stages it before cuMemcpyHtoDAsync returns).
bool pinned_range(const void* p, size_t n) {
    auto it = g_host.upper_bound((uintptr_t)p);
    if (it == g_host.begin()) return false;
    --it;
    return (uintptr_t)p >= it->first && (uintptr_t)p + n <= it->first + it->second;
}

// Performs the copies s has pending (async-copies mode), in issue order.
void drain(void* s) {
    if (s == nullptr) return;
    Stream* st = static_cast<Stream*>(s);
    if (st->pending.empty()) return;
    std::vector<std::function<void()>> run = std::move(st->pending);
    st->pending.clear();
    if (verbose()) std::fprintf(stderr, "[cuda-emu] %zu deferred host-to-device copies performed\n", run.size());
    for (auto& c : run) c();
}

void drain_all() {
    for (Stream* st : g_streams) drain(st);
}

// ---- stream capture

// s's capture, or null (s is a live stream or the legacy NULL stream, which never captures)
Capture* capture_of(void* s) {
    return s == nullptr ? nullptr : static_cast<Stream*>(s)->capture.get();
}

void invalidate(Capture* c, const char* why) {
    if (!c->invalidated) {
        std::fprintf(stderr, "[cuda-emu] stream capture %llu invalidated: %s\n", c->id, why);
        c->invalidated = true;
    }
}

// A failed call on a capturing stream invalidates the capture: its graph would lack the operation.
CUresult capture_error(void* s, CUresult r, const char* what) {
    if (Capture* c = capture_of(s)) invalidate(c, what);
    return r;
}

// Runs an operation now, or records it when s is capturing.
CUresult enqueue(void* s, Op op) {
    if (Capture* c = capture_of(s)) {
        c->ops.push_back(std::make_shared<const Op>(std::move(op)));
        return CUDA_SUCCESS;
    }
    drain(s);  // the stream's earlier copies come first
    op.run();  // a fault is sticky, reported by the next synchronize
    return CUDA_SUCCESS;
}

// A "potentially unsafe" call (synchronous copy or memset, allocation, free, device-wide
// synchronisation): prohibited, as CUDA does, while the calling thread captures (mode global or
// thread-local) or any thread captures in global mode, unless this thread's interaction mode is
// relaxed. The calling thread's own captures are invalidated.
CUresult unsafe_call(const char* what) {
    if (t_capture_mode == CAPTURE_MODE_RELAXED) return CUDA_SUCCESS;
    const std::thread::id me = std::this_thread::get_id();
    Capture* hit = nullptr;
    for (Stream* st : g_streams) {
        Capture* c = st->capture.get();
        if (c == nullptr || c->mode == CAPTURE_MODE_RELAXED) continue;
        if (c->thread == me) {
            invalidate(c, what);
            hit = c;
        } else if (c->mode == CAPTURE_MODE_GLOBAL && t_capture_mode == CAPTURE_MODE_GLOBAL) {
            hit = c;
        }
    }
    if (hit == nullptr) return CUDA_SUCCESS;
    return fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "%s: not permitted while stream capture %llu is in progress "
                "(capture mode %d)", what, hit->id, hit->mode);
}

// Work on the legacy NULL stream waits for every blocking stream: with one of them capturing, that
// is an implicit dependency on the capture (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, capture invalidated).
CUresult legacy_stream_use(void* s, const char* what) {
    if (s != nullptr) return CUDA_SUCCESS;
    Capture* hit = nullptr;
    for (Stream* st : g_streams) {
        if (st->capture && (st->flags & 1u) == 0) {
            invalidate(st->capture.get(), what);
            hit = st->capture.get();
        }
    }
    if (hit == nullptr) return CUDA_SUCCESS;
    return fail(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "%s: the legacy NULL stream would wait for blocking stream capture %llu",
                what, hit->id);
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
    bool capturing = false;
    for (Stream* st : g_streams) {
        if (st->capture) {
            invalidate(st->capture.get(), "cuCtxSynchronize");
            capturing = true;
        }
    }
    if (capturing) return fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "cuCtxSynchronize: a stream is capturing");
    drain_all();
    return t_current->sticky;
}

// Only the emulator's own limit: LG_EMU_LIMIT_ASYNC_COPIES (0 or 1) switches the async-copies test
// mode; switching it off first performs every pending copy. Real limits are not emulated.
LG_API CUresult cuCtxSetLimit(int limit, size_t value) {
    LOCK;
    NEED_CTX;
    if (limit != LG_EMU_LIMIT_ASYNC_COPIES || value > 1) {
        return fail(CUDA_ERROR_NOT_SUPPORTED, "cuCtxSetLimit(%d, %zu): not emulated", limit, value);
    }
    if (value == 0) drain_all();
    g_async_copies = value == 1;
    return CUDA_SUCCESS;
}

LG_API CUresult cuCtxGetLimit(size_t* value, int limit) {
    LOCK;
    NEED_CTX;
    if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (limit != LG_EMU_LIMIT_ASYNC_COPIES) return fail(CUDA_ERROR_NOT_SUPPORTED, "cuCtxGetLimit(%d): not emulated", limit);
    *value = g_async_copies ? 1 : 0;
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- streams and events

LG_API CUresult cuStreamCreate(void** s, unsigned flags) {
    LOCK;
    NEED_CTX;
    if (s == nullptr || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    Stream* st = new Stream{flags, nullptr, {}};
    g_streams.insert(st);
    *s = st;
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamDestroy_v2(void* s) {
    LOCK;
    NEED_CTX;
    if (g_streams.count(static_cast<Stream*>(s)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamDestroy(%p)", s);
    drain(s);  // CUDA finishes a destroyed stream's work
    g_streams.erase(static_cast<Stream*>(s));
    delete static_cast<Stream*>(s);
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamSynchronize(void* s) {
    LOCK;
    NEED_CTX;
    if (s != nullptr && g_streams.count(static_cast<Stream*>(s)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamSynchronize(%p)", s);
    if (Capture* c = capture_of(s)) {
        invalidate(c, "cuStreamSynchronize on the capturing stream");
        return fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "cuStreamSynchronize(%p): the stream is capturing", s);
    }
    if (CUresult r = legacy_stream_use(s, "cuStreamSynchronize"); r != CUDA_SUCCESS) return r;
    if (s == nullptr) {
        drain_all();
    } else {
        drain(s);
    }
    return t_current->sticky;
}

LG_API CUresult cuStreamQuery(void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (Capture* c = capture_of(s)) {
        invalidate(c, "cuStreamQuery on the capturing stream");
        return fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "cuStreamQuery(%p): the stream is capturing", s);
    }
    drain(s);  // the pending copies may as well have finished by now
    return CUDA_SUCCESS;
}

LG_API CUresult cuEventCreate(void** e, unsigned flags) {
    LOCK;
    NEED_CTX;
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Event* ev = new Event{flags, false, {}, 0};
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

// In a capture, a plain record makes the event a captured event (a join point for
// cuStreamWaitEvent inside the capture, no graph node; querying or timing it fails with
// CUDA_ERROR_CAPTURED_EVENT); CU_EVENT_RECORD_EXTERNAL (1) records an event-record node that
// stamps the time at each replay.
LG_API CUresult cuEventRecordWithFlags(void* e, void* s, unsigned flags) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventRecord(%p)", e);
    NEED_STREAM(s);
    if (flags > 1) return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuEventRecordWithFlags(%u)", flags), "cuEventRecordWithFlags");
    Event* ev = static_cast<Event*>(e);
    Capture* c = capture_of(s);
    if (c != nullptr && (flags & 1u) == 0) {
        ev->captured = c->id;
        return CUDA_SUCCESS;
    }
    return enqueue(s, {"event record", [ev] { return g_events.count(ev) != 0; }, [ev] {
                           ev->recorded = true;
                           ev->captured = 0;
                           ev->at = std::chrono::steady_clock::now();  // the stream has run everything before it already
                           return true;
                       }});
}

LG_API CUresult cuEventRecord(void* e, void* s) { return cuEventRecordWithFlags(e, s, 0); }

LG_API CUresult cuEventSynchronize(void* e) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventSynchronize(%p)", e);
    if (static_cast<Event*>(e)->captured) return fail(CUDA_ERROR_CAPTURED_EVENT, "cuEventSynchronize(%p): recorded in a capture", e);
    return t_current->sticky;
}

LG_API CUresult cuEventQuery(void* e) {
    LOCK;
    NEED_CTX;
    if (g_events.count(static_cast<Event*>(e)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventQuery(%p)", e);
    if (static_cast<Event*>(e)->captured) return fail(CUDA_ERROR_CAPTURED_EVENT, "cuEventQuery(%p): recorded in a capture", e);
    return t_current->sticky;
}

LG_API CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    LOCK;
    NEED_CTX;
    Event* a = static_cast<Event*>(start);
    Event* b = static_cast<Event*>(end);
    if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (g_events.count(a) == 0 || g_events.count(b) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: not an event");
    if (a->captured || b->captured) return fail(CUDA_ERROR_CAPTURED_EVENT, "cuEventElapsedTime: an event was last recorded in a capture");
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
    const Event* ev = static_cast<Event*>(e);
    Capture* c = capture_of(s);
    if (ev->captured != 0 && (c == nullptr || c->id != ev->captured)) {
        // joining another stream into a capture (fork/join across streams) is not emulated
        return capture_error(s, fail(CUDA_ERROR_NOT_SUPPORTED, "cuStreamWaitEvent(%p): the event was recorded in stream capture %llu; "
                                     "cross-stream capture is not emulated", e, ev->captured), "cuStreamWaitEvent");
    }
    return CUDA_SUCCESS;  // streams run in call order (replays too): the event's work is done
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
    UNSAFE("cuMemAlloc");
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
    UNSAFE("cuMemFree");
    drain_all();  // cuMemFree waits for the device
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
    UNSAFE("cuMemAllocHost");
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
    UNSAFE("cuMemFreeHost");
    drain_all();  // copies may still read the memory
    if (g_host.erase((uintptr_t)p) == 0) return fail(CUDA_ERROR_INVALID_VALUE, "cuMemFreeHost(%p): not a pinned allocation", p);
    std::free(p);
    return CUDA_SUCCESS;
}

// Copies from or to host memory keep the host pointer: a replayed graph reads and writes the host
// memory at replay time, as CUDA does. Device ranges are checked when issued and before every replay.
LG_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (!device_range(dst, n, "cuMemcpyHtoD")) return capture_error(s, CUDA_ERROR_INVALID_VALUE, "cuMemcpyHtoDAsync failed");
    if (g_async_copies && s != nullptr && capture_of(s) == nullptr && pinned_range(src, n)) {
        static_cast<Stream*>(s)->pending.push_back([=] { copy(reinterpret_cast<void*>(dst), src, n); });
        return CUDA_SUCCESS;
    }
    return enqueue(s, {"cuMemcpyHtoD", [=] { return device_range(dst, n, "cuMemcpyHtoD (graph)"); },
                       [=] { return copy(reinterpret_cast<void*>(dst), src, n) == CUDA_SUCCESS; }});
}

LG_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (!device_range(src, n, "cuMemcpyDtoH")) return capture_error(s, CUDA_ERROR_INVALID_VALUE, "cuMemcpyDtoHAsync failed");
    return enqueue(s, {"cuMemcpyDtoH", [=] { return device_range(src, n, "cuMemcpyDtoH (graph)"); },
                       [=] { return copy(dst, reinterpret_cast<const void*>(src), n) == CUDA_SUCCESS; }});
}

LG_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    if (!device_range(dst, n, "cuMemcpyDtoD (destination)") || !device_range(src, n, "cuMemcpyDtoD (source)")) {
        return capture_error(s, CUDA_ERROR_INVALID_VALUE, "cuMemcpyDtoDAsync failed");
    }
    return enqueue(s, {"cuMemcpyDtoD",
                       [=] {
                           return device_range(dst, n, "cuMemcpyDtoD (graph, destination)") &&
                                  device_range(src, n, "cuMemcpyDtoD (graph, source)");
                       },
                       [=] { return copy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n) == CUDA_SUCCESS; }});
}

// The synchronous copies and memsets run on the legacy NULL stream and are prohibited during capture.
LG_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    LOCK;
    NEED_CTX;
    UNSAFE("cuMemcpyHtoD");
    return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr);
}
LG_API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    LOCK;
    NEED_CTX;
    UNSAFE("cuMemcpyDtoH");
    return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
}
LG_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    LOCK;
    NEED_CTX;
    UNSAFE("cuMemcpyDtoD");
    return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr);
}

LG_API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    LOCK;
    NEED_CTX;
    NEED_STREAM(s);
    return enqueue(s, {"cuMemcpy", [] { return true; },  // unified addressing: host or device, unchecked
                       [=] { return copy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n) == CUDA_SUCCESS; }});
}
LG_API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    LOCK;
    NEED_CTX;
    UNSAFE("cuMemcpy");
    return cuMemcpyAsync(dst, src, n, nullptr);
}

template <typename T>
static CUresult memset_n(CUdeviceptr dst, T v, size_t n, void* s, const char* what, bool sync) {
    LOCK;
    NEED_CTX;
    if (sync) UNSAFE(what);
    NEED_STREAM(s);
    if ((dst % sizeof(T)) != 0) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "%s: 0x%llx is not %zu-byte aligned", what, dst, sizeof(T)), what);
    }
    if (!device_range(dst, n * sizeof(T), what)) return capture_error(s, CUDA_ERROR_INVALID_VALUE, what);
    return enqueue(s, {what, [=] { return device_range(dst, n * sizeof(T), what); }, [=] {
                           T* p = reinterpret_cast<T*>(dst);
                           for (size_t i = 0; i < n; i++) p[i] = v;
                           return true;
                       }});
}

LG_API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void* s) { return memset_n<unsigned char>(d, v, n, s, "cuMemsetD8", false); }
LG_API CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { return memset_n<unsigned char>(d, v, n, nullptr, "cuMemsetD8", true); }
LG_API CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, void* s) { return memset_n<unsigned short>(d, v, n, s, "cuMemsetD16", false); }
LG_API CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) { return memset_n<unsigned short>(d, v, n, nullptr, "cuMemsetD16", true); }
LG_API CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, void* s) { return memset_n<unsigned>(d, v, n, s, "cuMemsetD32", false); }
LG_API CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned v, size_t n) { return memset_n<unsigned>(d, v, n, nullptr, "cuMemsetD32", true); }

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

// Runs a validated launch; a fault becomes the context's sticky error. Returns false on a fault.
static bool run_kernel(Function* f, const lg_emu::LaunchShape& shape, void** params) {
    const char* name = f->kernel->name;
    const auto& g = shape.grid;
    const auto& b = shape.block;
    if (verbose()) {
        std::fprintf(stderr, "[cuda-emu] launch %s grid %ux%ux%u block %ux%ux%u smem %u\n", name, g.x, g.y, g.z, b.x, b.y, b.z,
                     shape.dynamic_smem);
    }
    std::string fault = lg_emu::launch(*f->kernel, shape, params, &f->static_smem);
    if (!fault.empty()) {
        std::fprintf(stderr, "[cuda-emu] KERNEL FAULT in %s (grid %ux%ux%u, block %ux%ux%u, dynamic smem %u): %s\n", name, g.x,
                     g.y, g.z, b.x, b.y, b.z, shape.dynamic_smem, fault.c_str());
        t_current->sticky = CUDA_ERROR_LAUNCH_FAILED;
        t_current->sticky_message = fault;
        return false;
    }
    return true;
}

LG_API CUresult cuLaunchKernel(void* func, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               unsigned smem, void* s, void** params, void** extra) {
    LOCK;
    NEED_CTX;
    Function* f = static_cast<Function*>(func);
    if (g_functions.count(f) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuLaunchKernel: not a live function (module unloaded?)");
    NEED_STREAM(s);
    const char* name = f->kernel->name;
    if (extra != nullptr) return capture_error(s, fail(CUDA_ERROR_NOT_SUPPORTED, "cuLaunchKernel(%s): 'extra' is not emulated", name), "cuLaunchKernel failed");
    if (params == nullptr && f->kernel->params > 0) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): no kernelParams for %d parameters", name, f->kernel->params), "cuLaunchKernel failed");
    }
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): grid %ux%ux%u block %ux%ux%u has a zero dimension", name, gx, gy,
                    gz, bx, by, bz), "cuLaunchKernel failed");
    }
    if (gx > 2147483647u || gy > 65535 || gz > 65535) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): grid %ux%ux%u exceeds 2^31-1 x 65535 x 65535", name, gx, gy, gz), "cuLaunchKernel failed");
    }
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    if (bx > 1024 || by > 1024 || bz > 64 || threads > 1024) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): block %ux%ux%u exceeds 1024 threads (1024 x 1024 x 64)", name,
                    bx, by, bz), "cuLaunchKernel failed");
    }
    if (threads > (unsigned long long)f->kernel->max_threads) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): block of %llu threads exceeds its __launch_bounds__(%d)", name,
                    threads, f->kernel->max_threads), "cuLaunchKernel failed");
    }
    if ((int)smem > f->max_dynamic_smem) {
        return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): %u bytes of dynamic shared memory exceed "
                    "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = %d (raise it with cuFuncSetAttribute first)", name,
                    smem, f->max_dynamic_smem), "cuLaunchKernel failed");
    }
    lg_emu::LaunchShape shape{{gx, gy, gz}, {bx, by, bz}, smem,
                              (unsigned)(f->max_dynamic_smem > SMEM_PER_BLOCK ? SMEM_PER_BLOCK_OPTIN : SMEM_PER_BLOCK)};
    if (capture_of(s) != nullptr) {
        // CUDA copies kernelParams when the launch is captured: the graph owns the values
        std::shared_ptr<lg_emu::CapturedArgs> args = f->kernel->capture(params);
        return enqueue(s, {name, [f] { return g_functions.count(f) != 0; }, [f, shape, args] { return run_kernel(f, shape, args->args()); }});
    }
    drain(s);
    run_kernel(f, shape, params);
    return CUDA_SUCCESS;  // like an asynchronous launch: the fault shows at the next synchronize
}

// ---------------------------------------------------------------- stream capture and graphs

LG_API CUresult cuStreamBeginCapture_v2(void* s, int mode) {
    LOCK;
    NEED_CTX;
    if (s == nullptr) return fail(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "cuStreamBeginCapture: the legacy NULL stream cannot capture");
    NEED_STREAM(s);
    if (mode < CAPTURE_MODE_GLOBAL || mode > CAPTURE_MODE_RELAXED) return fail(CUDA_ERROR_INVALID_VALUE, "cuStreamBeginCapture(mode %d)", mode);
    Stream* st = static_cast<Stream*>(s);
    if (st->capture) return fail(CUDA_ERROR_ILLEGAL_STATE, "cuStreamBeginCapture(%p): the stream is already capturing", s);
    drain(s);  // copies issued before the capture are not part of it
    st->capture = std::make_unique<Capture>(Capture{++g_capture_ids, mode, std::this_thread::get_id(), false, {}});
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamBeginCapture(void* s) { return cuStreamBeginCapture_v2(s, CAPTURE_MODE_GLOBAL); }

// Ends the capture (also an invalidated one, then with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED and no graph).
LG_API CUresult cuStreamEndCapture(void* s, void** graph) {
    LOCK;
    NEED_CTX;
    if (s != nullptr && g_streams.count(static_cast<Stream*>(s)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamEndCapture(%p)", s);
    if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Capture* c = capture_of(s);
    if (c == nullptr) return fail(CUDA_ERROR_ILLEGAL_STATE, "cuStreamEndCapture(%p): the stream is not capturing", s);
    if (c->mode != CAPTURE_MODE_RELAXED && c->thread != std::this_thread::get_id()) {
        return fail(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "cuStreamEndCapture(%p): capture %llu began on another thread", s, c->id);
    }
    std::unique_ptr<Capture> done = std::move(static_cast<Stream*>(s)->capture);
    *graph = nullptr;
    if (done->invalidated) {
        return fail(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "cuStreamEndCapture(%p): capture %llu was invalidated", s, done->id);
    }
    Graph* g = new Graph{std::move(done->ops)};
    g_graphs.insert(g);
    *graph = g;
    return CUDA_SUCCESS;
}

LG_API CUresult cuStreamIsCapturing(void* s, int* status) {
    LOCK;
    NEED_CTX;
    if (s != nullptr && g_streams.count(static_cast<Stream*>(s)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamIsCapturing(%p)", s);
    if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (s == nullptr) {
        for (Stream* st : g_streams) {
            if (st->capture && (st->flags & 1u) == 0) {
                invalidate(st->capture.get(), "cuStreamIsCapturing on the legacy NULL stream");
                return fail(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "cuStreamIsCapturing(NULL): a blocking stream is capturing");
            }
        }
    }
    const Capture* c = capture_of(s);
    *status = c == nullptr ? CAPTURE_STATUS_NONE : c->invalidated ? CAPTURE_STATUS_INVALIDATED : CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
}

// cuStreamGetCaptureInfo (CUDA 10 signature: status and capture id)
LG_API CUresult cuStreamGetCaptureInfo(void* s, int* status, unsigned long long* id) {
    LOCK;
    if (CUresult r = cuStreamIsCapturing(s, status); r != CUDA_SUCCESS) return r;
    if (id != nullptr && *status != CAPTURE_STATUS_NONE) *id = capture_of(s)->id;
    return CUDA_SUCCESS;
}

LG_API CUresult cuThreadExchangeStreamCaptureMode(int* mode) {
    if (mode == nullptr || *mode < CAPTURE_MODE_GLOBAL || *mode > CAPTURE_MODE_RELAXED) return CUDA_ERROR_INVALID_VALUE;
    const int old = t_capture_mode;
    t_capture_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}

LG_API CUresult cuGraphDestroy(void* graph) {
    LOCK;
    NEED_CTX;
    if (g_graphs.erase(static_cast<Graph*>(graph)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuGraphDestroy(%p)", graph);
    delete static_cast<Graph*>(graph);
    return CUDA_SUCCESS;
}

// The executable graph shares the graph's operations (immutable), so it outlives cuGraphDestroy.
// cuGraphInstantiate is a macro for this function in CUDA 12's cuda.h (and what JCuda calls).
LG_API CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
    LOCK;
    NEED_CTX;
    if (exec == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = static_cast<Graph*>(graph);
    if (g_graphs.count(g) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuGraphInstantiate(%p): not a live graph", graph);
    if (flags & ~15ull) return fail(CUDA_ERROR_INVALID_VALUE, "cuGraphInstantiate: flags 0x%llx", flags);
    GraphExec* x = new GraphExec{g->ops};
    g_execs.insert(x);
    *exec = x;
    return CUDA_SUCCESS;
}

LG_API CUresult cuGraphExecDestroy(void* exec) {
    LOCK;
    NEED_CTX;
    if (g_execs.erase(static_cast<GraphExec*>(exec)) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuGraphExecDestroy(%p)", exec);
    delete static_cast<GraphExec*>(exec);
    return CUDA_SUCCESS;
}

// Replays the graph's operations in order on s (synchronously, like every stream here), or, on a
// capturing stream, records them into that capture (a child graph). Every operation is re-checked
// first (a freed buffer, an unloaded module): then nothing runs and the launch fails. A kernel fault
// sets the sticky error and ends the replay.
LG_API CUresult cuGraphLaunch(void* exec, void* s) {
    LOCK;
    NEED_CTX;
    GraphExec* x = static_cast<GraphExec*>(exec);
    if (g_execs.count(x) == 0) return fail(CUDA_ERROR_INVALID_HANDLE, "cuGraphLaunch(%p): not a live executable graph", exec);
    NEED_STREAM(s);
    for (size_t i = 0; i < x->ops.size(); i++) {
        if (!x->ops[i]->valid()) {
            return capture_error(s, fail(CUDA_ERROR_INVALID_VALUE, "cuGraphLaunch: node %zu (%s) refers to freed memory or an unloaded "
                                         "module", i, x->ops[i]->what.c_str()), "cuGraphLaunch failed");
        }
    }
    if (Capture* c = capture_of(s)) {
        c->ops.insert(c->ops.end(), x->ops.begin(), x->ops.end());
        return CUDA_SUCCESS;
    }
    if (verbose()) std::fprintf(stderr, "[cuda-emu] graph launch %p: %zu nodes\n", exec, x->ops.size());
    drain(s);
    for (const auto& op : x->ops) {
        if (!op->run()) break;
    }
    return CUDA_SUCCESS;
}
