// The CPU kernels' own vector maths, Philox lanes and vector rows (csrc/cpu, not public
// headers), built with the library's flags so that the paths the kernels take (AVX-512 where the
// machine has it) are the ones checked: sin/cos/log against long double libm, the Box-Muller
// angle at its quadrant points, the vectorised Philox fill block for block against the scalar
// rounds of philox.hpp, and the vector rows' held stores against their plain stores.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "lftaccel/phi4.hpp"
#include "philox_lanes.hpp"
#include "stencil.hpp"
#include "vecmath.hpp"

using namespace lftaccel;
using namespace lftaccel::cpu;

static int failures = 0, n_checks = 0;

static void expect(bool ok, const char* what, double measured) {
  std::printf("%s %s (%.3g)\n", ok ? "PASS" : "FAIL", what, measured);
  ++n_checks;
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

#if LFT_HAVE_SIMD
// The vector rows holding their stores back kStoreDelay vectors (stencil.hpp, 4K aliasing) hand
// every site of a work item its output once, and only those sites, the same bit for bit as
// storing at once, with the same action: for every work item (rows r0 .. r1 - 1) of a lattice,
// for the gradient and for the in-place kick-drift. Returns the work items that differ.
template <class T, int D>
static long held_store_mismatches(std::vector<int64_t> extents, long& items) {
  const Lattice lat = make_lattice(D, extents.data());
  const int64_t V = lat.volume, rows = V / extents.back();
  std::mt19937_64 gen(uint64_t(V) * 7 + D);
  std::normal_distribution<double> normal;
  std::vector<T> x(V), p(V);
  for (int64_t i = 0; i < V; ++i) x[i] = T(normal(gen)), p[i] = T(normal(gen));
  const Phi4Site<T> site{T(0.21), T(0.3)};
  const T nan = std::numeric_limits<T>::quiet_NaN();
  auto same = [](const std::vector<T>& a, const std::vector<T>& b) {
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
  };
  long bad = 0;
  for (int64_t r0 = 0; r0 < rows; ++r0)
    for (int64_t r1 = r0 + 1; r1 <= rows; ++r1, ++items) {
      const int64_t i0 = r0 * extents.back(), i1 = r1 * extents.back();
      std::vector<T> g0(V, nan), g2(V, nan);
      const double a0 = stencil_vector_rows<D, true, true, double, 0>(site, lat, x.data(), GradientOut<T>{g0.data()},
                                                                      r0, r1);
      const double a2 = stencil_vector_rows<D, true, true, double, kStoreDelay>(site, lat, x.data(),
                                                                                GradientOut<T>{g2.data()}, r0, r1);
      bool ok = a0 == a2 && same(g0, g2);
      for (int64_t i = 0; i < V; ++i) ok = ok && (i >= i0 && i < i1) == !std::isnan(g0[i]);  // the item's sites only
      std::vector<T> gd0(V, nan), gd2(V, nan);  // the gradient alone
      stencil_vector_rows<D, false, true, double, 0>(site, lat, x.data(), GradientOut<T>{gd0.data()}, r0, r1);
      stencil_vector_rows<D, false, true, double, kStoreDelay>(site, lat, x.data(), GradientOut<T>{gd2.data()}, r0, r1);
      ok = ok && same(gd0, gd2);
      std::vector<T> p0 = p, p2 = p, xn0(V, nan), xn2(V, nan);  // the kick-drift, momenta in place
      const double k0 = stencil_vector_rows<D, true, true, double, 0>(
          site, lat, x.data(), KickDriftOut<T, true>{p0.data(), xn0.data(), T(0.05), T(0.1)}, r0, r1);
      const double k2 = stencil_vector_rows<D, true, true, double, kStoreDelay>(
          site, lat, x.data(), KickDriftOut<T, true>{p2.data(), xn2.data(), T(0.05), T(0.1)}, r0, r1);
      ok = ok && k0 == k2 && k0 == a0 && same(p0, p2) && same(xn0, xn2) && !same(p0, p);
      bad += !ok;
    }
  return bad;
}
#endif

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

#if LFT_HAVE_SIMD
  long items = 0, bad = 0;
  bad += held_store_mismatches<double, 1>({64}, items) + held_store_mismatches<double, 1>({8}, items);
  bad += held_store_mismatches<double, 2>({6, 64}, items) + held_store_mismatches<double, 2>({5, 8}, items);
  bad += held_store_mismatches<double, 3>({3, 4, 16}, items) + held_store_mismatches<double, 3>({2, 3, 8}, items);
  bad += held_store_mismatches<double, 4>({2, 3, 2, 16}, items) + held_store_mismatches<double, 4>({3, 2, 2, 8}, items);
  bad += held_store_mismatches<float, 1>({32}, items) + held_store_mismatches<float, 2>({6, 64}, items);
  bad += held_store_mismatches<float, 3>({3, 4, 16}, items) + held_store_mismatches<float, 4>({2, 3, 2, 16}, items);
  expect(bad == 0 && items > 300, "vector rows: held stores equal plain stores, every work item", double(bad));
  // hold_stores holds where the gradient lies 128 bytes past the field modulo 4096 (the loads of
  // the next-but-one vector wait on each store) and not where it lies 1024 bytes past.
  {
    const int64_t ext[2] = {64, 64};
    const Lattice lat = make_lattice(2, ext);
    std::vector<double> buf(4 * 4096 + 512);
    double* x = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) / 8;  // (64-byte aligned)
    const bool near = hold_stores<2>(lat, x, GradientOut<double>{x + 4096 + 16});
    const bool far = hold_stores<2>(lat, x, GradientOut<double>{x + 4096 + 128});
    expect(near && !far, "hold_stores: holds at 128 bytes modulo 4096, not at 1024", double(near) - double(far));
  }
#endif

  std::printf("%d of %d checks passed\n", n_checks - failures, n_checks);
  return failures == 0 ? 0 : 1;
}
