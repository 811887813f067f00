// Vectorisable sin, cos and log (double and float) for the CPU kernels.
//
// glibc's sin/cos/log do not vectorise, and they dominate an XY sweep and the
// Box-Muller normals. This is the textbook method: Cody-Waite reduction by pi/2 with a
// three-part constant, minimax polynomials on [-pi/4, pi/4], then a quadrant swap read
// from the bits of the rounded quotient. Branch-free, so `omp simd` loops over it
// vectorise. Within 2 ulp of 1 for |x| < 2^19; callers use std::sin/std::cos beyond
// kSincosMaxArg.
#pragma once

#include <cstdint>
#include <cstring>

#include "lftaccel/config.hpp"

namespace lftaccel {
namespace cpu {

constexpr double kSincosMaxArg = 524288.0;  // 2^19: q * pio2_{1,2} stay exact

// Bit patterns as unsigned integers of the same width, the format's mantissa bits, exponent
// bias and the mantissa of sqrt(2), and the constant 1.5 * 2^(mantissa bits) whose addition
// rounds a value to an integer held in its low mantissa bits.
template <class T>
struct FloatBits;
template <>
struct FloatBits<double> {
  using U = uint64_t;
  static constexpr int kMantissaBits = 52, kBias = 1023;
  static constexpr U kSqrt2Mantissa = 0x6a09e667f3bcdull;
  static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
};
template <>
struct FloatBits<float> {
  using U = uint32_t;
  static constexpr int kMantissaBits = 23, kBias = 127;
  static constexpr U kSqrt2Mantissa = 0x3504f3u;
  static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23
};

template <class T>
inline typename FloatBits<T>::U bits_of(T x) {
  typename FloatBits<T>::U b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
template <class T>
inline T value_of(typename FloatBits<T>::U b) {
  T x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// sin r and cos r for |r| <= pi/4: fdlibm's minimax polynomials (__kernel_sin and
// __kernel_cos, degree 13 and 14, error below 2^-58 before rounding): three FMAs fewer than
// the Taylor series to r^17/17! and r^16/16! they replace, and as accurate (under 2 units of
// 2^-53 against long double).
inline void sincos_kernel(double r, double& s, double& c) {
  const double z = r * r;
  double ps = 1.58969099521155010221e-10;
  ps = ps * z - 2.50507602534068634195e-08;
  ps = ps * z + 2.75573137070700676789e-06;
  ps = ps * z - 1.98412698298579493134e-04;
  ps = ps * z + 8.33333333332248946124e-03;
  ps = ps * z - 1.66666666666666324348e-01;
  s = r + r * z * ps;
  double pc = -1.13596475577881948265e-11;
  pc = pc * z + 2.08757232129817482790e-09;
  pc = pc * z - 2.75573143513906633035e-07;
  pc = pc * z + 2.48015872894767294178e-05;
  pc = pc * z - 1.38888888888741095749e-03;
  pc = pc * z + 4.16666666666666019037e-02;
  c = 1.0 - 0.5 * z + z * z * pc;
}

// The same in float: Cephes' sinf/cosf minimax polynomials (degree 7 and 8, within about a
// float ulp on [-pi/4, pi/4]).
inline void sincos_kernel(float r, float& s, float& c) {
  const float z = r * r;
  float ps = -1.9515295891e-4f;
  ps = ps * z + 8.3321608736e-3f;
  ps = ps * z - 1.6666654611e-1f;
  s = r + r * z * ps;
  float pc = 2.443315711809948e-5f;
  pc = pc * z - 1.388731625493765e-3f;
  pc = pc * z + 4.166664568298827e-2f;
  c = 1.0f - 0.5f * z + z * z * pc;
}

// sin and cos of q pi/2 + r from s = sin r and c = cos r. qm is q + round_magic, before the
// subtraction that gave q: its low two mantissa bits are q mod 4 (negative q included), so
// the quadrant costs integer ops and a select, not float compares of q. Quadrants 1 and 3
// swap sin and cos; sin is negative in quadrants 2 and 3, cos in 1 and 2.
template <class T>
inline void rotate_quadrant(T qm, T s, T c, T& s_out, T& c_out) {
  using U = typename FloatBits<T>::U;
  constexpr int to_sign = 8 * sizeof(T) - 2;  // moves bit 1 to the sign bit
  const U q = bits_of(qm);
  const bool odd = (q & 1) != 0;
  s_out = value_of<T>(bits_of(odd ? c : s) ^ U((q & 2) << to_sign));
  c_out = value_of<T>(bits_of(odd ? s : c) ^ U(((q + 1) & 2) << to_sign));
}

inline void sincos_reduced(double x, double& s_out, double& c_out) {
  constexpr double two_over_pi = 0.63661977236758134308;
  constexpr double pio2_1 = 1.57079632673412561417e+00;   // first 33 bits of pi/2
  constexpr double pio2_2 = 6.07710050630396597660e-11;   // next 33 bits
  constexpr double pio2_3 = 2.02226624879595063154e-21;   // the rest (pi/2 - pio2_1 - pio2_2)
  constexpr double round_magic = FloatBits<double>::round_magic;
  const double qm = x * two_over_pi + round_magic;
  const double q = qm - round_magic;
  const double r = ((x - q * pio2_1) - q * pio2_2) - q * pio2_3;
  double s, c;
  sincos_kernel(r, s, c);
  rotate_quadrant(qm, s, c, s_out, c_out);
}

// sin and cos of 2 pi u for 0 <= u < 2^49 (double; u < 2^21 in float): the Box-Muller angle.
// The quadrant comes from u itself, q = round(4 u), and u - q/4 is exact (Sterbenz), so
// r = 2 pi (u - q/4) carries one rounding (beside that of the constant 2 pi) and needs no
// reduction constants. sincos_reduced(2 pi u) rounded 2 pi u first: up to about 7 units of
// 2^-53 off in double, against 2 here.
template <class T>
inline void sincos_2pi(T u, T& s_out, T& c_out) {
  constexpr T round_magic = FloatBits<T>::round_magic;
  const T qm = u * T(4) + round_magic;
  const T r = (u - T(0.25) * (qm - round_magic)) * T(6.28318530717958647692);
  T s, c;
  sincos_kernel(r, s, c);
  rotate_quadrant(qm, s, c, s_out, c_out);
}

// The same in float, for float32 fields: twice the lanes of the double version. Cody-Waite
// reduction by pi/2 with Moshier's three-part constant (Cephes sinf: the first two parts have
// few enough bits that q * part is exact for |q| < 2^13), so it holds for
// |x| < kSincosMaxArgFloat.
constexpr float kSincosMaxArgFloat = 8192.0f;

inline void sincos_reduced_float(float x, float& s_out, float& c_out) {
  constexpr float two_over_pi = 0.636619772367581343f;
  constexpr float pio2_1 = 1.5703125f;
  constexpr float pio2_2 = 4.837512969970703125e-4f;
  constexpr float pio2_3 = 7.54978995489188216e-8f;
  constexpr float round_magic = FloatBits<float>::round_magic;
  const float qm = x * two_over_pi + round_magic;
  const float q = qm - round_magic;
  const float r = ((x - q * pio2_1) - q * pio2_2) - q * pio2_3;
  float s, c;
  sincos_kernel(r, s, c);
  rotate_quadrant(qm, s, c, s_out, c_out);
}

// log(x) for finite x > 0 (normal, not subnormal): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
// log x = e ln 2 + 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.1716. log_reduce gives s and e;
// the two precisions differ only in the series for atanh. Bit manipulation and integer
// compares only: an ordered float compare may trap, which stops GCC from if-converting, and
// so vectorising, a loop around it.
template <class T>
LFT_FORCE_INLINE void log_reduce(T x, T& s, T& e) {
  using B = FloatBits<T>;
  using U = typename B::U;
  constexpr int k = B::kMantissaBits;
  const U b = bits_of(x);
  const U mantissa = b & ((U(1) << k) - 1);
  T m = value_of<T>(mantissa | (U(B::kBias) << k));                   // m in [1, 2)
  e = value_of<T>((U(B::kBias + k) << k) | (b >> k));                  // 2^k + biased exponent
  e -= T(U(1) << k) + T(B::kBias);
  const T big = mantissa > B::kSqrt2Mantissa ? T(1) : T(0);           // m > sqrt(2)
  m *= T(1) - T(0.5) * big;
  e += big;
  s = (m - T(1)) / (m + T(1));
}

// Double: 2 atanh(s) = 2 s + s R(s^2) with fdlibm's minimax R (__ieee754_log's Lg1..Lg7,
// error below 2^-58; two FMAs fewer than the odd series to s^19/19 it replaces, as accurate).
LFT_FORCE_INLINE double log_positive(double x) {
  double s, e;
  log_reduce(x, s, e);
  const double z = s * s;
  double R = 1.479819860511658591e-01;
  R = R * z + 1.531383769920937332e-01;
  R = R * z + 1.818357216161805012e-01;
  R = R * z + 2.222219843214978396e-01;
  R = R * z + 2.857142874366239149e-01;
  R = R * z + 3.999999999940941908e-01;
  R = R * z + 6.666666666666735130e-01;
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // ln 2 split so e * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  return e * ln2_hi + (2.0 * s + s * (z * R) + e * ln2_lo);
}

// Float: the odd series of atanh cut after s^9/9 (the first omitted term of log m,
// 2 s^11/11, is below 2e-9 relative), ln 2 split as fdlibm's logf splits it.
LFT_FORCE_INLINE float log_positive(float x) {
  float s, e;
  log_reduce(x, s, e);
  const float z = s * s;
  float p = 1.0f / 9;
  p = p * z + 1.0f / 7;
  p = p * z + 1.0f / 5;
  p = p * z + 1.0f / 3;
  constexpr float ln2_hi = 6.9313812256e-01f;  // 17 significant bits: e * ln2_hi is exact (|e| <= 128)
  constexpr float ln2_lo = 9.0580006145e-06f;
  return e * ln2_hi + (2.0f * s + 2.0f * s * z * p + e * ln2_lo);
}

}  // namespace cpu
}  // namespace lftaccel
