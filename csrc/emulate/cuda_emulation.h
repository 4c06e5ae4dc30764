// Just enough of CUDA C++ for the host compiler to run the kernels of csrc/ on CPU threads (the tests).
//
// Include before ../kernels.cu. A launch (emulate.cpp) runs the blocks one after another and
// the threads of a block as OS threads; this header gives each of them its CUDA built-ins (thread-local
// threadIdx, blockIdx, ...), the block barrier, warp shuffles and the device intrinsics the kernels call.
#pragma once

#define TEDREC_EMULATE 1

#include <barrier>
#include <cmath>  // expf, sqrtf, fmaf: glibc's <math.h> declares them in the global namespace too
#include <cstring>
#include <memory>
#include <numbers>
#include <stdexcept>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one copy per process: blocks run one after another

struct tedrec_emulate_dim3 {
    unsigned int x, y, z;
};

inline thread_local tedrec_emulate_dim3 threadIdx, blockIdx, blockDim, gridDim;

// The state of the block being run, shared by its threads; emulate.cpp makes a fresh one per block.
struct tedrec_emulate_warp {
    std::barrier<> barrier{32};
    float value[32];
    bool exited[32] = {};
};

struct tedrec_emulate_block {
    explicit tedrec_emulate_block(int threads) : sync(threads) {
        for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<tedrec_emulate_warp>());
    }
    std::barrier<> sync;  // __syncthreads
    std::vector<std::unique_ptr<tedrec_emulate_warp>> warps;
    float* smem = nullptr;  // the launch's dynamic shared memory
};

inline thread_local tedrec_emulate_block* tedrec_emulate_current_block = nullptr;

inline int tedrec_emulate_linear_tid() {
    return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

inline void __syncthreads() { tedrec_emulate_current_block->sync.arrive_and_wait(); }

// Every lane of the warp must take part (full mask); a lane that has left the kernel cannot be read.
inline float __shfl_xor_sync(unsigned int mask, float v, int lane_mask) {
    if (mask != 0xffffffffu) throw std::invalid_argument("__shfl_xor_sync: the emulator needs the full warp mask");
    if (lane_mask < 0 || lane_mask > 31) throw std::invalid_argument("__shfl_xor_sync: lane mask out of [0, 31]");
    const int tid = tedrec_emulate_linear_tid(), lane = tid % 32, partner = lane ^ lane_mask;
    tedrec_emulate_warp& warp = *tedrec_emulate_current_block->warps[tid / 32];
    warp.value[lane] = v;
    warp.barrier.arrive_and_wait();
    const bool gone = warp.exited[partner];
    const float r = warp.value[partner];
    warp.barrier.arrive_and_wait();  // nobody writes the next shuffle's value before its partner has read
    if (gone) throw std::logic_error("__shfl_xor_sync: the partner lane has already returned from the kernel");
    return r;
}

inline unsigned int __float_as_uint(float x) {
    unsigned int u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

inline float __uint_as_float(unsigned int u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// sin(pi x), cos(pi x), exact at multiples of 1/2 as CUDA's: x = q/2 + f with |f| <= 1/4, in double,
// rounded once to float.
inline void sincospif(float x, float* s, float* c) {
    if (!std::isfinite(x)) {
        *s = *c = NAN;
        return;
    }
    const double q = std::nearbyint(2.0 * (double)x);
    const double f = (double)x - 0.5 * q;  // exact
    const double sf = std::sin(std::numbers::pi * f), cf = std::cos(std::numbers::pi * f);
    const long long quadrant = ((long long)std::fmod(q, 4.0) + 4) % 4;
    const double sv[4] = {sf, cf, -sf, -cf}, cv[4] = {cf, -sf, -cf, sf};
    *s = (float)(sv[quadrant] == 0.0 ? std::copysign(0.0, (double)x) : sv[quadrant]);  // sinpi(+-k) = +-0
    *c = (float)(cv[quadrant] + 0.0);                                                  // cospi(k + 1/2) = +0
}

// IEEE binary16 <-> fp32, round to nearest even (_Float16 of the host compiler)
inline float tedrec_emulate_half_to_float(unsigned short bits) {
    _Float16 h;
    std::memcpy(&h, &bits, sizeof h);
    return (float)h;
}

inline unsigned short tedrec_emulate_float_to_half(float x) {
    const _Float16 h = (_Float16)x;
    unsigned short bits;
    std::memcpy(&bits, &h, sizeof bits);
    return bits;
}

inline float* tedrec_emulate_dynamic_smem() { return tedrec_emulate_current_block->smem; }
