// The CPU emulator of the kernels of csrc/: a C API that launches them by name (tedrec_fast/cuda/emulator.py).
//
// A launch runs the blocks one after another (x fastest, then y, z) on a pool of OS threads, one per
// thread of the block, created once per launch. Between two blocks every pool thread waits at the
// block-boundary barrier, whose completion step checks the finished block and sets up the next: a
// fresh __syncthreads barrier and warps, and the dynamic shared memory poisoned with 0xFF bytes (NaN,
// so reads of unwritten shared memory show), followed by a guard that catches writes past its end.
#include "cuda_emulation.h"

#include "../kernels.cu"

#include <algorithm>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace {

constexpr unsigned long long kMaxSmemBytes = 232448;  // 227 KiB, the H100's per-block limit
constexpr unsigned long long kGuardBytes = 256;        // poisoned bytes past the dynamic shared memory

// ---- the kernel table: typed calls and ABI signatures deduced from each entry point's type ----
template <typename T>
T load(void* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename... A, std::size_t... I>
void call_with(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(load<A>(args[I])...);
}

template <typename... A>
void call(void (*f)(A...), void** args) {
    call_with(f, args, std::index_sequence_for<A...>{});
}

template <typename T>
constexpr const char* kind() {
    if constexpr (std::is_pointer_v<T>) {
        return "ptr";
    } else if constexpr (std::is_same_v<T, int>) {
        return "i32";
    } else if constexpr (std::is_same_v<T, long long>) {
        return "i64";
    } else {
        static_assert(std::is_same_v<T, float>, "kernel parameter without an ABI kind (ptr, i32, i64, f32)");
        return "f32";
    }
}

template <typename... A>
std::string signature(void (*)(A...)) {
    std::string s;
    ((s += s.empty() ? "" : ",", s += kind<A>()), ...);
    return s;
}

struct Kernel {
    const char* name;
    void (*call)(void** args);
    std::string signature;
};

#define TEDREC_EMULATE_ENTRY(name) Kernel{#name, [](void** args) { call(&name, args); }, signature(&name)},

const std::vector<Kernel>& kernels() {
    static const std::vector<Kernel> table{TEDREC_KERNELS(TEDREC_EMULATE_ENTRY)};
    return table;
}

const Kernel* find_kernel(const char* name) {
    for (const Kernel& k : kernels()) {
        if (std::strcmp(k.name, name) == 0) return &k;
    }
    return nullptr;
}

// ---- a launch ----
std::string dims(const tedrec_emulate_dim3& d) {
    return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

struct Launch {
    struct Step {
        Launch* launch;
        void operator()() noexcept { launch->next_block(); }
    };

    Launch(const Kernel& k, void** a, tedrec_emulate_dim3 g, tedrec_emulate_dim3 b, unsigned long long smem)
        : kernel(k), args(a), grid(g), block(b), threads((int)(b.x * b.y * b.z)),
          blocks((long long)g.x * g.y * g.z), smem_bytes(smem), smem((smem + kGuardBytes + 3) / 4),
          boundary(threads, Step{this}) {}

    void fail(const std::string& message) {
        const std::lock_guard<std::mutex> lock(mutex);
        if (error.empty()) error = message;
    }

    // the completion step of the boundary barrier: no pool thread runs meanwhile
    void next_block() {
        const auto* bytes = reinterpret_cast<const unsigned char*>(smem.data());
        if (started > 0 && !std::all_of(bytes + smem_bytes, bytes + smem_bytes + kGuardBytes,
                                        [](unsigned char c) { return c == 0xFF; })) {
            fail(std::string(kernel.name) + ", block " + dims(block_idx) + ": wrote past the " +
                 std::to_string(smem_bytes) + " bytes of dynamic shared memory");
        }
        if (!error.empty() || started == blocks) {
            done = true;
            return;
        }
        block_idx = {(unsigned)(started % grid.x), (unsigned)(started / grid.x % grid.y),
                     (unsigned)(started / ((long long)grid.x * grid.y))};
        state = std::make_unique<tedrec_emulate_block>(threads);
        state->smem = smem.data();
        std::memset(smem.data(), 0xFF, smem_bytes + kGuardBytes);
        ++started;
    }

    void run_thread(int tid) {
        threadIdx = {tid % block.x, tid / block.x % block.y, tid / (block.x * block.y)};
        blockDim = block;
        gridDim = grid;
        for (;;) {
            boundary.arrive_and_wait();
            if (done) return;
            blockIdx = block_idx;
            tedrec_emulate_current_block = state.get();
            try {
                kernel.call(args);
            } catch (const std::exception& e) {
                fail(std::string(kernel.name) + ", block " + dims(blockIdx) + ", thread " + dims(threadIdx) + ": " +
                     e.what());
            }
            // a thread that has returned no longer takes part in the block's barriers (as on the GPU)
            tedrec_emulate_warp& warp = *state->warps[tid / 32];
            warp.exited[tid % 32] = true;
            warp.barrier.arrive_and_drop();
            state->sync.arrive_and_drop();
        }
    }

    const Kernel& kernel;
    void** args;
    const tedrec_emulate_dim3 grid, block;
    const int threads;
    const long long blocks;
    const unsigned long long smem_bytes;
    std::vector<float> smem;  // the dynamic shared memory, then the guard
    std::barrier<Step> boundary;
    long long started = 0;  // blocks set up so far
    bool done = false;
    tedrec_emulate_dim3 block_idx{};
    std::unique_ptr<tedrec_emulate_block> state;
    std::mutex mutex;
    std::string error;
};

// Why CUDA (or the emulator) refuses this configuration, or "".
std::string config_error(const tedrec_emulate_dim3& g, const tedrec_emulate_dim3& b, unsigned long long smem) {
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        return "grid " + dims(g) + " is out of CUDA's limits (1 .. 2^31-1, 65535, 65535)";
    }
    if (threads == 0 || threads % 32 != 0 || threads > 1024 || b.z > 64) {
        return "block " + dims(b) + " has " + std::to_string(threads) +
               " threads; the emulator needs a positive multiple of 32 (whole warps), at most 1024, and z <= 64";
    }
    if (smem > kMaxSmemBytes) {
        return std::to_string(smem) + " bytes of dynamic shared memory exceed the " + std::to_string(kMaxSmemBytes) +
               " bytes (227 KiB) a block may have";
    }
    return "";
}

thread_local std::string last_error;

}  // namespace

extern "C" {

int tedrec_emulate_launch(const char* name, const unsigned* grid3, const unsigned* block3, unsigned long long smem_bytes,
                          void** args) {
    try {
        const Kernel* kernel = find_kernel(name);
        if (kernel == nullptr) throw std::invalid_argument(std::string("unknown kernel '") + name + "'");
        const tedrec_emulate_dim3 grid{grid3[0], grid3[1], grid3[2]}, block{block3[0], block3[1], block3[2]};
        const std::string invalid = config_error(grid, block, smem_bytes);
        if (!invalid.empty()) throw std::invalid_argument(std::string(name) + ": " + invalid);
        Launch launch(*kernel, args, grid, block, smem_bytes);
        std::vector<std::thread> pool;
        pool.reserve(launch.threads);
        try {
            for (int t = 0; t < launch.threads; ++t) pool.emplace_back(&Launch::run_thread, &launch, t);
        } catch (const std::system_error& e) {  // the threads already started must not wait for the others
            launch.fail(std::string(name) + ": cannot start " + std::to_string(launch.threads) + " threads: " + e.what());
            for (int t = (int)pool.size(); t < launch.threads; ++t) launch.boundary.arrive_and_drop();
        }
        for (std::thread& t : pool) t.join();
        if (!launch.error.empty()) throw std::runtime_error(launch.error);
        return 0;
    } catch (const std::exception& e) {
        last_error = e.what();
        return 1;
    }
}

const char* tedrec_emulate_last_error(void) { return last_error.c_str(); }

const char* tedrec_emulate_signature(const char* name) {
    const Kernel* kernel = find_kernel(name);
    return kernel == nullptr ? nullptr : kernel->signature.c_str();
}

int tedrec_emulate_kernel_count(void) { return (int)kernels().size(); }

const char* tedrec_emulate_kernel_name(int i) {
    return i >= 0 && i < tedrec_emulate_kernel_count() ? kernels()[i].name : nullptr;
}

}  // extern "C"
