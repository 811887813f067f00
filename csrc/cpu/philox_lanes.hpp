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
  // The same rounds written for AVX-512, 16 sites a register: vpmuludq takes the 32 x 32 ->
  // 64-bit products of the even words directly, the odd words' after a shift. Compilers
  // vectorise the generic loop with 64 x 64-bit multiplies (vpmullq) on zero-extended words
  // and repack them: 2.7 against 1.5 ns per block on one core (AMD EPYC, Zen 4), with four
  // registers of sites in flight (a round's multiply-blend-xor chain is ~7 cycles long). A
  // short fill or a fill's tail takes two registers or one, of 16 sites each (lanes past n are
  // computed and unused).
  void fill_avx512(uint32_t seed, uint32_t chain, uint32_t site0, int64_t n, uint64_t step, uint32_t purpose,
                   uint32_t stride) {
    static_assert(kLanes % 16 == 0, "fill_avx512 writes whole registers of 16 sites");
    int64_t k = 0;
    for (; k + 64 <= n; k += 64) rounds_avx512<4>(k, seed, chain, site0, step, purpose, stride);
    for (; k + 32 <= n; k += 32) rounds_avx512<2>(k, seed, chain, site0, step, purpose, stride);
    for (; k < n; k += 16) rounds_avx512<1>(k, seed, chain, site0, step, purpose, stride);
  }

  // Blocks of the 16 G sites from lane k on.
  template <int G>
  void rounds_avx512(int64_t k, uint32_t seed, uint32_t chain, uint32_t site0, uint64_t step, uint32_t purpose,
                     uint32_t stride) {
    const __m512i offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(stride)));
    const __m512i m0 = _mm512_set1_epi64(detail::kPhiloxM0), m1 = _mm512_set1_epi64(detail::kPhiloxM1);
    const __mmask16 odd = 0xAAAA;
    // hi and lo words of the 32 x 32 -> 64-bit products m * c, for the 16 words of c
    auto multiply = [&](__m512i c, __m512i m, __m512i& hi, __m512i& lo) {
      const __m512i even = _mm512_mul_epu32(c, m), oddp = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
      hi = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(even, 32), oddp);
      lo = _mm512_mask_blend_epi32(odd, even, _mm512_slli_epi64(oddp, 32));
    };
    __m512i c0[G], c1[G], c2[G], c3[G];
    for (int g = 0; g < G; ++g) {
      c0[g] = _mm512_add_epi32(_mm512_set1_epi32(int(site0 + stride * uint32_t(k + 16 * g))), offsets);
      c1[g] = _mm512_set1_epi32(int(uint32_t(step)));
      c2[g] = _mm512_set1_epi32(int(uint32_t(step >> 32)));
      c3[g] = _mm512_set1_epi32(int(purpose));
    }
    uint32_t k0 = seed, k1 = chain;
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += detail::kPhiloxW0;
        k1 += detail::kPhiloxW1;
      }
      const __m512i key0 = _mm512_set1_epi32(int(k0)), key1 = _mm512_set1_epi32(int(k1));
      for (int g = 0; g < G; ++g) {
        __m512i hi0, lo0, hi1, lo1;
        multiply(c0[g], m0, hi0, lo0);
        multiply(c2[g], m1, hi1, lo1);
        c0[g] = _mm512_ternarylogic_epi32(hi1, c1[g], key0, 0x96);  // hi1 ^ c1 ^ k0
        c2[g] = _mm512_ternarylogic_epi32(hi0, c3[g], key1, 0x96);  // hi0 ^ c3 ^ k1
        c1[g] = lo1;
        c3[g] = lo0;
      }
    }
    for (int g = 0; g < G; ++g) {
      const int64_t at = k + 16 * g;
      _mm512_storeu_si512(w0 + at, c0[g]);
      _mm512_storeu_si512(w1 + at, c1[g]);
      _mm512_storeu_si512(w2 + at, c2[g]);
      _mm512_storeu_si512(w3 + at, c3[g]);
    }
  }
#endif
};

}  // namespace cpu
}  // namespace lftaccel
