// CPU checkerboard Metropolis sweeps (phi^4, XY) and the reverse-SDE
// Euler-Maruyama step.
//
// A sweep updates all sites of parity 0, then all of parity 1. Sites of one
// parity share no neighbours (every extent is even), so their updates are
// independent and the order within a parity cannot change the result.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "lftaccel/cpu.hpp"
#include "parallel.hpp"
#include "stencil.hpp"

namespace lftaccel {
namespace cpu {
namespace {

template <int D, class T, class Site>
double update_rows(const Site& site, const Lattice& lat, T* x, int64_t r0, int64_t r1, int parity, T delta,
                   uint32_t seed, uint32_t chain, uint64_t step) {
  const int64_t L = lat.extent[D - 1];
  double acc = 0;
  RowWalker<D> walk(lat, r0);
  for (int64_t r = r0; r < r1; ++r, walk.next(lat)) {
    const int64_t base = r * L;
    T* row = x + base;
    const T* fr[D];
    const T* br[D];
    walk.neighbour_rows(lat, static_cast<const T*>(x), base, fr, br);
    int row_parity = 0;
    for (int mu = 0; mu < D - 1; ++mu) row_parity += int(walk.coord[mu]);
    for (int64_t i = (parity + row_parity) & 1; i < L; i += 2) {
      T nb[2 * D];  // forward and backward neighbour along each direction
      for (int mu = 0; mu < D - 1; ++mu) {
        nb[2 * mu] = fr[mu][i];
        nb[2 * mu + 1] = br[mu][i];
      }
      nb[2 * D - 2] = row[i + 1 == L ? 0 : i + 1];
      nb[2 * D - 1] = row[i == 0 ? L - 1 : i - 1];
      acc += metropolis_site<2 * D>(site, row[i], nb, delta,
                                    philox_block(seed, chain, uint32_t(base + i), step, kMetropolis));
    }
  }
  return acc;
}

}  // namespace

template <class T, class Site>
void metropolis(const Lattice& lat, int64_t batch, T* x, double* accepted, const Site& site, T delta,
                int n_sweeps, uint32_t seed, uint32_t chain_offset, uint64_t step, int nthreads) {
  check_checkerboard(lat);
  const int64_t L = lat.extent[lat.ndim - 1], rows = lat.volume / L;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkSites / L);
  const int64_t n_chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<double> partial(batch * n_chunks, 0.0);
  for (int s = 0; s < n_sweeps; ++s)
    for (int parity = 0; parity < 2; ++parity) {
      const uint64_t counter = 2 * (step + uint64_t(s)) + uint64_t(parity);
      parallel_items(batch * n_chunks, batch * lat.volume, nthreads, [&](int64_t it) {
        const int64_t b = it / n_chunks, c = it % n_chunks;
        const int64_t r0 = c * rows_per_chunk, r1 = std::min(rows, r0 + rows_per_chunk);
        const uint32_t chain = chain_offset + uint32_t(b);
        T* xb = x + b * lat.volume;
        double n = 0;
        switch (lat.ndim) {
          case 1: n = update_rows<1>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter); break;
          case 2: n = update_rows<2>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter); break;
          case 3: n = update_rows<3>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter); break;
          case 4: n = update_rows<4>(site, lat, xb, r0, r1, parity, delta, seed, chain, counter); break;
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
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n_sites + kChunk - 1) / kChunk;
  const T drift = T(coef.drift_x), sc = T(coef.score), nc = T(coef.noise);
  parallel_items(batch * chunks, batch * n_sites, nthreads, [&](int64_t it) {
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
