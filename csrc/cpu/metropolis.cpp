// CPU checkerboard Metropolis sweeps (phi^4, XY) and the reverse-SDE
// Euler-Maruyama step.
//
// A sweep updates all sites of parity 0, then all of parity 1. Sites of one
// parity share no neighbours (every extent is even), so their updates are
// independent and the order within a parity cannot change the result. Every site of a
// parity is updated in vectorised runs (update_run) with vecmath's sin, cos and log; XY
// angles out of vecmath's range take metropolis_site (libm) one by one. Measured (2 cores,
// 64 x 64^2 float64, one sweep): phi^4 3.35 -> 1.27 ms, XY 10.3 -> 3.1 ms against
// metropolis_site for every site; then phi^4 1.34 -> 0.63 ms once the row ends and the
// loop's peeled tail stopped running scalar (update_run).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "lftaccel/cpu.hpp"
#include "parallel.hpp"
#include "philox_lanes.hpp"
#include "stencil.hpp"
#include "vecmath.hpp"

// The per-site pieces below are LFT_FORCE_INLINE: GCC left update_site out of line, 79 % of
// a sweep's time.

namespace lftaccel {
namespace cpu {
namespace {

LFT_FORCE_INLINE void vec_sincos(double x, double& s, double& c) { sincos_reduced(x, s, c); }
LFT_FORCE_INLINE void vec_sincos(float x, float& s, float& c) { sincos_reduced_float(x, s, c); }

// What a site's local action needs of its neighbours, gathered one neighbour at a time, and
// the change of the action when the site moves from v to prop, in double as metropolis_site
// computes it: the header's phi4_local / xy_local_cs, with XY's sin and cos from vecmath, so
// that a loop over sites vectorises (metropolis_site calls libm's). Scalars only: an array
// of neighbours passed by pointer kept GCC from vectorising the loop.
template <class T>
struct Neighbours;

template <class T>
struct Neighbours<Phi4Site<T>> {
  T sum = 0;
  LFT_FORCE_INLINE void add(T x) { sum += x; }
  LFT_FORCE_INLINE double change(const Phi4Site<T>& p, T v, T prop) const {
    return double(phi4_local(p, prop, sum)) - double(phi4_local(p, v, sum));
  }
  static LFT_FORCE_INLINE T accepted(const Phi4Site<T>&, T prop) { return prop; }
};

template <class T>
struct Neighbours<XYSite<T>> {
  T cs = 0, ss = 0;
  LFT_FORCE_INLINE void add(T x) {
    T s, c;
    vec_sincos(x, s, c);
    cs += c;
    ss += s;
  }
  LFT_FORCE_INLINE double change(const XYSite<T>& p, T v, T prop) const {
    T sp, cp, sv, cv;
    vec_sincos(prop, sp, cp);
    vec_sincos(v, sv, cv);
    return double(xy_local_cs(p, cp, sp, cs, ss)) - double(xy_local_cs(p, cv, sv, cs, ss));
  }
  static LFT_FORCE_INLINE T accepted(const XYSite<T>& p, T prop) { return canonical(p, prop); }
};

// metropolis_site's update of a site holding v whose neighbours are gathered in nb, from
// the Philox words w0..w3, with vecmath's log in the accept test. Returns the new value.
template <class T, class Site>
LFT_FORCE_INLINE T update_site(const Site& p, T v, const Neighbours<Site>& nb, T delta, uint32_t w0, uint32_t w1,
                               uint32_t w2, uint32_t w3, bool& ok) {
  // from the words (a Philox4x32 built here, an array passed by reference, kept GCC from
  // vectorising the loop around it)
  T u;
  double ua;
  MetropolisUniforms<T>::get(w0, w1, w2, w3, u, ua);
  const T prop = v + delta * (T(2) * u - T(1));
  ok = metropolis_accept_log(nb.change(p, v, prop), log_positive(ua));
  return ok ? Neighbours<Site>::accepted(p, prop) : v;
}

// The n sites i0, i0 + 2, ... of one parity in a row at once: their Philox blocks vectorised
// (lanes), then update_site. Their row neighbours come from padded (padded[i - 1] and
// padded[i + 1] are site i's, wrap-around included), the row's other-parity sites, which this
// half-sweep does not change. A site reads only sites of the other parity, so the updates are
// independent whatever their order.
// The sites' values and neighbours are first copied into contiguous arrays: read every other
// value in the update loop itself, GCC peeled its last vector iterations "for gaps" (a
// stride-2 load reads one value past the last pair) and ran them scalar, a third or more of
// a 64-site row's parity (float64 64 x 64^2 phi^4: 10.4 ns a site).
template <int D, class T, class Site>
double update_run(const Site& site, T* row, const T* padded, const T* const* fr, const T* const* br, int64_t i0,
                  int64_t n, T delta, const PhiloxLanes& lanes) {
  const Site p = site;  // a local copy: no store to row can alias it
  alignas(64) T value[kLanes];
  alignas(64) T neighbour[2 * D][kLanes];  // in metropolis_site's order: fwd, bwd per dimension
  for (int mu = 0; mu < D - 1; ++mu) {
    const T *f = fr[mu] + i0, *b = br[mu] + i0;
    for (int64_t k = 0; k < n; ++k) neighbour[2 * mu][k] = f[2 * k], neighbour[2 * mu + 1][k] = b[2 * k];
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = i0 + 2 * k;
    neighbour[2 * D - 2][k] = padded[i + 1];
    neighbour[2 * D - 1][k] = padded[i - 1];
    value[k] = row[i];
  }
  // Acceptances go to an array and are summed after: an omp simd reduction here made GCC
  // zero a per-lane copy of the sum with memset, which stopped it vectorising the loop.
  alignas(64) double accepted[kLanes];
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    Neighbours<Site> nb;
LFT_UNROLL
    for (int j = 0; j < 2 * D; ++j) nb.add(neighbour[j][k]);
    bool ok;
    value[k] = update_site(p, value[k], nb, delta, lanes.w0[k], lanes.w1[k], lanes.w2[k], lanes.w3[k], ok);
    accepted[k] = ok ? 1.0 : 0.0;
  }
  for (int64_t k = 0; k < n; ++k) row[i0 + 2 * k] = value[k];
  double acc = 0;
  for (int64_t k = 0; k < n; ++k) acc += accepted[k];
  return acc;
}

// This thread's buffer for a row and its two wrap-around neighbours (L + 2 values).
template <class T>
T* padded_row(int64_t L) {
  thread_local std::vector<T> buf;
  if (buf.size() < size_t(L + 2)) buf.resize(size_t(L + 2));
  return buf.data();
}

template <int D, class T, class Site>
double update_rows(const Site& site, const Lattice& lat, T* x, int64_t r0, int64_t r1, int parity, T delta,
                   uint32_t seed, uint32_t chain, uint64_t step, bool vectorised) {
  const int64_t L = lat.extent[D - 1];
  double acc = 0;
  PhiloxLanes lanes;
  RowWalker<D> walk(lat, r0);
  for (int64_t r = r0; r < r1; ++r, walk.next(lat)) {
    const int64_t base = r * L;
    T* row = x + base;
    const T* fr[D];
    const T* br[D];
    walk.neighbour_rows(lat, static_cast<const T*>(x), base, fr, br);
    int row_parity = 0;
    for (int mu = 0; mu < D - 1; ++mu) row_parity += int(walk.coord[mu]);
    const int64_t first = (parity + row_parity) & 1;
    if (!vectorised) {  // libm's sin/cos (XY angles beyond vecmath's range), site by site
      for (int64_t i = first; i < L; i += 2) {
        T nb[2 * D];
        for (int mu = 0; mu < D - 1; ++mu) {
          nb[2 * mu] = fr[mu][i];
          nb[2 * mu + 1] = br[mu][i];
        }
        nb[2 * D - 2] = row[i + 1 == L ? 0 : i + 1];
        nb[2 * D - 1] = row[i == 0 ? L - 1 : i - 1];
        const Philox4x32 block = philox_block(seed, chain, uint32_t(base + i), step, kMetropolis);
        acc += metropolis_site<2 * D>(site, row[i], nb, delta, block);
      }
      continue;
    }
    // The row copied between its wrap-around neighbours, so that every site of the parity,
    // the ends included, takes the vector loop: with the two end sites one by one (a scalar
    // Philox block each) and the runs between them one site short of whole vectors (a scalar
    // remainder), a float64 64 x 64^2 phi^4 sweep took 10.4 ns a site, most of it scalar.
    T* padded = padded_row<T>(L);
    padded[0] = row[L - 1];
    std::copy(row, row + L, padded + 1);
    padded[L + 1] = row[0];
    for (int64_t i0 = first; i0 < L; i0 += 2 * kLanes) {
      const int64_t n = std::min(kLanes, (L - i0 + 1) / 2);
      lanes.fill(seed, chain, uint32_t(base + i0), n, step, kMetropolis, 2u);
      acc += update_run<D>(site, row, padded + 1, fr, br, i0, n, delta, lanes);
    }
  }
  return acc;
}

// Whether every angle and every proposal (an angle plus at most |delta|) is within vecmath's
// sincos range: then the sweeps may use it, and they keep it so (an accepted XY value is
// canonical, in [-pi, pi)).
template <class T>
bool vec_range(const Phi4Site<T>&, const T*, int64_t, T) {
  return true;
}
template <class T>
bool vec_range(const XYSite<T>&, const T* x, int64_t n, T delta) {
  const double bound = (std::is_same_v<T, float> ? double(kSincosMaxArgFloat) : kSincosMaxArg) -
                       std::fabs(double(delta));
  if (!(bound > 4.0)) return false;  // also a non-finite delta
  int tame = 1;
#pragma omp simd reduction(& : tame)
  for (int64_t i = 0; i < n; ++i) tame &= std::fabs(double(x[i])) < bound;
  return tame;
}

}  // namespace

template <class T, class Site>
void metropolis(const Lattice& lat, int64_t batch, T* x, double* accepted, const Site& site, T delta,
                int n_sweeps, uint32_t seed, uint32_t chain_offset, uint64_t step, int nthreads) {
  checks::metropolis_call(lat, batch, x, accepted, site, delta, n_sweeps, chain_offset);
  check_threads(nthreads);
  const int64_t L = lat.extent[lat.ndim - 1], rows = lat.volume / L;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkSites / L);
  const int64_t n_chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<double> partial(batch * n_chunks, 0.0);
  const bool vectorised = vec_range(site, x, batch * lat.volume, delta);
  for (int s = 0; s < n_sweeps; ++s)
    for (int parity = 0; parity < 2; ++parity) {
      const uint64_t counter = 2 * (step + uint64_t(s)) + uint64_t(parity);
      // A site's update (a Philox block, an exponential) costs what ~32 sites of a stencil pass
      // do (17 ns against 0.3-0.5 ns): weighed as such against parallel_items' threshold, a
      // 16 x 32^2 sweep runs on both threads (0.28 -> 0.15 ms) instead of one.
      parallel_items(batch * n_chunks, 32 * batch * lat.volume, nthreads, [&](int64_t it) {
        const int64_t b = it / n_chunks, c = it % n_chunks;
        const int64_t r0 = c * rows_per_chunk, r1 = std::min(rows, r0 + rows_per_chunk);
        const uint32_t chain = chain_offset + uint32_t(b);
        T* xb = x + b * lat.volume;
        double n = 0;
        switch (lat.ndim) {
          case 1: n = update_rows<1>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter, vectorised); break;
          case 2: n = update_rows<2>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter, vectorised); break;
          case 3: n = update_rows<3>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter, vectorised); break;
          case 4: n = update_rows<4>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter, vectorised); break;
        }
        partial[it] += n;
      });
    }
  for (int64_t b = 0; b < batch; ++b) {
    double n = 0;
    for (int64_t c = 0; c < n_chunks; ++c) n += partial[b * n_chunks + c];
    accepted[b] = n;
  }
}

template <class T>
void sde_step(int64_t batch, int64_t n_sites, T* x, const T* score, const SdeCoefficients& coef, uint32_t seed,
              uint32_t chain_offset, uint64_t step, int nthreads) {
  checks::sde_call(batch, n_sites, x, score, coef, chain_offset);
  check_threads(nthreads);
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n_sites + kChunk - 1) / kChunk;
  const T drift = T(coef.drift_x), sc = T(coef.score), nc = T(coef.noise);
  // a normal variate per site costs what ~8 sites of a plain pass do
  parallel_items(batch * chunks, 8 * batch * n_sites, nthreads, [&](int64_t it) {
    const int64_t b = it / chunks, s0 = (it % chunks) * kChunk, s1 = std::min(n_sites, s0 + kChunk);
    T z[kChunk];
    if (nc != T(0)) philox_normal(z, 1, s1 - s0, seed, chain_offset + uint32_t(b), step, kSde, 1, uint32_t(s0));
    T* __restrict xb = x + b * n_sites;
    const T* __restrict sb = score + b * n_sites;
#pragma omp simd
    for (int64_t i = s0; i < s1; ++i) xb[i] = sde_update(xb[i], sb[i], drift, sc, nc, nc != T(0) ? z[i - s0] : T(0));
  });
}

#define LFT_INSTANTIATE(T, Site)                                                                          \
  template void metropolis<T, Site<T>>(const Lattice&, int64_t, T*, double*, const Site<T>&, T, int,      \
                                       uint32_t, uint32_t, uint64_t, int);
LFT_INSTANTIATE(float, Phi4Site)
LFT_INSTANTIATE(double, Phi4Site)
LFT_INSTANTIATE(float, XYSite)
LFT_INSTANTIATE(double, XYSite)
#undef LFT_INSTANTIATE
template void sde_step<float>(int64_t, int64_t, float*, const float*, const SdeCoefficients&, uint32_t, uint32_t,
                              uint64_t, int);
template void sde_step<double>(int64_t, int64_t, double*, const double*, const SdeCoefficients&, uint32_t,
                               uint32_t, uint64_t, int);

}  // namespace cpu
}  // namespace lftaccel
