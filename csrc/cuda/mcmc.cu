// CUDA HMC trajectories, Langevin steps, checkerboard Metropolis sweeps and the
// reverse-SDE step. One call is one trajectory (or k steps, or k sweeps): a
// short sequence of launches on the caller's stream, each one thread per site,
// calling the per-site physics of the headers and the updates of mcmc.hpp.
// Energies are summed per block in double and added with one atomic per block.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "lftaccel/cuda.hpp"
#include "lftaccel/fourier.hpp"
#include "lftaccel/mcmc.hpp"

namespace lftaccel {
namespace cuda {
namespace {

// Grid-stride loops over (chain, site). The site loop runs to n rounded up to
// whole blocks, so every thread of a block reaches block_add's __syncthreads in
// every iteration; bodies test s < n themselves.
__host__ __device__ inline int64_t padded(int64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }
#define LFT_FOR_CHAINS_SITES(batch, n)                                                           \
  for (int64_t b = blockIdx.y; b < (batch); b += gridDim.y)                                      \
    for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < padded(n);              \
         s += int64_t(gridDim.x) * blockDim.x)

// Force (and action density) at site s of configuration xb.
template <int D, class I, class Site, class T>
__device__ T site_force(const Site& site, const Lattice& lat, const T* xb, I s, bool want_action, double& action) {
  I fi[D], bi[D];
  lat.neighbours<D>(s, fi, bi);
  T f[D], bk[D];
#pragma unroll
  for (int mu = 0; mu < D; ++mu) {
    f[mu] = xb[fi[mu]];
    bk[mu] = xb[bi[mu]];
  }
  T g;
  if (want_action)
    action += site_action_grad<D, true, true>(site, xb[s], f, bk, g);
  else
    site_action_grad<D, false, true>(site, xb[s], f, bk, g);
  return g;
}

// p -= kick * F(x); the action of x is added to action_out[b] when given.
// With force_out, F is stored instead of kicked (Langevin).
template <int D, class I, class Site, class T>
__global__ void force_kernel(Site site, Lattice lat, int64_t batch, const T* __restrict__ x, T* __restrict__ p,
                             T kick, double* action_out, T* __restrict__ force_out) {
  const int64_t V = lat.volume;
  LFT_FOR_CHAINS_SITES(batch, V) {
    double acc = 0;
    if (s < V) {
      const T f = site_force<D, I>(site, lat, x + b * V, I(s), action_out != nullptr, acc);
      if (force_out) force_out[b * V + s] = f;
      else p[b * V + s] = leapfrog_kick(p[b * V + s], f, kick);
    }
    if (action_out) block_add(acc, action_out + b);
  }
}

template <class T>
__global__ void momentum_kernel(T* __restrict__ p, int64_t batch, int64_t n, const T* __restrict__ inv_mass,
                                uint32_t seed, uint32_t chain_offset, uint64_t step, bool refresh,
                                double* kinetic) {
  LFT_FOR_CHAINS_SITES(batch, n) {
    double k = 0;
    if (s < n) {
      const T im = inv_mass ? inv_mass[s] : T(1);
      if (refresh)
        p[b * n + s] = philox_normal_at<T>(seed, chain_offset + uint32_t(b), uint32_t(s), step, kMomentum) / sqrt(im);
      const double v = p[b * n + s];
      k = 0.5 * double(im) * v * v;
    }
    block_add(k, kinetic + b);
  }
}

template <class T>
__global__ void kinetic_kernel(const T* __restrict__ p, int64_t batch, int64_t n, const T* __restrict__ inv_mass,
                               double* kinetic) {
  LFT_FOR_CHAINS_SITES(batch, n) {
    double k = 0;
    if (s < n) {
      const double v = p[b * n + s];
      k = 0.5 * double(inv_mass ? inv_mass[s] : T(1)) * v * v;
    }
    block_add(k, kinetic + b);
  }
}

// xt = src + eps inv_mass p.
template <class T>
__global__ void drift_kernel(T* xt, const T* src, const T* __restrict__ p, int64_t batch, int64_t n,
                             const T* __restrict__ inv_mass, T eps) {
  LFT_FOR_CHAINS_SITES(batch, n) {
    if (s < n) xt[b * n + s] = leapfrog_drift(src[b * n + s], p[b * n + s], eps * (inv_mass ? inv_mass[s] : T(1)));
  }
}

__global__ void accept_kernel(int64_t batch, double* energies, uint32_t* accepted, uint32_t seed,
                              uint32_t chain_offset, uint64_t step, bool accept_reject) {
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch; b += int64_t(gridDim.x) * blockDim.x) {
    const double dH = energies[2 * batch + b] + energies[3 * batch + b] - energies[b] - energies[batch + b];
    accepted[b] = accept_reject ? metropolis_accept(dH, accept_uniform(seed, chain_offset + uint32_t(b), step))
                                : isfinite(dH);
  }
}

template <class Site, class T>
__global__ void take_accepted_kernel(Site site, T* __restrict__ x, const T* __restrict__ xt, int64_t batch,
                                     int64_t n, const uint32_t* accepted) {
  LFT_FOR_CHAINS_SITES(batch, n) {
    if (s < n && accepted[b]) x[b * n + s] = canonical(site, xt[b * n + s]);
  }
}

// The elementwise noise kernels give each thread a pair of sites: sites 2q and 2q + 1 of a
// chain draw z0 and z1 of the same Philox block (philox_normal_at), so one block and one
// Box-Muller serve both (one per site made these kernels compute-bound on an H200, and the
// fused reverse-SDE step slower than torch's randn and two adds). Pairs are per chain.
#define LFT_FOR_CHAINS_PAIRS(batch, n)                                                           \
  for (int64_t b = blockIdx.y; b < (batch); b += gridDim.y)                                      \
    for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < ((n) + 1) / 2;          \
         q += int64_t(gridDim.x) * blockDim.x)

template <class T>
__device__ inline void normal_pair_at(uint32_t seed, uint32_t chain, int64_t q, uint64_t step, uint32_t purpose,
                                      T z[2]) {
  PhiloxVariates<T>::normal_pair(philox_block(seed, chain, uint32_t(q), step, purpose), z[0], z[1]);
}

template <class Site, class T>
__global__ void langevin_kernel(Site site, T* __restrict__ x, const T* __restrict__ f, int64_t batch, int64_t n,
                                T eps, T sqrt_2eps, uint32_t seed, uint32_t chain_offset, uint64_t step) {
  LFT_FOR_CHAINS_PAIRS(batch, n) {
    T eta[2];
    normal_pair_at(seed, chain_offset + uint32_t(b), q, step, kLangevin, eta);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t i = b * n + 2 * q + h;
      if (2 * q + h < n) x[i] = canonical(site, langevin_update(x[i], f[i], eps, sqrt_2eps, eta[h]));
    }
  }
}

template <int D, class I, class Site, class T>
__global__ void metropolis_kernel(Site site, Lattice lat, int64_t batch, T* x, T delta, int parity, uint32_t seed,
                                  uint32_t chain_offset, uint64_t counter, double* accepted) {
  const int64_t V = lat.volume;
  LFT_FOR_CHAINS_SITES(batch, V) {
    double acc = 0;
    const I si = I(s);
    if (s < V && site_parity(lat, si) == parity) {
      T* xb = x + b * V;
      I fi[D], bi[D];
      lat.neighbours<D>(si, fi, bi);
      T nb[2 * D];
#pragma unroll
      for (int mu = 0; mu < D; ++mu) {
        nb[2 * mu] = xb[fi[mu]];
        nb[2 * mu + 1] = xb[bi[mu]];
      }
      acc = metropolis_site<2 * D>(site, xb[si], nb, delta,
                                   philox_block(seed, chain_offset + uint32_t(b), uint32_t(s), counter, kMetropolis));
    }
    block_add(acc, accepted + b);
  }
}

template <class T>
__global__ void sde_kernel(T* __restrict__ x, const T* __restrict__ score, int64_t batch, int64_t n, T drift, T sc,
                           T nc, uint32_t seed, uint32_t chain_offset, uint64_t step) {
  LFT_FOR_CHAINS_PAIRS(batch, n) {
    T z[2] = {T(0), T(0)};
    if (nc != T(0)) normal_pair_at(seed, chain_offset + uint32_t(b), q, step, kSde, z);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t i = b * n + 2 * q + h;
      if (2 * q + h < n) x[i] = sde_update(x[i], score[i], drift, sc, nc, z[h]);
    }
  }
}

// Calls f(rank, index type) for this lattice: 32-bit site indices when they fit.
template <class F>
void with_rank(const Lattice& lat, const F& f) {
  auto go = [&](auto dim) {
    if (lat.int32_indices()) f(dim, int{});
    else f(dim, int64_t{});
  };
  switch (lat.ndim) {
    case 1: go(std::integral_constant<int, 1>{}); break;
    case 2: go(std::integral_constant<int, 2>{}); break;
    case 3: go(std::integral_constant<int, 3>{}); break;
    case 4: go(std::integral_constant<int, 4>{}); break;
  }
}

template <class Site, class T>
void force_launch(const Site& site, const Lattice& lat, int64_t batch, const T* x, T* p, T kick, double* action,
                  T* force_out, cudaStream_t st) {
  with_rank(lat, [&](auto dim, auto idx) {
    force_kernel<decltype(dim)::value, decltype(idx)><<<grid_for(batch, lat.volume), kBlock, 0, st>>>(
        site, lat, batch, x, p, kick, action, force_out);
  });
  check(cudaGetLastError(), "force kernel launch");
}

}  // namespace

template <class T, class Site>
void hmc(const Lattice& lat, int64_t batch, T* x, T* work, double* energies, uint32_t* accepted, const Site& site,
         const HmcSettings<T>& hs, void* stream) {
  checks::hmc_call(lat, batch, x, work, energies, accepted, site, hs);
  if (batch == 0) return;
  const cudaStream_t st = as_stream(stream);
  const int64_t V = lat.volume;
  T* p = work;
  T* xt = work + batch * V;
  const dim3 g = grid_for(batch, V);
  check(cudaMemsetAsync(energies, 0, sizeof(double) * 4 * batch, st), "cudaMemsetAsync");
  momentum_kernel<<<g, kBlock, 0, st>>>(p, batch, V, static_cast<const T*>(nullptr), hs.seed, hs.chain_offset,
                                        hs.step, hs.refresh, energies + batch);
  const T half = hs.eps / T(2);
  force_launch(site, lat, batch, x, p, half, energies, static_cast<T*>(nullptr), st);
  drift_kernel<<<g, kBlock, 0, st>>>(xt, x, p, batch, V, static_cast<const T*>(nullptr), hs.eps);
  for (int s = 1; s <= hs.n_steps; ++s) {
    const bool last = s == hs.n_steps;
    force_launch(site, lat, batch, xt, p, last ? half : hs.eps, last ? energies + 2 * batch : nullptr,
                 static_cast<T*>(nullptr), st);
    if (!last) drift_kernel<<<g, kBlock, 0, st>>>(xt, xt, p, batch, V, static_cast<const T*>(nullptr), hs.eps);
  }
  kinetic_kernel<<<g, kBlock, 0, st>>>(p, batch, V, static_cast<const T*>(nullptr), energies + 3 * batch);
  accept_kernel<<<unsigned((batch + kBlock - 1) / kBlock), kBlock, 0, st>>>(batch, energies, accepted, hs.seed,
                                                                          hs.chain_offset, hs.step, hs.accept_reject);
  take_accepted_kernel<<<g, kBlock, 0, st>>>(site, x, xt, batch, V, accepted);
  check(cudaGetLastError(), "hmc kernel launch");
}

namespace {
// x = B c per (chain, slice), and the potential part of the action.
template <class T>
__global__ void fourier_path_kernel(OscillatorSite<T> site, const T* __restrict__ B, const T* __restrict__ c,
                                    T* __restrict__ x, int64_t batch, int64_t n, double* action) {
  LFT_FOR_CHAINS_SITES(batch, n) {
    double acc = 0;
    if (s < n) {
      T v = 0;
      for (int64_t j = 0; j < n; ++j) v += B[s * n + j] * c[b * n + j];
      x[b * n + s] = v;
      acc = double(site.a * site.potential(v));
    }
    if (action) block_add(acc, action + b);
  }
}

// p_j -= kick (kinetic_j + sum_n B[n, j] a V'(x_n)); mode actions added to action.
template <class T>
__global__ void fourier_kick_kernel(OscillatorSite<T> site, const T* __restrict__ B, const T* __restrict__ c,
                                    const T* __restrict__ x, T* __restrict__ p, int64_t batch, int64_t n, T kick,
                                    double* action) {
  LFT_FOR_CHAINS_SITES(batch, n) {
    double acc = 0;
    if (s < n) {
      const T l = matsubara_eigenvalue<T>(s, n), cj = c[b * n + s];
      T f = site.mode_grad(cj, l);
      for (int64_t k = 0; k < n; ++k) f += B[k * n + s] * site.a * site.potential_grad(x[b * n + k]);
      p[b * n + s] = leapfrog_kick(p[b * n + s], f, kick);
      acc = double(site.mode_action(cj, l));
    }
    if (action) block_add(acc, action + b);
  }
}
}  // namespace

template <class T>
void hmc_fourier(int64_t n_slices, int64_t batch, T* coeffs, T* work, double* energies, uint32_t* accepted,
                 const OscillatorSite<T>& site, const T* basis, const T* inv_mass, const HmcSettings<T>& hs,
                 void* stream) {
  checks::hmc_fourier_call(n_slices, batch, coeffs, work, energies, accepted, site, basis, inv_mass, hs);
  if (batch == 0) return;
  const cudaStream_t st = as_stream(stream);
  const int64_t N = n_slices;
  T* p = work;
  T* ct = work + batch * N;
  T* x = work + 3 * batch * N;
  const dim3 g = grid_for(batch, N);
  auto force = [&](const T* c, T kick, double* action) {
    fourier_path_kernel<<<g, kBlock, 0, st>>>(site, basis, c, x, batch, N, action);
    fourier_kick_kernel<<<g, kBlock, 0, st>>>(site, basis, c, x, p, batch, N, kick, action);
  };
  check(cudaMemsetAsync(energies, 0, sizeof(double) * 4 * batch, st), "cudaMemsetAsync");
  momentum_kernel<<<g, kBlock, 0, st>>>(p, batch, N, inv_mass, hs.seed, hs.chain_offset, hs.step, hs.refresh,
                                        energies + batch);
  const T half = hs.eps / T(2);
  force(coeffs, half, energies);
  drift_kernel<<<g, kBlock, 0, st>>>(ct, coeffs, p, batch, N, inv_mass, hs.eps);
  for (int s = 1; s <= hs.n_steps; ++s) {
    const bool last = s == hs.n_steps;
    force(ct, last ? half : hs.eps, last ? energies + 2 * batch : nullptr);
    if (!last) drift_kernel<<<g, kBlock, 0, st>>>(ct, ct, p, batch, N, inv_mass, hs.eps);
  }
  kinetic_kernel<<<g, kBlock, 0, st>>>(p, batch, N, inv_mass, energies + 3 * batch);
  accept_kernel<<<unsigned((batch + kBlock - 1) / kBlock), kBlock, 0, st>>>(batch, energies, accepted, hs.seed,
                                                                          hs.chain_offset, hs.step, hs.accept_reject);
  take_accepted_kernel<<<g, kBlock, 0, st>>>(site, coeffs, ct, batch, N, accepted);
  check(cudaGetLastError(), "hmc_fourier kernel launch");
}

template <class T, class Site>
void langevin(const Lattice& lat, int64_t batch, T* x, T* work, const Site& site, T eps, int n_steps, uint32_t seed,
              uint32_t chain_offset, uint64_t step, void* stream) {
  checks::langevin_call(lat, batch, x, work, site, eps, n_steps, chain_offset);
  if (batch == 0) return;
  const cudaStream_t st = as_stream(stream);
  const T sqrt_2eps = sqrt(T(2) * eps);
  for (int s = 0; s < n_steps; ++s) {
    force_launch(site, lat, batch, x, static_cast<T*>(nullptr), T(0), nullptr, work, st);
    langevin_kernel<<<grid_for(batch, (lat.volume + 1) / 2), kBlock, 0, st>>>(
        site, x, work, batch, lat.volume, eps, sqrt_2eps, seed, chain_offset, step + s);
  }
  check(cudaGetLastError(), "langevin kernel launch");
}

template <class T, class Site>
void metropolis(const Lattice& lat, int64_t batch, T* x, double* accepted, const Site& site, T delta, int n_sweeps,
                uint32_t seed, uint32_t chain_offset, uint64_t step, void* stream) {
  checks::metropolis_call(lat, batch, x, accepted, site, delta, n_sweeps, chain_offset);
  if (batch == 0) return;
  const cudaStream_t st = as_stream(stream);
  check(cudaMemsetAsync(accepted, 0, sizeof(double) * batch, st), "cudaMemsetAsync");
  for (int s = 0; s < n_sweeps; ++s)
    for (int parity = 0; parity < 2; ++parity)
      with_rank(lat, [&](auto dim, auto idx) {
        metropolis_kernel<decltype(dim)::value, decltype(idx)><<<grid_for(batch, lat.volume), kBlock, 0, st>>>(
            site, lat, batch, x, delta, parity, seed, chain_offset, 2 * (step + uint64_t(s)) + uint64_t(parity),
            accepted);
      });
  check(cudaGetLastError(), "metropolis kernel launch");
}

template <class T>
void sde_step(int64_t batch, int64_t n_sites, T* x, const T* score, const SdeCoefficients& coef, uint32_t seed,
              uint32_t chain_offset, uint64_t step, void* stream) {
  checks::sde_call(batch, n_sites, x, score, coef, chain_offset);
  if (batch == 0) return;
  sde_kernel<<<grid_for(batch, (n_sites + 1) / 2), kBlock, 0, as_stream(stream)>>>(
      x, score, batch, n_sites, T(coef.drift_x), T(coef.score), T(coef.noise), seed, chain_offset, step);
  check(cudaGetLastError(), "sde kernel launch");
}

#define LFT_INSTANTIATE(T, Site)                                                                                \
  template void hmc<T, Site<T>>(const Lattice&, int64_t, T*, T*, double*, uint32_t*, const Site<T>&,              \
                                const HmcSettings<T>&, void*);                                                  \
  template void langevin<T, Site<T>>(const Lattice&, int64_t, T*, T*, const Site<T>&, T, int, uint32_t, uint32_t, \
                                     uint64_t, void*);
LFT_INSTANTIATE(float, Phi4Site)
LFT_INSTANTIATE(double, Phi4Site)
LFT_INSTANTIATE(float, XYSite)
LFT_INSTANTIATE(double, XYSite)
LFT_INSTANTIATE(float, OscillatorSite)
LFT_INSTANTIATE(double, OscillatorSite)
#undef LFT_INSTANTIATE
#define LFT_INSTANTIATE(T, Site)                                                                                \
  template void metropolis<T, Site<T>>(const Lattice&, int64_t, T*, double*, const Site<T>&, T, int, uint32_t,    \
                                       uint32_t, uint64_t, void*);
LFT_INSTANTIATE(float, Phi4Site)
LFT_INSTANTIATE(double, Phi4Site)
LFT_INSTANTIATE(float, XYSite)
LFT_INSTANTIATE(double, XYSite)
#undef LFT_INSTANTIATE
template void hmc_fourier<float>(int64_t, int64_t, float*, float*, double*, uint32_t*, const OscillatorSite<float>&,
                                 const float*, const float*, const HmcSettings<float>&, void*);
template void hmc_fourier<double>(int64_t, int64_t, double*, double*, double*, uint32_t*,
                                  const OscillatorSite<double>&, const double*, const double*,
                                  const HmcSettings<double>&, void*);
template void sde_step<float>(int64_t, int64_t, float*, const float*, const SdeCoefficients&, uint32_t, uint32_t,
                              uint64_t, void*);
template void sde_step<double>(int64_t, int64_t, double*, const double*, const SdeCoefficients&, uint32_t, uint32_t,
                               uint64_t, void*);

}  // namespace cuda
}  // namespace lftaccel
