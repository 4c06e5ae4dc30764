// MoE modulation core on the CPU (tedrec_fast/ops/moe_modulation/cpu.py builds and loads this file).
//
// out[r] = sum_k g[r,k] * scale * (P[u_r,k] - sum_{i dropped(r,k)} x[u_r,i] * WT[k,i,:]),  scale = 1/(1-p)
//
// P[u,k] = W_k x_u is the dense projection of each distinct item (computed by torch); the correction is a
// sum of rows of WT_k = W_k^T at the ~p*D dropped coordinates. Dropped(r,k,i) <=> philox(seed, counter) < thresh
// with Philox4x32-10 (../philox.h): counter = (r*E + k)*ceil(D/4) + i/4, output lane i%4.
// The masks are regenerated in the backward pass; no (rows, D) mask is ever stored. A distinct item whose text
// vector is zero (the padding item) has no correction: its rows draw no random numbers.
#include <cstdint>
#include <cstring>
#include <vector>
#include <omp.h>

#include "../philox.h"

namespace {

using tedrec_fast::LANES;
using tedrec_fast::philox;

// The dropped coordinates of (row r, expert k), ascending, into idx (room for D + 3); returns how many.
inline int dropped(int64_t r, int k, int E, int D, uint32_t thresh, uint64_t seed, int* idx) {
  if (thresh == 0) return 0;
  const int64_t quads = (D + 3) / 4;
  const uint64_t base = static_cast<uint64_t>((r * E + k) * quads);
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t lo[LANES], hi[LANES], out[4][LANES];
  int count = 0;
  for (int64_t q0 = 0; q0 < quads; q0 += LANES) {
    tedrec_fast::counters(base + q0, lo, hi);
    philox(lo, hi, k0, k1, out);
    for (int l = 0; l < LANES && q0 + l < quads; ++l) {
      for (int lane = 0; lane < 4; ++lane) {  // no branch: write, then advance only past a dropped coordinate
        const int i = static_cast<int>(4 * (q0 + l) + lane);
        idx[count] = i;
        count += (i < D) & (out[lane][l] < thresh);
      }
    }
  }
  return count;
}

// Columns [h0, h0 + BLOCK) of one position and expert: corr = sum_c x[idx[c]] * WT_k[idx[c], h0:h0+BLOCK], kept in
// four 64-byte vector registers (explicit vectors: left alone, the compiler vectorizes over c with gathers).
template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(64)));
  static constexpr int size = 64 / sizeof(T);
};

template <class T, int W>
inline void correction(const T* __restrict WTk, const T* __restrict x, const int* idx, int count, int H, int h0,
                       T* __restrict corr) {
  typedef typename Vec<T>::type V;
  constexpr int S = Vec<T>::size, N = W / S;
  V acc[N];
  for (int v = 0; v < N; ++v) acc[v] = V{} ;
  for (int c = 0; c < count; ++c) {
    const T xi = x[idx[c]];
    const T* w = WTk + static_cast<int64_t>(idx[c]) * H + h0;
    for (int v = 0; v < N; ++v) {
      V wv;
      __builtin_memcpy(&wv, w + v * S, sizeof(V));
      acc[v] += xi * wv;
    }
  }
  __builtin_memcpy(corr, acc, sizeof(acc));
}

// The same for the last columns [h0, h0 + width), width < BLOCK.
template <class T>
inline void correction_tail(const T* __restrict WTk, const T* __restrict x, const int* idx, int count, int H, int h0,
                            int width, T* __restrict corr) {
  for (int h = 0; h < width; ++h) corr[h] = 0;
  for (int c = 0; c < count; ++c) {
    const T xi = x[idx[c]];
    const T* __restrict w = WTk + static_cast<int64_t>(idx[c]) * H + h0;
#pragma omp simd
    for (int h = 0; h < width; ++h) corr[h] += xi * w[h];
  }
}

// Width of the register blocks of columns: 4 vectors of 64 bytes of float
constexpr int BLOCK = 64;

// live[u]: whether the text vector of distinct item u has a non-zero coordinate (else every correction is zero)
template <class T>
std::vector<char> live_items(int64_t U, int D, const T* xu) {
  std::vector<char> live(U, 0);
  for (int64_t u = 0; u < U; ++u)
    for (int i = 0; i < D && !live[u]; ++i) live[u] = xu[u * D + i] != T(0);
  return live;
}

template <class T>
void forward(int64_t R, int64_t U, int E, int D, int H, const int64_t* index, const T* xu, const T* gates,
             const T* P, const T* WT, T scale, uint32_t thresh, uint64_t seed, T* out, int threads) {
  std::memset(out, 0, sizeof(T) * R * H);
  const std::vector<char> live = live_items(U, D, xu);
  for (int k = 0; k < E; ++k) {
    const T* WTk = WT + static_cast<int64_t>(k) * D * H;
#pragma omp parallel num_threads(threads)
    {
      std::vector<int> idx(D + 3);
      T corr[BLOCK];
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        const int64_t u = index[r];
        const T g = gates[r * E + k] * scale;
        const T* __restrict p = P + (u * E + k) * H;
        const T* __restrict x = xu + u * D;
        T* __restrict o = out + r * H;
        const int count = live[u] ? dropped(r, k, E, D, thresh, seed, idx.data()) : 0;
        int h0 = 0;
        for (; h0 + BLOCK <= H; h0 += BLOCK) {
          correction<T, BLOCK>(WTk, x, idx.data(), count, H, h0, corr);
#pragma omp simd
          for (int h = 0; h < BLOCK; ++h) o[h0 + h] += g * (p[h0 + h] - corr[h]);
        }
        if (h0 < H) {
          const int width = H - h0;
          correction_tail(WTk, x, idx.data(), count, H, h0, width, corr);
          for (int h = 0; h < width; ++h) o[h0 + h] += g * (p[h0 + h] - corr[h]);
        }
      }
    }
  }
}

template <class T>
void backward(int64_t R, int64_t U, int E, int D, int H, const int64_t* index, const T* xu, const T* gates,
              const T* P, const T* WT, T scale, uint32_t thresh, uint64_t seed, const T* grad_out, T* grad_gates,
              T* grad_P, T* grad_WT, int threads) {
  const int64_t p_size = U * E * H, w_size = static_cast<int64_t>(E) * D * H;
  // thread 0 accumulates into the outputs, the others into their own buffers, summed at the end
  std::vector<std::vector<T>> extra(threads > 1 ? threads - 1 : 0);
  for (auto& buffer : extra) buffer.assign(p_size + w_size, T(0));
  std::memset(grad_P, 0, sizeof(T) * p_size);
  std::memset(grad_WT, 0, sizeof(T) * w_size);
  const std::vector<char> live = live_items(U, D, xu);
  for (int k = 0; k < E; ++k) {
    const T* WTk = WT + static_cast<int64_t>(k) * D * H;
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num();
      T* dP = tid == 0 ? grad_P : extra[tid - 1].data();
      T* dWk = (tid == 0 ? grad_WT : extra[tid - 1].data() + p_size) + static_cast<int64_t>(k) * D * H;
      std::vector<int> idx(D + 3);
      T corr[BLOCK];
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        const int64_t u = index[r];
        const T g = gates[r * E + k] * scale;
        const T* __restrict dt = grad_out + r * H;
        const T* __restrict p = P + (u * E + k) * H;
        const T* __restrict x = xu + u * D;
        T* __restrict dp = dP + (u * E + k) * H;
        const int count = live[u] ? dropped(r, k, E, D, thresh, seed, idx.data()) : 0;
        T acc = 0;
        int h0 = 0;
        for (; h0 + BLOCK <= H; h0 += BLOCK) {
          correction<T, BLOCK>(WTk, x, idx.data(), count, H, h0, corr);
#pragma omp simd reduction(+ : acc)
          for (int h = 0; h < BLOCK; ++h) {
            acc += dt[h0 + h] * (p[h0 + h] - corr[h]);
            dp[h0 + h] += g * dt[h0 + h];
          }
          for (int c = 0; c < count; ++c) {
            const T coef = -g * x[idx[c]];
            T* __restrict dw = dWk + static_cast<int64_t>(idx[c]) * H + h0;
#pragma omp simd
            for (int h = 0; h < BLOCK; ++h) dw[h] += coef * dt[h0 + h];
          }
        }
        if (h0 < H) {
          const int width = H - h0;
          correction_tail(WTk, x, idx.data(), count, H, h0, width, corr);
          for (int h = 0; h < width; ++h) {
            acc += dt[h0 + h] * (p[h0 + h] - corr[h]);
            dp[h0 + h] += g * dt[h0 + h];
          }
          for (int c = 0; c < count; ++c) {
            const T coef = -g * x[idx[c]];
            T* __restrict dw = dWk + static_cast<int64_t>(idx[c]) * H + h0;
#pragma omp simd
            for (int h = 0; h < width; ++h) dw[h] += coef * dt[h0 + h];
          }
        }
        grad_gates[r * E + k] = acc * scale;
      }
    }
  }
  if (extra.empty()) return;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t j = 0; j < p_size + w_size; ++j) {
    T sum = 0;
    for (auto& buffer : extra) sum += buffer[j];
    if (j < p_size) grad_P[j] += sum; else grad_WT[j - p_size] += sum;
  }
}

}  // namespace

extern "C" {

// Dropped coordinates of rows [0, R) as a (R, E, D) uint8 mask (1 = dropped): for tests only.
void moe_dropped_mask(int64_t R, int E, int D, uint32_t thresh, uint64_t seed, uint8_t* mask) {
  std::vector<int> idx(D + 3);
  for (int64_t r = 0; r < R; ++r)
    for (int k = 0; k < E; ++k) {
      uint8_t* m = mask + (r * E + k) * D;
      std::memset(m, 0, D);
      const int count = dropped(r, k, E, D, thresh, seed, idx.data());
      for (int c = 0; c < count; ++c) m[idx[c]] = 1;
    }
}

#define MOE_DEFINE(T, SUFFIX)                                                                                    \
  void moe_forward_##SUFFIX(int64_t R, int64_t U, int E, int D, int H, const int64_t* index, const T* xu,        \
                            const T* gates, const T* P, const T* WT, double scale, uint32_t thresh,              \
                            uint64_t seed, T* out, int threads) {                                                \
    forward<T>(R, U, E, D, H, index, xu, gates, P, WT, static_cast<T>(scale), thresh, seed, out, threads);       \
  }                                                                                                              \
  void moe_backward_##SUFFIX(int64_t R, int64_t U, int E, int D, int H, const int64_t* index, const T* xu,       \
                             const T* gates, const T* P, const T* WT, double scale, uint32_t thresh,             \
                             uint64_t seed, const T* grad_out, T* grad_gates, T* grad_P, T* grad_WT,             \
                             int threads) {                                                                      \
    backward<T>(R, U, E, D, H, index, xu, gates, P, WT, static_cast<T>(scale), thresh, seed, grad_out,           \
                grad_gates, grad_P, grad_WT, threads);                                                           \
  }

MOE_DEFINE(float, f32)
MOE_DEFINE(double, f64)

}  // extern "C"
