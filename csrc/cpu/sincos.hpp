// Vectorisable double-precision sin and cos for the CPU XY stencil.
//
// glibc's sin/cos do not vectorise, and they dominate an XY sweep. This is the
// textbook method: Cody-Waite reduction by pi/2 with a three-part constant, then
// Taylor polynomials on [-pi/4, pi/4] (truncation below 3e-18), then a quadrant
// swap. Branch-free, so `omp simd` loops over it vectorise. Accurate to a few
// ulp for |x| < 2^19; callers use std::sin/std::cos beyond kSincosMaxArg.
#pragma once

namespace lftaccel {
namespace cpu {

constexpr double kSincosMaxArg = 524288.0;  // 2^19: q * pio2_{1,2} stay exact

inline void sincos_reduced(double x, double& s_out, double& c_out) {
  constexpr double two_over_pi = 0.63661977236758134308;
  constexpr double pio2_1 = 1.57079632673412561417e+00;   // first 33 bits of pi/2
  constexpr double pio2_2 = 6.07710050630396597660e-11;   // next 33 bits
  constexpr double pio2_3 = 2.02226624871116645580e-21;   // the rest
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
  // Quadrant j = q - 4 round(q / 4), in {-2, -1, 0, 1, 2} (so j = -1 is quadrant 3 and
  // j = +-2 is quadrant 2). Rounding by the magic constant, not floor(), which GCC
  // only inlines under -fno-trapping-math: the selects then vectorise.
  const double q4 = (q * 0.25 + round_magic) - round_magic;
  const double j = q - 4.0 * q4;
  const bool odd = j == 1.0 || j == -1.0;
  const bool half = j == 2.0 || j == -2.0;
  const double sv = odd ? c : s, cv = odd ? s : c;
  s_out = (half || j == -1.0) ? -sv : sv;
  c_out = (half || j == 1.0) ? -cv : cv;
}

}  // namespace cpu
}  // namespace lftaccel
