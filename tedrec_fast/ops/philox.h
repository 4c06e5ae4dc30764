// Philox4x32-10 (Triton's philox_impl / tl.randint4x) for the C++ CPU cores, LANES counters at a time.
// tedrec_fast/ops/philox.py is the torch twin and documents the counter layout both cores use.
#pragma once
#include <cstdint>

namespace tedrec_fast {

constexpr int LANES = 16;

// The four outputs of Philox4x32-10 at counters (lo[l], hi[l], 0, 0), key (k0, k1).
inline void philox(const uint32_t* lo, const uint32_t* hi, uint32_t k0, uint32_t k1, uint32_t out[4][LANES]) {
  uint32_t* c0 = out[0];
  uint32_t* c1 = out[1];
  uint32_t* c2 = out[2];
  uint32_t* c3 = out[3];
#pragma omp simd
  for (int l = 0; l < LANES; ++l) { c0[l] = lo[l]; c1[l] = hi[l]; c2[l] = 0; c3[l] = 0; }
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int l = 0; l < LANES; ++l) {
      const uint64_t a = static_cast<uint64_t>(0xD2511F53u) * c0[l];
      const uint64_t b = static_cast<uint64_t>(0xCD9E8D57u) * c2[l];
      const uint32_t n0 = static_cast<uint32_t>(b >> 32) ^ c1[l] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(a >> 32) ^ c3[l] ^ k1;
      c1[l] = static_cast<uint32_t>(b);
      c3[l] = static_cast<uint32_t>(a);
      c0[l] = n0;
      c2[l] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// The counters base + l, l < LANES, as low and high words.
inline void counters(uint64_t base, uint32_t* lo, uint32_t* hi) {
  for (int l = 0; l < LANES; ++l) {
    lo[l] = static_cast<uint32_t>(base + l);
    hi[l] = static_cast<uint32_t>((base + l) >> 32);
  }
}

}  // namespace tedrec_fast
