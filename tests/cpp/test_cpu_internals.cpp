// The CPU kernels' own vector maths and Philox lanes (csrc/cpu, not public headers), built
// with the library's flags so that the paths the kernels take (AVX-512 where the machine has
// it) are the ones checked: sin/cos/log against long double libm, the Box-Muller angle at
// its quadrant points, and the vectorised Philox fill block for block against the scalar
// rounds of philox.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <random>
#include <type_traits>

#include "philox_lanes.hpp"
#include "vecmath.hpp"

using namespace lftaccel;
using namespace lftaccel::cpu;

static int failures = 0, checks = 0;

static void expect(bool ok, const char* what, double measured) {
  std::printf("%s %s (%.3g)\n", ok ? "PASS" : "FAIL", what, measured);
  ++checks;
  if (!ok) ++failures;
}

constexpr long double kTwoPi = 6.283185307179586476925286766559L;

// Largest |sin - exact| and |cos - exact| over angles of every size up to the reduction's
// limit, both signs, and multiples of pi/2 (the quadrant edges), in units of `unit`.
template <class T, class F>
static double sincos_error(F sincos, double max_arg, double unit) {
  std::mt19937_64 g(11);
  std::uniform_real_distribution<double> U(-1, 1);
  double worst = 0;
  for (int i = 0; i < 400000; ++i) {
    T x = i < 2000 ? T((i - 1000) * 1.5707963267948966) : T(U(g) * std::ldexp(1.0, int(g() % 40) - 20));
    if (!(std::fabs(double(x)) < max_arg)) continue;
    T s, c;
    sincos(x, s, c);
    const long double X = x;
    worst = std::max({worst, double(std::fabs(s - std::sin(X))), double(std::fabs(c - std::cos(X)))});
  }
  return worst / unit;
}

// The same for sin and cos of 2 pi u, u in (0, 1), quarter points included.
template <class T>
static double sincos_2pi_error(double unit) {
  std::mt19937_64 g(12);
  double worst = 0;
  for (int i = 0; i < 400000; ++i) {
    const T u = i <= 64 ? T(i / 64.0) : T(double(g() >> 11) * 0x1p-53);
    T s, c;
    sincos_2pi(u, s, c);
    const long double t = kTwoPi * u;
    worst = std::max({worst, double(std::fabs(s - std::sin(t))), double(std::fabs(c - std::cos(t)))});
  }
  return worst / unit;
}

// Largest relative error of log over normal numbers of every exponent, in ulps of T.
template <class T>
static double log_error() {
  std::mt19937_64 g(13);
  std::uniform_real_distribution<double> U(0.5, 2.0);
  const int emax = std::is_same_v<T, float> ? 120 : 1000;
  double worst = 0;
  for (int i = 0; i < 400000; ++i) {
    const T x = T(std::ldexp(U(g), int(g() % (2 * emax)) - emax));
    if (!std::isnormal(x) || x == T(1)) continue;
    const long double exact = std::log(static_cast<long double>(x));
    const double ulp = std::ldexp(1.0, std::ilogb(double(exact)) - (std::numeric_limits<T>::digits - 1));
    worst = std::max(worst, double(std::fabs(log_positive(x) - exact)) / ulp);
  }
  return worst;
}

int main() {
  const double e53 = 0x1p-53, e24 = 0x1p-24;
  auto sc = [](double x, double& s, double& c) { sincos_reduced(x, s, c); };
  auto scf = [](float x, float& s, float& c) { sincos_reduced_float(x, s, c); };
  double e;
  e = sincos_error<double>(sc, kSincosMaxArg, e53);
  expect(e < 3, "sincos_reduced within 3 units of 2^-53 for |x| < 2^19", e);
  e = sincos_error<float>(scf, kSincosMaxArgFloat, e24);
  expect(e < 3, "sincos_reduced_float within 3 units of 2^-24 for |x| < 2^13", e);
  e = sincos_2pi_error<double>(e53);
  expect(e < 3, "sincos_2pi(double) within 3 units of 2^-53 on [0, 1]", e);
  e = sincos_2pi_error<float>(e24);
  expect(e < 3, "sincos_2pi(float) within 3 units of 2^-24 on [0, 1]", e);
  e = log_error<double>();
  expect(e < 3, "log_positive(double) within 3 ulp", e);
  e = log_error<float>();
  expect(e < 3, "log_positive(float) within 3 ulp", e);

  // Vectorised Philox fills equal the scalar rounds, for fills of every length up to the
  // lanes (whole registers and partial ones), strides of the checkerboard sweeps and odd
  // ones, and site counters that wrap past 2^32.
  static PhiloxLanes lanes;
  long mismatches = 0, blocks = 0;
  for (uint32_t stride : {1u, 2u, 3u, 0x80000001u})
    for (uint32_t site0 : {0u, 12345u, 0xfffffff0u})
      for (int64_t n = 0; n <= kLanes; n += (n < 40 ? 1 : 37)) {
        const uint64_t step = 0x123456789abcull + uint64_t(n);
        lanes.fill(0xdeadbeefu, 77u, site0, n, step, 9u, stride);
        for (int64_t k = 0; k < n; ++k) {
          const Philox4x32 b = philox_block(0xdeadbeefu, 77u, site0 + stride * uint32_t(k), step, 9u);
          mismatches += b.v[0] != lanes.w0[k] || b.v[1] != lanes.w1[k] || b.v[2] != lanes.w2[k] ||
                        b.v[3] != lanes.w3[k];
          ++blocks;
        }
      }
  expect(mismatches == 0 && blocks > 10000, "PhiloxLanes::fill equals philox_block, block for block",
         double(mismatches));

  std::printf("%d of %d checks passed\n", checks - failures, checks);
  return failures == 0 ? 0 : 1;
}
