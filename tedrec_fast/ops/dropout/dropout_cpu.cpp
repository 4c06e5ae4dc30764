// Counter-based dropout on the CPU (tedrec_fast/ops/dropout/cpu.py builds and loads this file).
//
// y[i] = x[i] * (dropped(i) ? 0 : scale),  dropped(i) <=> lane i%4 of Philox4x32-10(seed, counter i/4) < thresh
// (../philox.h; the layout of tedrec_fast/ops/philox.py with one row and one group). The backward pass is the
// same function of the output gradient with the same seed, so no mask is ever stored.
#include <cstdint>

#include "../philox.h"

namespace {

using tedrec_fast::LANES;
constexpr int64_t CHUNK = 4 * LANES;  // elements per Philox call

template <class T>
void apply(int64_t n, const T* __restrict x, T* __restrict y, T scale, uint32_t thresh, uint64_t seed, int threads) {
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    uint32_t lo[LANES], hi[LANES], out[4][LANES];
    tedrec_fast::counters(static_cast<uint64_t>(c) * LANES, lo, hi);
    tedrec_fast::philox(lo, hi, k0, k1, out);
    T factor[CHUNK];
    for (int l = 0; l < LANES; ++l)
      for (int lane = 0; lane < 4; ++lane) factor[4 * l + lane] = out[lane][l] < thresh ? T(0) : scale;
    const int64_t i0 = c * CHUNK;
    const int64_t width = n - i0 < CHUNK ? n - i0 : CHUNK;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) y[i0 + j] = x[i0 + j] * factor[j];
  }
}

}  // namespace

extern "C" {

void dropout_f32(int64_t n, const float* x, float* y, double scale, uint32_t thresh, uint64_t seed, int threads) {
  apply<float>(n, x, y, static_cast<float>(scale), thresh, seed, threads);
}

void dropout_f64(int64_t n, const double* x, double* y, double scale, uint32_t thresh, uint64_t seed, int threads) {
  apply<double>(n, x, y, scale, thresh, seed, threads);
}

}  // extern "C"
