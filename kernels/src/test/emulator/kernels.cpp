// The kernels under emulation: the project's one translation unit (lora_gateway.cu, as rewritten
// by build.sh for shared memory) compiled as C++ against include/, and the table of its kernels
// (kernel_table.inc, generated from the `LG_KERNEL void` declarations) that cuModuleGetFunction
// searches. Each entry's thunk unpacks CUDA's kernelParams (args[i] points at argument i's value)
// into the kernel's parameter types.
#include "lora_gateway.cu"

#include <tuple>
#include <utility>

namespace lg_emu {
namespace {

template <typename T>
T arg_at(void* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));  // JCuda's argument storage need not be aligned
    return v;
}

template <typename... A, size_t... I>
void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(arg_at<std::remove_cv_t<A>>(args[I])...);
}

template <typename... A>
constexpr int arity(void (*)(A...)) {
    return (int)sizeof...(A);
}

template <auto F>
void thunk(void** args) {
    call(F, args, std::make_index_sequence<arity(F)>{});
}

// The arguments of one captured launch, by value: a tuple of the kernel's parameter types.
template <typename... A>
struct Captured final : CapturedArgs {
    std::tuple<A...> values;
    void* ptrs[sizeof...(A) + 1];

    explicit Captured(void** args) {
        fill(args, std::index_sequence_for<A...>{});
    }
    template <size_t... I>
    void fill(void** args, std::index_sequence<I...>) {
        ((std::get<I>(values) = arg_at<A>(args[I]), ptrs[I] = &std::get<I>(values)), ...);
        ptrs[sizeof...(A)] = nullptr;
    }
    void** args() override {
        return ptrs;
    }
};

template <typename... A>
std::unique_ptr<CapturedArgs> capture_as(void (*)(A...), void** args) {
    return std::make_unique<Captured<std::remove_cv_t<A>...>>(args);
}

template <auto F>
std::unique_ptr<CapturedArgs> capture(void** args) {
    return capture_as(F, args);
}

}  // namespace

const KernelInfo kernel_table[] = {
#define LG_EMU_KERNEL(NAME, BOUNDS) {#NAME, &thunk<&::NAME>, (BOUNDS), arity(&::NAME), &capture<&::NAME>},
#include "kernel_table.inc"
#undef LG_EMU_KERNEL
};
const int kernel_count = (int)(sizeof(kernel_table) / sizeof(kernel_table[0]));

// Stand-ins for the hand-written PTX kernels of the Java tests (the emulator does not execute
// PTX): a PTX module loads when every `.entry` it declares has a stand-in here, written from the
// PTX's semantics.
namespace ptx {
// saxpy(x, y, a, n): y[i] = fma(x[i], a, y[i]) for i = ctaid.x·ntid.x + tid.x < n (unsigned compare)
void saxpy(const float* x, float* y, float a, unsigned n) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = fmaf(x[i], a, y[i]);
    }
}
}  // namespace ptx

const KernelInfo ptx_table[] = {
    {"saxpy", &thunk<&ptx::saxpy>, 1024, 4, &capture<&ptx::saxpy>},
};
const int ptx_count = (int)(sizeof(ptx_table) / sizeof(ptx_table[0]));

}  // namespace lg_emu
