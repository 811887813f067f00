// Philox blocks of many sites at once, vectorised across sites: the CPU Philox fills and
// the Metropolis sweeps.
#pragma once

#include <cstdint>

#include "lftaccel/philox.hpp"

namespace lftaccel {
namespace cpu {

// Philox blocks of n sites site0, site0 + stride, ... at once, the four counter words
// in separate arrays: the same rounds as philox4x32_10 (philox.hpp), vectorised
// across sites (the 32x32->64-bit products map to vector multiplies).
constexpr int64_t kLanes = 256;
struct PhiloxLanes {
  uint32_t w0[kLanes], w1[kLanes], w2[kLanes], w3[kLanes];

  void fill(uint32_t seed, uint32_t chain, uint32_t site0, int64_t n, uint64_t step, uint32_t purpose,
            uint32_t stride = 1) {
    const uint32_t lo = uint32_t(step), hi = uint32_t(step >> 32);
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) {
      w0[k] = site0 + stride * uint32_t(k);
      w1[k] = lo;
      w2[k] = hi;
      w3[k] = purpose;
    }
    uint32_t k0 = seed, k1 = chain;
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += detail::kPhiloxW0;
        k1 += detail::kPhiloxW1;
      }
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) detail::philox_round(w0[k], w1[k], w2[k], w3[k], k0, k1);
    }
  }
};

}  // namespace cpu
}  // namespace lftaccel
