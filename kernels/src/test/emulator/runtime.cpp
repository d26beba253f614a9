// The execution model: a launch's blocks go to a few worker OS threads; each worker runs a block's
// threads as fibers (a hand-written x86-64 context switch, no signal-mask syscalls) in thread
// order, each fiber running as far as it can before the next one starts, so a missing
// __syncthreads shows up as a read of shared memory nobody wrote yet (the arena is refilled with
// 0xff, a NaN, at every block start). Barriers and warp collectives are checked:
//   - __syncthreads completes when every live thread of the block waits at it; if some threads
//     exited instead, or the threads wait at different kinds of barrier forever, it is a fault;
//   - a shuffle/__syncwarp/WMMA op completes when all lanes of its mask arrive at the same kind of
//     op with the same mask; a lane that exited or waits elsewhere is a fault, not a hang;
//   - a launch that runs past LG_CUDA_EMU_TIMEOUT_S (default 300) is stopped at its next barrier,
//     or, if a thread spins without reaching one, the process is aborted with a message.
// A fault stops the launch (remaining blocks do not run) and is returned as a message; the
// driver turns it into a sticky CUDA_ERROR_LAUNCH_FAILED.
#include "emu_runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

extern "C" void lg_emu_swap(void** save_sp, void* next_sp);
extern "C" void lg_emu_trampoline();
extern "C" __attribute__((visibility("hidden"))) void lg_emu_fiber_main(void* fiber);

// save callee-saved registers, MXCSR and the x87 control word on the current stack, store the
// stack pointer in *save_sp, load next_sp and restore the same from there.
asm(R"(
    .text
    .globl lg_emu_swap
    .hidden lg_emu_swap
    .type lg_emu_swap, @function
lg_emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size lg_emu_swap, .-lg_emu_swap

    .globl lg_emu_trampoline
    .hidden lg_emu_trampoline
    .type lg_emu_trampoline, @function
lg_emu_trampoline:
    movq %r12, %rdi
    call lg_emu_fiber_main
    ud2
    .size lg_emu_trampoline, .-lg_emu_trampoline
)");

namespace lg_emu {

LG_EMU_TLS ThreadPub* tls_thread = nullptr;
LG_EMU_TLS BlockPub* tls_block = nullptr;

namespace {

constexpr size_t STACK_BYTES = 128 << 10;  // per kernel thread; the kernels' locals are a few KB
constexpr size_t STATIC_SMEM_MAX = 48 << 10;
constexpr size_t DYNAMIC_SMEM_MAX = 232448;

enum State { READY, AT_BARRIER, AT_WARP, EXITED };

struct Fiber : ThreadPub {
    void* sp = nullptr;
    char* stack = nullptr;  // lowest usable byte; a guard page lies below
    State state = READY;
    const char* waiting = nullptr;  // what it waits at, for messages
};

struct WarpOp {
    const char* what = nullptr;  // nullptr: no op pending
    unsigned mask = 0;
    unsigned arrived = 0;
    int kind = 0;
    int width = 0;
    unsigned char key[64];
    size_t key_bytes = 0;
    uint64_t in[32];
    int arg[32];
    uint64_t out[32];
    void* mine[32];
    CollectiveFn fn = nullptr;
};

struct Launch {
    const KernelInfo* kernel;
    LaunchShape shape;
    void** args;
    std::atomic<long long> next_block{0};
    long long blocks;
    std::atomic<bool> stop{false};
    std::atomic<int> running{0};
    std::mutex fault_lock;
    std::string fault;  // first fault
    std::atomic<unsigned> static_smem{0};
};

struct Worker {
    void* sched_sp = nullptr;
    std::vector<Fiber> fibers;
    int nthreads = 0;
    BlockPub pub{};
    Launch* launch = nullptr;
    // block state
    int exited = 0;
    int at_barrier = 0;
    std::vector<WarpOp> warps;
    std::string fault;
    // shared memory
    alignas(128) unsigned char static_smem[STATIC_SMEM_MAX];
    size_t static_used = 0;
    size_t static_dirty = 0;
    struct Decl {
        const void* tag;
        size_t offset;
        size_t bytes;
    };
    std::vector<Decl> decls;
    unsigned char* dynamic_smem = nullptr;
};

LG_EMU_TLS Worker* tls_worker = nullptr;
LG_EMU_TLS Fiber* tls_fiber = nullptr;

std::atomic<bool> g_deadline_passed{false};

void switch_to_scheduler(Fiber* f) { lg_emu_swap(&f->sp, tls_worker->sched_sp); }

std::string where(const Worker& w, const Fiber* f) {
    char buf[256];
    if (f != nullptr) {
        std::snprintf(buf, sizeof buf, "%s block (%u,%u,%u) thread (%u,%u,%u) [warp %u lane %u]", w.launch->kernel->name,
                      w.pub.bid.x, w.pub.bid.y, w.pub.bid.z, f->tid.x, f->tid.y, f->tid.z, f->warp, f->lane);
    } else {
        std::snprintf(buf, sizeof buf, "%s block (%u,%u,%u)", w.launch->kernel->name, w.pub.bid.x, w.pub.bid.y,
                      w.pub.bid.z);
    }
    return buf;
}

// Ends the current fiber with a fault; never returns.
[[noreturn]] void fiber_fault(const std::string& msg) {
    Worker& w = *tls_worker;
    Fiber* f = tls_fiber;
    if (w.fault.empty()) {
        w.fault = where(w, f) + ": " + msg;
    }
    f->state = EXITED;
    switch_to_scheduler(f);
    std::abort();  // unreachable: a faulted fiber is never resumed
}

void check_deadline() {
    if (g_deadline_passed.load(std::memory_order_relaxed)) {
        fiber_fault("the launch ran past LG_CUDA_EMU_TIMEOUT_S (a hang?)");
    }
}

void* map_stack() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        std::fprintf(stderr, "[cuda-emu] cannot map a fiber stack\n");
        std::abort();
    }
    mprotect(p, page, PROT_NONE);  // guard page: an overflow faults instead of corrupting a neighbour
    return static_cast<char*>(p) + page;
}

void init_fiber(Fiber& f) {
    char* top = f.stack + STACK_BYTES - 16;  // 16-byte aligned: the trampoline's call sees an aligned stack
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 64);
    uint32_t csr[2];
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(*reinterpret_cast<uint16_t*>(&csr[1])));
    std::memcpy(sp, csr, 8);
    sp[1] = 0;                                         // r15
    sp[2] = 0;                                         // r14
    sp[3] = 0;                                         // r13
    sp[4] = reinterpret_cast<uint64_t>(&f);            // r12: the fiber, for the trampoline
    sp[5] = 0;                                         // rbx
    sp[6] = 0;                                         // rbp
    sp[7] = reinterpret_cast<uint64_t>(&lg_emu_trampoline);  // return address
    f.sp = sp;
    f.state = READY;
    f.waiting = nullptr;
}

std::string describe_stall(const Worker& w) {
    std::string s;
    char buf[256];
    int at_warp = 0;
    for (int i = 0; i < w.nthreads; i++) {
        if (w.fibers[i].state == AT_WARP) at_warp++;
    }
    std::snprintf(buf, sizeof buf, "no thread can go on: %d of %d threads wait at __syncthreads, %d at warp operations, %d exited",
                  w.at_barrier, w.nthreads, at_warp, w.exited);
    s += buf;
    for (size_t wi = 0; wi < w.warps.size(); wi++) {
        const WarpOp& op = w.warps[wi];
        if (op.what == nullptr) continue;
        unsigned missing = op.mask & ~op.arrived;
        std::snprintf(buf, sizeof buf, "; warp %zu waits at %s (mask %08x) for lanes %08x", wi, op.what, op.mask, missing);
        s += buf;
        for (int l = 0; l < 32; l++) {
            if (missing & (1u << l)) {
                const size_t t = wi * 32 + l;
                const char* st = t >= (size_t)w.nthreads ? "does not exist"
                                 : w.fibers[t].state == EXITED ? "exited"
                                 : w.fibers[t].state == AT_BARRIER ? "is at __syncthreads"
                                 : w.fibers[t].waiting ? w.fibers[t].waiting : "waits";
                std::snprintf(buf, sizeof buf, " (lane %d %s)", l, st);
                s += buf;
                break;
            }
        }
    }
    return s;
}

// Runs one block to completion or fault. Returns false on a fault (message in w.fault).
bool run_block(Worker& w, long long b) {
    Launch& L = *w.launch;
    const uint3v g = L.shape.grid;
    w.pub.bid = uint3v{(unsigned)(b % g.x), (unsigned)((b / g.x) % g.y), (unsigned)(b / ((long long)g.x * g.y))};
    w.exited = 0;
    w.at_barrier = 0;
    w.fault.clear();
    for (WarpOp& op : w.warps) {
        op.what = nullptr;
        op.arrived = 0;
    }
    std::memset(w.static_smem, 0xff, w.static_dirty);
    w.static_used = 0;
    w.decls.clear();
    if (L.shape.dynamic_smem > 0) {
        std::memset(w.dynamic_smem, 0xff, L.shape.dynamic_smem);
    }
    for (int i = 0; i < w.nthreads; i++) {
        init_fiber(w.fibers[i]);
    }
    tls_block = &w.pub;
    for (;;) {
        bool ran = false;
        for (int i = 0; i < w.nthreads; i++) {
            Fiber& f = w.fibers[i];
            if (f.state != READY) continue;
            ran = true;
            tls_fiber = &f;
            tls_thread = &f;
            lg_emu_swap(&w.sched_sp, f.sp);
            tls_fiber = nullptr;
            if (!w.fault.empty()) {
                return false;
            }
        }
        if (ran) continue;
        if (w.exited == w.nthreads) {
            return true;
        }
        if (w.at_barrier > 0 && w.at_barrier + w.exited == w.nthreads) {
            if (w.exited > 0) {
                const Fiber* gone = nullptr;
                for (int i = 0; i < w.nthreads && gone == nullptr; i++) {
                    if (w.fibers[i].state == EXITED) gone = &w.fibers[i];
                }
                char buf[256];
                std::snprintf(buf, sizeof buf,
                              ": __syncthreads reached by %d threads while %d exited without reaching it (e.g. thread "
                              "(%u,%u,%u)): a barrier in divergent code",
                              w.at_barrier, w.exited, gone->tid.x, gone->tid.y, gone->tid.z);
                w.fault = where(w, nullptr) + buf;
                return false;
            }
            for (int i = 0; i < w.nthreads; i++) {
                w.fibers[i].state = READY;
                w.fibers[i].waiting = nullptr;
            }
            w.at_barrier = 0;
            continue;
        }
        w.fault = where(w, nullptr) + ": " + describe_stall(w);
        return false;
    }
}

void ensure_fibers(Worker& w, int n) {
    while ((int)w.fibers.size() < n) {
        w.fibers.emplace_back();
        w.fibers.back().stack = static_cast<char*>(map_stack());
    }
}

void work(Worker& w, Launch& L) {
    const uint3v bd = L.shape.block;
    w.launch = &L;
    w.nthreads = (int)(bd.x * bd.y * bd.z);
    ensure_fibers(w, w.nthreads);
    for (int i = 0; i < w.nthreads; i++) {
        Fiber& f = w.fibers[i];
        f.tid = uint3v{(unsigned)i % bd.x, ((unsigned)i / bd.x) % bd.y, (unsigned)i / (bd.x * bd.y)};
        f.linear = (unsigned)i;
        f.warp = (unsigned)i / 32;
        f.lane = (unsigned)i % 32;
    }
    w.warps.resize((size_t)(w.nthreads + 31) / 32);
    w.pub.bdim = bd;
    w.pub.gdim = L.shape.grid;
    if (w.dynamic_smem == nullptr) {
        w.dynamic_smem = static_cast<unsigned char*>(std::aligned_alloc(128, DYNAMIC_SMEM_MAX));
    }
    for (;;) {
        if (L.stop.load(std::memory_order_relaxed)) break;
        const long long b = L.next_block.fetch_add(1);
        if (b >= L.blocks) break;
        if (!run_block(w, b)) {
            std::lock_guard<std::mutex> g(L.fault_lock);
            if (L.fault.empty()) L.fault = w.fault;
            L.stop = true;
            break;
        }
        unsigned prev = L.static_smem.load();
        while (w.static_used > prev && !L.static_smem.compare_exchange_weak(prev, (unsigned)w.static_used)) {
        }
    }
    tls_block = nullptr;
    tls_thread = nullptr;
}

// A few persistent worker threads (never destroyed: the JVM may exit with them parked).
class Pool {
public:
    explicit Pool(int n) {
        for (int i = 0; i < n; i++) {
            std::thread([this] { loop(); }).detach();
        }
        threads_ = n;
    }

    int threads() const { return threads_; }

    // Runs L on every worker and returns when all are done (or the hang watchdog gives up).
    void run(Launch& L, double timeout_s) {
        {
            std::lock_guard<std::mutex> g(m_);
            current_ = &L;
            generation_++;
            done_ = 0;
        }
        cv_.notify_all();
        std::unique_lock<std::mutex> g(m_);
        const auto start = std::chrono::steady_clock::now();
        bool warned = false;
        while (done_ < threads_) {
            cv_done_.wait_for(g, std::chrono::seconds(1));
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (s > timeout_s && !warned) {
                std::fprintf(stderr, "[cuda-emu] %s has run %.0f s: stopping it at its next barrier\n", L.kernel->name, s);
                g_deadline_passed = true;
                warned = true;
            }
            if (s > timeout_s + 30) {
                std::fprintf(stderr, "[cuda-emu] %s: a kernel thread has spun for 30 s without reaching a barrier or "
                                     "warp operation: aborting the process\n", L.kernel->name);
                std::abort();
            }
        }
        current_ = nullptr;
        g_deadline_passed = false;
    }

private:
    void loop() {
        Worker* w = new Worker();  // never freed: lives as long as the thread
        tls_worker = w;
        unsigned long long seen = 0;
        for (;;) {
            Launch* L;
            {
                std::unique_lock<std::mutex> g(m_);
                cv_.wait(g, [&] { return generation_ != seen; });
                seen = generation_;
                L = current_;
            }
            work(*w, *L);
            {
                std::lock_guard<std::mutex> g(m_);
                done_++;
            }
            cv_done_.notify_all();
        }
    }

    std::mutex m_;
    std::condition_variable cv_;
    std::condition_variable cv_done_;
    Launch* current_ = nullptr;
    unsigned long long generation_ = 0;
    int done_ = 0;
    int threads_ = 0;
};

Pool& pool() {
    static Pool* p = [] {
        int n = (int)std::thread::hardware_concurrency();
        if (const char* e = std::getenv("LG_CUDA_EMU_THREADS")) n = std::atoi(e);
        return new Pool(n < 1 ? 1 : n);
    }();
    return *p;
}

Fiber& self(const char* what) {
    if (tls_fiber == nullptr) {
        std::fprintf(stderr, "[cuda-emu] %s called outside a kernel\n", what);
        std::abort();
    }
    return *tls_fiber;
}

// Joins the warp operation `what` of the calling lane's warp: returns the op once every lane of
// mask has arrived (the last lane to arrive runs `complete`; the others sleep until then).
template <typename Complete>
WarpOp& warp_arrive(const char* what, unsigned mask, int kind, int width, Complete complete, uint64_t in, int arg,
                    void* mine, const void* key = nullptr, size_t key_bytes = 0) {
    Fiber& f = self(what);
    Worker& w = *tls_worker;
    check_deadline();
    const unsigned bit = 1u << f.lane;
    if ((mask & bit) == 0) {
        fiber_fault(std::string(what) + ": the calling lane is not in its mask " + std::to_string(mask));
    }
    const unsigned exists = (unsigned)(w.nthreads - (int)f.warp * 32) >= 32 ? 0xffffffffu
                                                                            : (1u << (w.nthreads - f.warp * 32)) - 1;
    if ((mask & ~exists) != 0) {
        char buf[160];
        std::snprintf(buf, sizeof buf, ": mask %08x names lanes of a partial warp that do not exist (lanes %08x)", mask,
                      exists);
        fiber_fault(what + std::string(buf));
    }
    WarpOp& op = w.warps[f.warp];
    if (op.what == nullptr) {
        op.what = what;
        op.mask = mask;
        op.kind = kind;
        op.width = width;
        op.arrived = 0;
        if (key_bytes > 0) std::memcpy(op.key, key, key_bytes);
        op.key_bytes = key_bytes;
    } else if (op.what != what || op.mask != mask || op.kind != kind || op.width != width) {
        char buf[256];
        std::snprintf(buf, sizeof buf, ": lanes of warp %u diverged: this lane is at %s (mask %08x, kind %d, width %d) while others "
                      "wait at %s (mask %08x, kind %d, width %d)", f.warp, what, mask, kind, width, op.what, op.mask, op.kind,
                      op.width);
        fiber_fault(buf);
    } else if (op.key_bytes != key_bytes || (key_bytes > 0 && std::memcmp(op.key, key, key_bytes) != 0)) {
        fiber_fault(std::string(what) + ": the lanes of warp " + std::to_string(f.warp) +
                    " pass different arguments (pointer, ldm or layout), as if the call were per-thread");
    }
    op.arrived |= bit;
    op.in[f.lane] = in;
    op.arg[f.lane] = arg;
    op.mine[f.lane] = mine;
    if (op.arrived == op.mask) {
        complete(op);  // may fault
        op.what = nullptr;
        op.arrived = 0;
        const int base = (int)f.warp * 32;
        for (int l = 0; l < 32; l++) {
            if ((mask & (1u << l)) && l != (int)f.lane) {
                Fiber& o = w.fibers[base + l];
                o.state = READY;
                o.waiting = nullptr;
            }
        }
        return op;
    }
    f.state = AT_WARP;
    f.waiting = what;
    switch_to_scheduler(&f);
    return op;
}

}  // namespace

extern "C" void lg_emu_fiber_main(void* p) {
    Fiber* f = static_cast<Fiber*>(p);
    Worker& w = *tls_worker;
    w.launch->kernel->entry(w.launch->args);
    f->state = EXITED;
    w.exited++;
    // lanes of its warp waiting for it can never complete: the stall check reports them
    switch_to_scheduler(f);
    std::abort();
}

void fault(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fiber_fault(buf);
}

void syncthreads() {
    Fiber& f = self("__syncthreads");
    check_deadline();
    if (f.state != READY) std::abort();
    tls_worker->at_barrier++;
    f.state = AT_BARRIER;
    f.waiting = "__syncthreads";
    switch_to_scheduler(&f);
}

void syncwarp(unsigned mask) {
    warp_arrive("__syncwarp", mask, 0, 32, [](WarpOp&) {}, 0, 0, nullptr);
}

uint64_t shfl(ShflKind kind, unsigned mask, uint64_t bits, int arg, int width) {
    static const char* names[] = {"__shfl_sync", "__shfl_xor_sync", "__shfl_up_sync", "__shfl_down_sync"};
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fault("%s: width %d is not a power of two up to 32", names[kind], width);
    }
    const unsigned lane = tls_fiber->lane;
    WarpOp& op = warp_arrive(
        names[kind], mask, (int)kind, width,
        [kind, width](WarpOp& o) {
            for (int l = 0; l < 32; l++) {
                if ((o.mask & (1u << l)) == 0) continue;
                const int seg = l & ~(width - 1);
                const int a = o.arg[l];
                int src;
                switch (kind) {
                    case SHFL_IDX: src = seg + (a & (width - 1)); break;
                    case SHFL_XOR: src = l ^ a; if (src >= seg + width || src < seg) src = l; break;
                    case SHFL_UP: src = l - a < seg ? l : l - a; break;
                    default: src = l + a >= seg + width ? l : l + a; break;
                }
                if (src < 0 || src > 31 || (o.mask & (1u << src)) == 0) {
                    fault("%s: lane %d reads lane %d, which is not in the mask %08x (undefined value)", o.what, l, src,
                          o.mask);
                }
                o.out[l] = o.in[src];
            }
        },
        bits, arg, nullptr);
    return op.out[lane];
}

void warp_collective(const char* what, const void* key, size_t key_bytes, void* mine, CollectiveFn fn) {
    if (key_bytes > sizeof(WarpOp::key)) std::abort();
    warp_arrive(what, 0xffffffffu, 100, 32, [fn](WarpOp& o) { fn(o.mine, o.key); }, 0, 0, mine, key, key_bytes);
}

void* static_shared(const void* tag, size_t bytes, size_t align, const char* name) {
    Worker& w = *tls_worker;
    for (const Worker::Decl& d : w.decls) {
        if (d.tag == tag) return w.static_smem + d.offset;
    }
    size_t off = (w.static_used + align - 1) / align * align;
    if (off + bytes > STATIC_SMEM_MAX) {
        fault("static __shared__ %s (%zu bytes) takes the block past 48 KB of static shared memory", name, bytes);
    }
    const size_t total = off + bytes + w.launch->shape.dynamic_smem;
    if (total > w.launch->shape.smem_limit) {
        fault("static __shared__ %s brings the block to %zu bytes of shared memory (static %zu + dynamic %u), over the "
              "limit of %u (raise CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)",
              name, total, off + bytes, w.launch->shape.dynamic_smem, w.launch->shape.smem_limit);
    }
    w.decls.push_back({tag, off, bytes});
    w.static_used = off + bytes;
    if (w.static_used > w.static_dirty) w.static_dirty = w.static_used;
    return w.static_smem + off;
}

void* dynamic_shared() {
    Worker& w = *tls_worker;
    return w.dynamic_smem;
}

std::string launch(const KernelInfo& k, const LaunchShape& shape, void** args, unsigned* static_smem_out) {
    Launch L;
    L.kernel = &k;
    L.shape = shape;
    L.args = args;
    L.blocks = (long long)shape.grid.x * shape.grid.y * shape.grid.z;
    double timeout = 300;
    if (const char* e = std::getenv("LG_CUDA_EMU_TIMEOUT_S")) timeout = std::atof(e);
    pool().run(L, timeout);
    if (static_smem_out != nullptr) *static_smem_out = L.static_smem.load();
    return L.fault;
}

}  // namespace lg_emu
