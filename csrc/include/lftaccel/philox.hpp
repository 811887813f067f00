// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC11), identical on host and device,
// with uniform and normal variates on top.
//
// lftaccel's stream convention: key = (seed, chain), counter = (site, step_lo,
// step_hi, purpose). Each (chain, site, step, purpose) owns one 128-bit block,
// so a variate depends only on those numbers, never on the thread count,
// launch shape or device. Normals are the exception that halves their cost:
// sites 2j and 2j + 1 share block j, taking the two Box-Muller normals z0 and z1
// of its two uniforms (philox_normal_at). The integer blocks are bit-identical on CPU and GPU;
// the float variates agree to rounding of the device's log/sin/cos.
#pragma once

#include <cmath>
#include <cstdint>

#include "config.hpp"

namespace lftaccel {

struct Philox4x32 {
  uint32_t v[4];
};

namespace detail {
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

// One round on the four counter words (scalars, not an array, so that a
// vectorised site loop keeps them in registers).
LFT_HOST_DEVICE void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3,
                                  uint32_t k0, uint32_t k1) {
  const uint64_t p0 = uint64_t(kPhiloxM0) * c0;
  const uint64_t p1 = uint64_t(kPhiloxM1) * c2;
  const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
  const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  c0 = hi1 ^ c1 ^ k0;
  c1 = lo1;
  c2 = hi0 ^ c3 ^ k1;
  c3 = lo0;
}
}  // namespace detail

LFT_HOST_DEVICE Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t key0, uint32_t key1) {
  uint32_t c0 = ctr.v[0], c1 = ctr.v[1], c2 = ctr.v[2], c3 = ctr.v[3];
  LFT_UNROLL
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      key0 += detail::kPhiloxW0;
      key1 += detail::kPhiloxW1;
    }
    detail::philox_round(c0, c1, c2, c3, key0, key1);
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// The block owned by (seed, chain, site, step, purpose).
LFT_HOST_DEVICE Philox4x32 philox_block(uint32_t seed, uint32_t chain, uint32_t site,
                                        uint64_t step, uint32_t purpose) {
  return philox4x32_10(Philox4x32{{site, uint32_t(step), uint32_t(step >> 32), purpose}}, seed,
                       chain);
}

// Uniform in the open interval (0, 1): never 0 (log(u) is finite) and never 1.
// k + 1/2 with k < 2^23 (2^52) is exact in float (double), so the largest value
// is 1 - 2^-24 (1 - 2^-53), not a rounded-up 1.
LFT_HOST_DEVICE float uniform_float(uint32_t bits) {
  return (float(bits >> 9) + 0.5f) * 1.1920928955078125e-07f;  // 23 bits, 2^-23
}
LFT_HOST_DEVICE double uniform_double(uint32_t hi, uint32_t lo) {
  const uint64_t b = (uint64_t(hi) << 20) ^ uint64_t(lo >> 12);  // 52 bits
  return (double(b) + 0.5) * 2.220446049250313e-16;               // 2^-52
}

// Box-Muller: two independent standard normals from two uniforms in (0, 1).
template <class T>
LFT_HOST_DEVICE void box_muller(T u1, T u2, T& z0, T& z1) {
  using std::cos;
  using std::log;
  using std::sin;
  using std::sqrt;
  const T r = sqrt(T(-2) * log(u1));
  const T t = T(6.28318530717958647692) * u2;
  z0 = r * cos(t);
  z1 = r * sin(t);
}

// The variates lftaccel draws from one block: the first uniform, and the
// Box-Muller pair of normals (float uses words 0,1; double uses words 0..3).
template <class T>
struct PhiloxVariates;

template <>
struct PhiloxVariates<float> {
  LFT_HOST_DEVICE static float uniform(const Philox4x32& b) { return uniform_float(b.v[0]); }
  LFT_HOST_DEVICE static void normal_pair(const Philox4x32& b, float& z0, float& z1) {
    box_muller(uniform_float(b.v[0]), uniform_float(b.v[1]), z0, z1);
  }
};

template <>
struct PhiloxVariates<double> {
  LFT_HOST_DEVICE static double uniform(const Philox4x32& b) {
    return uniform_double(b.v[0], b.v[1]);
  }
  LFT_HOST_DEVICE static void normal_pair(const Philox4x32& b, double& z0, double& z1) {
    box_muller(uniform_double(b.v[0], b.v[1]), uniform_double(b.v[2], b.v[3]), z0, z1);
  }
};

// The standard normal of (seed, chain, site, step, purpose): z0 (even site) or
// z1 (odd site) of block site / 2.
template <class T>
LFT_HOST_DEVICE T philox_normal_at(uint32_t seed, uint32_t chain, uint32_t site, uint64_t step,
                                   uint32_t purpose) {
  T z0, z1;
  PhiloxVariates<T>::normal_pair(philox_block(seed, chain, site >> 1, step, purpose), z0, z1);
  return (site & 1u) ? z1 : z0;
}

}  // namespace lftaccel
