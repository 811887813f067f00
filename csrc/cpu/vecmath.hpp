// Vectorisable sin, cos (double and float) and log (double) for the CPU kernels.
//
// glibc's sin/cos/log do not vectorise, and they dominate an XY sweep and the
// Box-Muller normals. This is the
// textbook method: Cody-Waite reduction by pi/2 with a three-part constant, then
// Taylor polynomials on [-pi/4, pi/4] (truncation below 3e-18), then a quadrant
// swap. Branch-free, so `omp simd` loops over it vectorise. Accurate to a few
// ulp for |x| < 2^19; callers use std::sin/std::cos beyond kSincosMaxArg.
#pragma once

#include <cstdint>
#include <cstring>

namespace lftaccel {
namespace cpu {

constexpr double kSincosMaxArg = 524288.0;  // 2^19: q * pio2_{1,2} stay exact

// sin and cos of x = q pi/2 + r from s = sin r, c = cos r (q an integer-valued T, rounded
// with round_magic). Quadrant j = q - 4 round(q / 4), in {-2, -1, 0, 1, 2} (so j = -1 is
// quadrant 3 and j = +-2 is quadrant 2). Rounding by the magic constant, not floor(), which
// GCC only inlines under -fno-trapping-math: the selects then vectorise.
template <class T>
inline void quadrant(T q, T s, T c, T round_magic, T& s_out, T& c_out) {
  const T q4 = (q * T(0.25) + round_magic) - round_magic;
  const T j = q - T(4) * q4;
  // Bitwise | (not ||): no short-circuit branches, so the loop stays if-converted.
  const bool odd = (j == T(1)) | (j == T(-1));
  const bool half = (j == T(2)) | (j == T(-2));
  // Selects between constants, then multiply: if-converts even when only one
  // output is used.
  const T sv = odd ? c : s, cv = odd ? s : c;
  s_out = sv * ((half | (j == T(-1))) ? T(-1) : T(1));
  c_out = cv * ((half | (j == T(1))) ? T(-1) : T(1));
}

inline void sincos_reduced(double x, double& s_out, double& c_out) {
  constexpr double two_over_pi = 0.63661977236758134308;
  constexpr double pio2_1 = 1.57079632673412561417e+00;   // first 33 bits of pi/2
  constexpr double pio2_2 = 6.07710050630396597660e-11;   // next 33 bits
  constexpr double pio2_3 = 2.02226624879595063154e-21;   // the rest (pi/2 - pio2_1 - pio2_2)
  constexpr double round_magic = 6755399441055744.0;      // 1.5 * 2^52: round to nearest
  const double q = (x * two_over_pi + round_magic) - round_magic;
  const double r = ((x - q * pio2_1) - q * pio2_2) - q * pio2_3;
  const double r2 = r * r;
  // sin r = r - r^3/3! + ... + r^17/17!: on |r| <= pi/4 the first omitted term,
  // r^19/19!, is below 1e-19, far under half an ulp.
  double ps = 2.8114572543455207632e-15;                  //  1/17!
  ps = ps * r2 - 7.6471637318198164759e-13;               // -1/15!
  ps = ps * r2 + 1.6059043836821614599e-10;               //  1/13!
  ps = ps * r2 - 2.5052108385441718775e-08;               // -1/11!
  ps = ps * r2 + 2.7557319223985890653e-06;               //  1/9!
  ps = ps * r2 - 1.9841269841269841270e-04;               // -1/7!
  ps = ps * r2 + 8.3333333333333333333e-03;               //  1/5!
  ps = ps * r2 - 1.6666666666666666667e-01;               // -1/3!
  const double s = r + r * r2 * ps;
  // cos r = 1 - r^2/2! + ... + r^16/16! (first omitted term r^18/18! < 3e-18)
  double pc = 4.7794773323873852974e-14;                  //  1/16!
  pc = pc * r2 - 1.1470745597729724714e-11;               // -1/14!
  pc = pc * r2 + 2.0876756987868098979e-09;               //  1/12!
  pc = pc * r2 - 2.7557319223985890653e-07;               // -1/10!
  pc = pc * r2 + 2.4801587301587301587e-05;               //  1/8!
  pc = pc * r2 - 1.3888888888888888889e-03;               // -1/6!
  pc = pc * r2 + 4.1666666666666666667e-02;               //  1/4!
  const double c = 1.0 - 0.5 * r2 + r2 * r2 * pc;
  quadrant(q, s, c, round_magic, s_out, c_out);
}

// The same in float, for float32 fields: twice the lanes of the double version and shorter
// series. Cody-Waite reduction by pi/2 with Moshier's three-part constant (Cephes sinf: the
// first two parts have few enough bits that q * part is exact for |q| < 2^13), so it holds for
// |x| < kSincosMaxArgFloat; the series on [-pi/4, pi/4] stop at r^9/9! and r^10/10! (first
// omitted terms below 2.4e-9 and 1.1e-10, under a twentieth of a float ulp of the result).
constexpr float kSincosMaxArgFloat = 8192.0f;

inline void sincos_reduced_float(float x, float& s_out, float& c_out) {
  constexpr float two_over_pi = 0.636619772367581343f;
  constexpr float pio2_1 = 1.5703125f;
  constexpr float pio2_2 = 4.837512969970703125e-4f;
  constexpr float pio2_3 = 7.54978995489188216e-8f;
  constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23: round to nearest
  const float q = (x * two_over_pi + round_magic) - round_magic;
  const float r = ((x - q * pio2_1) - q * pio2_2) - q * pio2_3;
  const float r2 = r * r;
  float ps = 2.7557319223985890653e-06f;  //  1/9!
  ps = ps * r2 - 1.9841269841269841270e-04f;  // -1/7!
  ps = ps * r2 + 8.3333333333333333333e-03f;  //  1/5!
  ps = ps * r2 - 1.6666666666666666667e-01f;  // -1/3!
  const float s = r + r * r2 * ps;
  float pc = -2.7557319223985890653e-07f;  // -1/10!
  pc = pc * r2 + 2.4801587301587301587e-05f;  //  1/8!
  pc = pc * r2 - 1.3888888888888888889e-03f;  // -1/6!
  pc = pc * r2 + 4.1666666666666666667e-02f;  //  1/4!
  const float c = 1.0f - 0.5f * r2 + r2 * r2 * pc;
  quadrant(q, s, c, round_magic, s_out, c_out);
}

// log(x) for finite x > 0 (normal, not subnormal): x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.1716, whose
// odd series is cut after s^19/19 (the next term is below 1e-18 relative).
// Bit manipulation and integer compares only: an ordered float compare may trap,
// which stops GCC from if-converting, and so vectorising, a loop around it.
inline double log_positive(double x) {
  int64_t b;
  std::memcpy(&b, &x, sizeof b);
  const int64_t mantissa = b & 0x000fffffffffffffll;
  const int64_t m_bits = mantissa | 0x3ff0000000000000ll;        // m in [1, 2)
  const int64_t e_bits = 0x4330000000000000ll | (b >> 52);       // 2^52 + biased exponent
  double m, e;
  std::memcpy(&m, &m_bits, sizeof m);
  std::memcpy(&e, &e_bits, sizeof e);
  e -= 4503599627370496.0 + 1023.0;
  const double big = mantissa > 0x6a09e667f3bcdll ? 1.0 : 0.0;    // m > sqrt(2)
  m *= 1.0 - 0.5 * big;
  e += big;
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double p = 1.0 / 19;
  p = p * s2 + 1.0 / 17;
  p = p * s2 + 1.0 / 15;
  p = p * s2 + 1.0 / 13;
  p = p * s2 + 1.0 / 11;
  p = p * s2 + 1.0 / 9;
  p = p * s2 + 1.0 / 7;
  p = p * s2 + 1.0 / 5;
  p = p * s2 + 1.0 / 3;
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // ln 2 split so e * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  return e * ln2_hi + (2.0 * s + 2.0 * s * s2 * p + e * ln2_lo);
}

}  // namespace cpu
}  // namespace lftaccel
