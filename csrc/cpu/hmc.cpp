// CPU HMC trajectories and Langevin steps for a batch of independent chains.
//
// The force and the action (in double) come from the theory's stencil through
// energy() (energy.hpp), or with the kick and drift fused into it (kick_drift(), for
// the theories that have it); the momentum refresh, kicks and drifts follow mcmc.hpp.
// With at least as many chains as threads, each thread runs whole trajectories
// of its own chains, so a chain's field, momenta and force stay in its core's
// cache for all leapfrog steps; with fewer chains every pass uses all threads.
// The per-site arithmetic and the order of every sum are the same in both
// layouts, so a chain's history is bitwise independent of the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "lftaccel/cpu.hpp"
#include "energy.hpp"
#include "parallel.hpp"

namespace lftaccel {
namespace cpu {
namespace {

// Calls f(i0, i1) over [0, n) in fixed chunks (in parallel when nt > 1).
template <class F>
void for_chunks(int64_t n, int nt, const F& f) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_items(chunks, n, nt, [&](int64_t c) { f(c * kChunk, std::min(n, (c + 1) * kChunk)); });
}

// sum_i v_i^2 / 2 per chain, in double, in one fixed order: kLanes partial sums of the
// sites i = k (mod kLanes), then the partials in order. Written out rather than as an omp
// simd reduction, whose order is the vectoriser's choice: trajectory() is compiled twice
// (a chain per thread, or passes over all chains) and the two copies summed K in different
// orders, so dH, and with it an accept decision, could change with the thread count.
// 32 lanes are four independent 8-lane accumulators: with one, each vector's add waited on
// the previous one (the sums took 4 % of a 64 x 64^2 trajectory, as long as a force pass).
template <class T>
double half_square_sum(const T* v, int64_t n) {
  constexpr int64_t kLanes = 32;
  double lanes[kLanes] = {};
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) lanes[k] += double(v[i + k]) * double(v[i + k]);
  for (int64_t i = whole; i < n; ++i) lanes[i - whole] += double(v[i]) * double(v[i]);
  double acc = 0;
  for (int64_t k = 0; k < kLanes; ++k) acc += lanes[k];
  return 0.5 * acc;
}

// One trajectory for chains [b0, b0 + nb). work holds momenta, trial field and a third
// field for all `batch` chains (the force, or with a fused kick-drift the trial field's
// other buffer); energies is (4, batch). The final trial field is left in work's second
// slot.
template <class T, class Site>
void trajectory(const Lattice& lat, int64_t batch, int64_t b0, int64_t nb, T* x, T* work, double* energies,
                uint32_t* accepted, const Site& site, const HmcSettings<T>& hs, int nt) {
  const int64_t V = lat.volume, n = nb * V;
  T* __restrict p = work + b0 * V;
  T* __restrict xt = work + (batch + b0) * V;
  T* __restrict f = work + (2 * batch + b0) * V;
  T* __restrict xb = x + b0 * V;
  std::vector<double> action(nb);  // in double whatever T: dH is a small difference
  if (hs.refresh) philox_normal(p, nb, V, hs.seed, hs.chain_offset + uint32_t(b0), hs.step, kMomentum, nt);
  parallel_items(nb, n, nt, [&](int64_t c) { energies[batch + b0 + c] = half_square_sum(p + c * V, V); });
  const T eps = hs.eps, half = hs.eps / T(2);
  if constexpr (kHasKickDrift<Site>) {
    // Each step's force, kick and drift in one pass; the drift writes the other buffer. The
    // n_steps drifts alternate between xt and f, starting so that the last lands in xt.
    T* cur = hs.n_steps % 2 ? xt : f;
    T* next = hs.n_steps % 2 ? f : xt;
    kick_drift(site, lat, nb, xb, action.data(), p, cur, half, eps, nt);
    for (int64_t c = 0; c < nb; ++c) energies[b0 + c] = action[c];
    for (int s = 1; s < hs.n_steps; ++s) {
      kick_drift(site, lat, nb, cur, static_cast<double*>(nullptr), p, next, eps, eps, nt);
      std::swap(cur, next);
    }
    kick_drift(site, lat, nb, cur, action.data(), p, static_cast<T*>(nullptr), half, eps, nt);
  } else {
    energy(site, lat, nb, xb, action.data(), f, nt);
    for (int64_t c = 0; c < nb; ++c) energies[b0 + c] = action[c];
    for_chunks(n, nt, [&](int64_t i0, int64_t i1) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) {
        p[i] = leapfrog_kick(p[i], f[i], half);
        xt[i] = leapfrog_drift(xb[i], p[i], eps);
      }
    });
    for (int s = 1; s <= hs.n_steps; ++s) {
      const bool last = s == hs.n_steps;
      energy(site, lat, nb, xt, last ? action.data() : nullptr, f, nt);
      const T kick = last ? half : eps;
      for_chunks(n, nt, [&](int64_t i0, int64_t i1) {
        if (last) {
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) p[i] = leapfrog_kick(p[i], f[i], kick);
        } else {
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) {
            p[i] = leapfrog_kick(p[i], f[i], kick);
            xt[i] = leapfrog_drift(xt[i], p[i], eps);
          }
        }
      });
    }
  }
  parallel_items(nb, n, nt, [&](int64_t c) {
    const int64_t b = b0 + c;
    energies[2 * batch + b] = action[c];
    energies[3 * batch + b] = half_square_sum(p + c * V, V);
    const double dH = energies[2 * batch + b] + energies[3 * batch + b] - energies[b] - energies[batch + b];
    const uint32_t chain = hs.chain_offset + uint32_t(b);
    const bool acc = hs.accept_reject ? metropolis_accept(dH, accept_uniform(hs.seed, chain, hs.step))
                                      : std::isfinite(dH);
    accepted[b] = acc;
    if (acc) {
      T* __restrict dst = xb + c * V;
      const T* __restrict src = xt + c * V;
      const Site site_ = site;
#pragma omp simd
      for (int64_t i = 0; i < V; ++i) dst[i] = canonical(site_, src[i]);
    }
  });
}

// Chains in parallel (each thread owns whole chains) or passes in parallel. passes: the
// passes over the lattice that one call makes, which parallel_items weighs against its
// threshold: counting the sites alone kept a trajectory of 256 oscillator chains of 64
// sites on one thread (0.150 ms; on two, 0.077 ms).
template <class F>
void over_chains(int64_t batch, int64_t volume, int64_t passes, int nthreads, const F& run) {
  const int nt = resolve_threads(nthreads);
  if (nt == 1 || batch >= nt) {
    // (passes capped: past the threshold their number does not matter, and the product stays
    // far from overflow)
    const int64_t work = batch * volume * std::min<int64_t>(passes, 1024);
    parallel_items(batch, work, nt, [&](int64_t b) { run(b, int64_t(1), 1); }, /*balance=*/true);
  } else {
    run(int64_t(0), batch, nt);
  }
}

}  // namespace

template <class T, class Site>
void hmc(const Lattice& lat, int64_t batch, T* x, T* work, double* energies, uint32_t* accepted,
         const Site& site, const HmcSettings<T>& hs, int nthreads) {
  checks::hmc_call(lat, batch, x, work, energies, accepted, site, hs);
  check_threads(nthreads);
  // a force pass per step and one more, the momenta, two kinetic sums, the copy
  const int64_t passes = int64_t(hs.n_steps) + 5;
  over_chains(batch, lat.volume, passes, nthreads, [&](int64_t b0, int64_t nb, int nt) {
    trajectory(lat, batch, b0, nb, x, work, energies, accepted, site, hs, nt);
  });
}

template <class T, class Site>
void langevin(const Lattice& lat, int64_t batch, T* x, T* work, const Site& site, T eps, int n_steps,
              uint32_t seed, uint32_t chain_offset, uint64_t step, int nthreads) {
  checks::langevin_call(lat, batch, x, work, site, eps, n_steps, chain_offset);
  check_threads(nthreads);
  const int64_t V = lat.volume;
  const T sqrt_2eps = std::sqrt(T(2) * eps);
  // per step: the force, the noise, the update
  over_chains(batch, V, 3 * int64_t(std::max(n_steps, 1)), nthreads, [&](int64_t b0, int64_t nb, int nt) {
    T* __restrict f = work + b0 * V;
    T* __restrict eta = work + (batch + b0) * V;
    T* __restrict xb = x + b0 * V;
    const Site site_ = site;
    for (int s = 0; s < n_steps; ++s) {
      energy(site, lat, nb, xb, static_cast<double*>(nullptr), f, nt);
      philox_normal(eta, nb, V, seed, chain_offset + uint32_t(b0), step + uint64_t(s), kLangevin, nt);
      for_chunks(nb * V, nt, [&](int64_t i0, int64_t i1) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i)
          xb[i] = canonical(site_, langevin_update(xb[i], f[i], eps, sqrt_2eps, eta[i]));
      });
    }
  });
}

#define LFT_INSTANTIATE(T, Site)                                                                        \
  template void hmc<T, Site<T>>(const Lattice&, int64_t, T*, T*, double*, uint32_t*, const Site<T>&,      \
                                const HmcSettings<T>&, int);                                            \
  template void langevin<T, Site<T>>(const Lattice&, int64_t, T*, T*, const Site<T>&, T, int, uint32_t, \
                                     uint32_t, uint64_t, int);
LFT_INSTANTIATE(float, Phi4Site)
LFT_INSTANTIATE(double, Phi4Site)
LFT_INSTANTIATE(float, XYSite)
LFT_INSTANTIATE(double, XYSite)
LFT_INSTANTIATE(float, OscillatorSite)
LFT_INSTANTIATE(double, OscillatorSite)
#undef LFT_INSTANTIATE

}  // namespace cpu
}  // namespace lftaccel
