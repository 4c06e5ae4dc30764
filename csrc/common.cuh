// Portability layer of the CUDA C++ kernels: storage types, conversions and warp reductions.
//
// Needs no header at all on the device side, so one source serves three compilers:
//   * nvcc (the ahead-of-time extension tedrec_fast._C and the compile checks),
//   * NVRTC through CuPy (run-time compilation; no CUDA headers are reachable there),
//   * the host C++ compiler with csrc/emulate/cuda_emulation.h included first (the CPU emulator
//     that runs these kernels in the tests; it defines TEDREC_EMULATE).
#pragma once

// 16-bit storage types: raw bits, converted to fp32 on load and rounded once on store.
struct tedrec_bf16 {
    unsigned short bits;
};
struct tedrec_f16 {
    unsigned short bits;
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(tedrec_bf16 x) { return __uint_as_float(((unsigned int)x.bits) << 16); }

template <typename S>
__device__ __forceinline__ S from_float(float x);

template <>
__device__ __forceinline__ float from_float<float>(float x) {
    return x;
}

template <>
__device__ __forceinline__ tedrec_bf16 from_float<tedrec_bf16>(float x) {
    // round to nearest even, as torch's float -> bfloat16 cast; NaN stays a quiet NaN
    unsigned int u = __float_as_uint(x);
    tedrec_bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.bits = (unsigned short)((u >> 16) | 0x0040u);
    } else {
        r.bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return r;
}

#if defined(TEDREC_EMULATE)
__device__ __forceinline__ float to_float(tedrec_f16 x) { return tedrec_emulate_half_to_float(x.bits); }
template <>
__device__ __forceinline__ tedrec_f16 from_float<tedrec_f16>(float x) {
    tedrec_f16 r;
    r.bits = tedrec_emulate_float_to_half(x);
    return r;
}
#else
__device__ __forceinline__ float to_float(tedrec_f16 x) {
    float r;
    asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(x.bits));
    return r;
}
template <>
__device__ __forceinline__ tedrec_f16 from_float<tedrec_f16>(float x) {
    tedrec_f16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
    return r;
}
#endif

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Sum of v over aligned groups of `width` consecutive lanes (width a power of two <= 32); every lane of
// the warp must call it (full mask), each lane gets its group's sum.
__device__ __forceinline__ float group_sum(float v, int width) {
    for (int offset = width >> 1; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

// The block's dynamic shared memory, as floats (the emulator hands out a per-launch buffer).
#if defined(TEDREC_EMULATE)
#define TEDREC_DYNAMIC_SMEM(name) float* name = tedrec_emulate_dynamic_smem()
#else
#define TEDREC_DYNAMIC_SMEM(name) extern __shared__ float name[]
#endif

// x mod n for -n <= x < 2n
__device__ __forceinline__ int wrap(int x, int n) { return x < 0 ? x + n : (x >= n ? x - n : x); }
