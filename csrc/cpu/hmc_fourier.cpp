// CPU HMC for the oscillator path in Matsubara (Fourier) coordinates.
//
// The coordinates are the real Fourier coefficients c of the path, x = B c with
// B the orthonormal basis of fourier.hpp (passed in by the caller, row n holding
// slice n). The kinetic action is diagonal in c; the potential is evaluated on
// the path. Each mode j has its own HMC mass 1 / inv_mass[j] (Fourier
// acceleration: masses matched to the modes' stiffness make every mode move at a
// similar rate; all ones is plain HMC in rotated coordinates).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "lftaccel/cpu.hpp"
#include "lftaccel/fourier.hpp"
#include "parallel.hpp"

namespace lftaccel {
namespace cpu {
namespace {

// Action (in double) and dS/dc of one path: x = B c, the per-mode kinetic and
// per-slice potential functions of oscillator.hpp, then dS/dc = kinetic + B^T (a V'(x)).
template <class T>
double fourier_force(int64_t N, const T* __restrict B, const T* __restrict eig, const T* __restrict c,
                     T* __restrict x, T* __restrict gx, T* __restrict f, const OscillatorSite<T>& site) {
  const OscillatorSite<T> q = site;
  for (int64_t n = 0; n < N; ++n) {
    const T* __restrict row = B + n * N;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < N; ++j) acc += row[j] * c[j];
    x[n] = acc;
  }
  double action = 0;
#pragma omp simd reduction(+ : action)
  for (int64_t j = 0; j < N; ++j) {
    f[j] = q.mode_grad(c[j], eig[j]);
    gx[j] = q.a * q.potential_grad(x[j]);
    action += double(q.mode_action(c[j], eig[j])) + double(q.a * q.potential(x[j]));
  }
  for (int64_t n = 0; n < N; ++n) {
    const T* __restrict row = B + n * N;
    const T g = gx[n];
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) f[j] += g * row[j];
  }
  return action;
}

}  // namespace

template <class T>
void hmc_fourier(int64_t n_slices, int64_t batch, T* coeffs, T* work, double* energies, uint32_t* accepted,
                 const OscillatorSite<T>& site, const T* basis, const T* inv_mass, const HmcSettings<T>& hs,
                 int nthreads) {
  checks::hmc_fourier_call(n_slices, batch, coeffs, work, energies, accepted, site, basis, inv_mass, hs);
  check_threads(nthreads);
  if (batch > 0)
    for (int64_t j = 0; j < n_slices; ++j) checks::positive(double(inv_mass[j]), "inv_mass[j]");
  const int64_t N = n_slices;
  std::vector<T> eig(N);
  for (int64_t j = 0; j < N; ++j) eig[j] = matsubara_eigenvalue<T>(j, N);
  // A Fourier trajectory costs O(N^2) per step: parallel over chains even when few.
  parallel_items(batch, batch * N * N, nthreads, [&](int64_t b) {
    T* __restrict p = work + b * N;
    T* __restrict ct = work + (batch + b) * N;
    T* __restrict f = work + (2 * batch + b) * N;
    T* __restrict x = work + (3 * batch + b) * N;
    T* __restrict gx = work + (4 * batch + b) * N;
    T* __restrict c = coeffs + b * N;
    const uint32_t chain = hs.chain_offset + uint32_t(b);
    if (hs.refresh) {
      philox_normal(p, 1, N, hs.seed, chain, hs.step, kMomentum, 1);
      for (int64_t j = 0; j < N; ++j) p[j] /= std::sqrt(inv_mass[j]);  // variance 1 / inv_mass
    }
    auto kinetic = [&] {
      double k = 0;
      for (int64_t j = 0; j < N; ++j) k += 0.5 * double(inv_mass[j]) * double(p[j]) * double(p[j]);
      return k;
    };
    energies[batch + b] = kinetic();
    energies[b] = fourier_force(N, basis, eig.data(), c, x, gx, f, site);
    const T eps = hs.eps, half = hs.eps / T(2);
    for (int64_t j = 0; j < N; ++j) {
      p[j] = leapfrog_kick(p[j], f[j], half);
      ct[j] = leapfrog_drift(c[j], p[j], eps * inv_mass[j]);
    }
    double action = 0;
    for (int s = 1; s <= hs.n_steps; ++s) {
      action = fourier_force(N, basis, eig.data(), ct, x, gx, f, site);
      if (s == hs.n_steps) {
        for (int64_t j = 0; j < N; ++j) p[j] = leapfrog_kick(p[j], f[j], half);
      } else {
        for (int64_t j = 0; j < N; ++j) {
          p[j] = leapfrog_kick(p[j], f[j], eps);
          ct[j] = leapfrog_drift(ct[j], p[j], eps * inv_mass[j]);
        }
      }
    }
    energies[2 * batch + b] = action;
    energies[3 * batch + b] = kinetic();
    const double dH = energies[2 * batch + b] + energies[3 * batch + b] - energies[b] - energies[batch + b];
    const bool acc = hs.accept_reject ? metropolis_accept(dH, accept_uniform(hs.seed, chain, hs.step))
                                      : std::isfinite(dH);
    accepted[b] = acc;
    if (acc) std::copy(ct, ct + N, c);
  }, /*balance=*/true);
}

template void hmc_fourier<float>(int64_t, int64_t, float*, float*, double*, uint32_t*,
                                 const OscillatorSite<float>&, const float*, const float*,
                                 const HmcSettings<float>&, int);
template void hmc_fourier<double>(int64_t, int64_t, double*, double*, double*, uint32_t*,
                                  const OscillatorSite<double>&, const double*, const double*,
                                  const HmcSettings<double>&, int);

}  // namespace cpu
}  // namespace lftaccel
