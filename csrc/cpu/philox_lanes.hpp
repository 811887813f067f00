// Philox blocks of many sites at once, vectorised across sites: the CPU Philox fills and
// the Metropolis sweeps.
#pragma once

#include <cassert>
#include <cstdint>

#include "lftaccel/philox.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace lftaccel {
namespace cpu {

// Philox blocks of n <= kLanes sites site0, site0 + stride, ... at once, the four counter
// words in separate arrays: the same rounds as philox4x32_10 (philox.hpp), vectorised
// across sites (the 32x32->64-bit products map to vector multiplies).
constexpr int64_t kLanes = 256;
struct PhiloxLanes {
  uint32_t w0[kLanes], w1[kLanes], w2[kLanes], w3[kLanes];

  void fill(uint32_t seed, uint32_t chain, uint32_t site0, int64_t n, uint64_t step, uint32_t purpose,
            uint32_t stride = 1) {
    assert(n >= 0 && n <= kLanes);
#if defined(__AVX512F__)
    fill_avx512(seed, chain, site0, n, step, purpose, stride);
#else
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
#endif
  }

#if defined(__AVX512F__)
  // The same rounds written for AVX-512, 8 sites a register, each counter word in the low half
  // of a 64-bit lane: vpmuludq then gives a word's whole 32 x 32 -> 64-bit product (lo in the
  // low half, hi after a shift), and a round is two multiplies, two shifts and two three-way
  // xors per register. The high halves of all four words fill with garbage (the products' hi
  // words, the carry of the counter's 64-bit add, the xors of those) and are never cleared:
  // vpmuludq reads only the low halves, and the stores keep only those. Compilers vectorise
  // the generic loop with 64 x 64-bit multiplies (vpmullq) on zero-extended words and repack
  // them: 2.7 ns a block on one core (AMD EPYC, Zen 4). 16 packed words a register (even and
  // odd words multiplied apart, then blended) took 1.59, this layout 1.44 (best of 100
  // alternating runs; means 1.65 and 1.53). Four registers in flight hide a round's ~7-cycle
  // chain. A short fill or a fill's tail takes two registers or one (lanes past n are
  // computed and unused).
  void fill_avx512(uint32_t seed, uint32_t chain, uint32_t site0, int64_t n, uint64_t step, uint32_t purpose,
                   uint32_t stride) {
    static_assert(kLanes % 8 == 0, "fill_avx512 writes whole registers of 8 sites");
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) rounds_avx512<4>(k, seed, chain, site0, step, purpose, stride);
    for (; k + 16 <= n; k += 16) rounds_avx512<2>(k, seed, chain, site0, step, purpose, stride);
    for (; k < n; k += 8) rounds_avx512<1>(k, seed, chain, site0, step, purpose, stride);
  }

  // Blocks of the 8 G sites from lane k on.
  template <int G>
  void rounds_avx512(int64_t k, uint32_t seed, uint32_t chain, uint32_t site0, uint64_t step, uint32_t purpose,
                     uint32_t stride) {
    // lane * stride in the low halves (vpmuludq: AVX-512F, where vpmullq needs DQ)
    const __m512i offsets = _mm512_mul_epu32(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                             _mm512_set1_epi64(int64_t(stride)));
    const __m512i m0 = _mm512_set1_epi64(detail::kPhiloxM0), m1 = _mm512_set1_epi64(detail::kPhiloxM1);
    __m512i c0[G], c1[G], c2[G], c3[G];
    for (int g = 0; g < G; ++g) {
      // site0 + stride * lane wraps modulo 2^32 in the low halves, as in the generic fill
      c0[g] = _mm512_add_epi64(_mm512_set1_epi64(int64_t(site0 + stride * uint32_t(k + 8 * g))), offsets);
      c1[g] = _mm512_set1_epi64(int64_t(uint32_t(step)));
      c2[g] = _mm512_set1_epi64(int64_t(uint32_t(step >> 32)));
      c3[g] = _mm512_set1_epi64(int64_t(purpose));
    }
    uint32_t k0 = seed, k1 = chain;
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += detail::kPhiloxW0;
        k1 += detail::kPhiloxW1;
      }
      const __m512i key0 = _mm512_set1_epi64(int64_t(k0)), key1 = _mm512_set1_epi64(int64_t(k1));
      for (int g = 0; g < G; ++g) {
        const __m512i p0 = _mm512_mul_epu32(c0[g], m0), p1 = _mm512_mul_epu32(c2[g], m1);
        c0[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[g], key0, 0x96);  // hi1 ^ c1 ^ k0
        c2[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[g], key1, 0x96);  // hi0 ^ c3 ^ k1
        c1[g] = p1;  // lo1
        c3[g] = p0;  // lo0
      }
    }
    for (int g = 0; g < G; ++g) {
      const int64_t at = k + 8 * g;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + at), _mm512_cvtepi64_epi32(c0[g]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + at), _mm512_cvtepi64_epi32(c1[g]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w2 + at), _mm512_cvtepi64_epi32(c2[g]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w3 + at), _mm512_cvtepi64_epi32(c3[g]));
    }
  }
#endif
};

}  // namespace cpu
}  // namespace lftaccel
