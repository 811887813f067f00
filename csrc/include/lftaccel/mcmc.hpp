// Monte Carlo building blocks shared by the CPU loops and the CUDA kernels:
// the Philox stream purposes, the per-site leapfrog, Langevin and reverse-SDE
// updates, the accept/reject rule, and the local changes of action that a
// Metropolis update needs.
//
// Random numbers: every variate is the Philox block of (seed, chain, site,
// step, purpose) (see philox.hpp), so a chain's random numbers depend only on its
// seed and index, never on threads, launch shape or device. On the CPU a chain's whole
// history is bitwise independent of the thread count too. On a GPU a chain's energies are
// per-block sums combined by atomic adds in an order that varies (cuda.hpp), so dH can
// differ in its last bits from run to run, and an accept decision that close to its
// threshold (odds of order 1e-16 |S| per trajectory) can go the other way; from there the
// chain's history differs, as it does between CPU and GPU, whose roundings differ.
//   HMC trajectory t:  momenta   (site, t, kMomentum)   accept  (site 0, t, kAccept)
//                      step-size jitter of the sampler (lftaccel.mcmc.HMC, drawn in Python):
//                      (site 0, t, kJitter) of chain chain_offset
//   Langevin step t:   noise     (site, t, kLangevin)
//   Metropolis sweep t, parity q:  (site, 2t + q, kMetropolis), words: proposal, then accept
//   reverse-SDE step t: noise    (site, t, kSde)
// Purposes drawn in Python only are listed here too, so that no two streams share one:
// the diffusion prior (6) and corrector noise (8) (models/diffusion/sde.py), the
// stochastic-quantization Langevin noise (9) (models/diffusion/quantization.py).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "config.hpp"
#include "lattice.hpp"
#include "philox.hpp"
#include "phi4.hpp"
#include "xy.hpp"

namespace lftaccel {

enum Purpose : uint32_t {
  kMomentum = 1,
  kAccept = 2,
  kLangevin = 3,
  kMetropolis = 4,
  kSde = 5,
  kDiffusionPrior = 6,
  kJitter = 7,
  kDiffusionCorrector = 8,
  kQuantizationLangevin = 9,
};

// Settings of one HMC trajectory for a batch of chains. Chain b draws from
// stream chain_offset + b; `step` is the trajectory index.
template <class T>
struct HmcSettings {
  T eps;              // leapfrog step size
  int n_steps;        // leapfrog steps per trajectory
  uint32_t seed;
  uint32_t chain_offset;
  uint64_t step;
  bool refresh;       // false: take the momenta from the work buffer (tests: reversibility)
  bool accept_reject; // false: always accept (tests: dH of a bare trajectory)
};

// Metropolis rule with a guard: a non-finite dH (a divergent trajectory) is
// always rejected. log(u) < -dH is exp(-dH) > u without overflow. Given log(u), and
// branch-free (fabs of NaN or inf fails the first test), so that the CPU sweep's loop
// over sites vectorises it with its own log.
LFT_HOST_DEVICE bool metropolis_accept_log(double dH, double log_u) {
  using std::fabs;
  return (fabs(dH) <= DBL_MAX) & ((dH <= 0) | (log_u < -dH));
}
LFT_HOST_DEVICE bool metropolis_accept(double dH, double u) {
  using std::log;
  return metropolis_accept_log(dH, log(u));
}

// The accept uniform of trajectory `step` of `chain`, in double whatever the field type.
LFT_HOST_DEVICE double accept_uniform(uint32_t seed, uint32_t chain, uint64_t step) {
  const Philox4x32 r = philox_block(seed, chain, 0u, step, kAccept);
  return uniform_double(r.v[0], r.v[1]);
}

// The canonical representative of a field value after an accepted update:
// angles are wrapped into [-pi, pi) so long XY runs keep full precision.
template <class Site, class T>
LFT_HOST_DEVICE T canonical(const Site&, T v) {
  return v;
}
template <class T>
LFT_HOST_DEVICE T canonical(const XYSite<T>&, T v) {
  using std::floor;
  const T two_pi = T(6.28318530717958647692);
  return v - two_pi * floor((v + T(3.14159265358979323846)) / two_pi);
}

// The leapfrog's kick p <- p - kick dS/dx and drift x <- x + step p (step = eps, times the
// inverse mass of a Fourier mode), for every HMC loop on either device.
template <class T>
LFT_HOST_DEVICE T leapfrog_kick(T p, T force, T kick) {
  return p - kick * force;
}
template <class T>
LFT_HOST_DEVICE T leapfrog_drift(T x, T p, T step) {
  return x + step * p;
}

// Langevin step of stochastic quantization: x <- x - eps dS/dx + sqrt(2 eps) eta.
template <class T>
LFT_HOST_DEVICE T langevin_update(T x, T force, T eps, T sqrt_2eps, T eta) {
  return x - eps * force + sqrt_2eps * eta;
}

// Reverse-SDE Euler-Maruyama step from t to t - dt (dt > 0), integrating
//   dx = [f(x, t) - g(t)^2 score] dt + g(t) dW   backwards in time:
//   x <- x - f(x, t) dt + g(t)^2 score dt + g(t) sqrt(dt) z.
// VE (variance exploding): f = 0, g(t) = sigma^t.
// VP (variance preserving): f = -beta(t) x / 2, g = sqrt(beta(t)),
//   beta(t) = beta_min + t (beta_max - beta_min).
struct SdeCoefficients {
  double drift_x;   // coefficient of x in the update (VP: beta dt / 2)
  double score;     // coefficient of the score, g^2 dt
  double noise;     // g sqrt(dt), zero for a noiseless (final) step
};

LFT_HOST_DEVICE SdeCoefficients sde_ve(double sigma, double t, double dt, bool noise) {
  using std::pow;
  using std::sqrt;
  const double g = pow(sigma, t);
  return SdeCoefficients{0.0, g * g * dt, noise ? g * sqrt(dt) : 0.0};
}
LFT_HOST_DEVICE SdeCoefficients sde_vp(double beta_min, double beta_max, double t, double dt, bool noise) {
  using std::sqrt;
  const double beta = beta_min + t * (beta_max - beta_min);
  return SdeCoefficients{0.5 * beta * dt, beta * dt, noise ? sqrt(beta * dt) : 0.0};
}
template <class T>
LFT_HOST_DEVICE T sde_update(T x, T score, T drift_x, T score_c, T noise_c, T z) {
  return x + drift_x * x + score_c * score + noise_c * z;
}

// Local Metropolis: the part of the action that depends on one site, given the
// sum of its 2d neighbours (phi^4) or their cosines and sines (XY). The change
// of the total action when the site moves from old to new is local(new) - local(old).
template <class T>
LFT_HOST_DEVICE T phi4_local(const Phi4Site<T>& p, T phi, T neighbour_sum) {
  const T phi2 = phi * phi;
  return -T(2) * p.kappa * phi * neighbour_sum + (T(1) - T(2) * p.lam) * phi2 + p.lam * phi2 * phi2;
}
// -beta sum_nn cos(theta - theta_nn) = -beta (cos theta C + sin theta S),
// C, S = sums of the neighbours' cosines and sines; the same from cos theta, sin theta
// (the CPU sweep evaluates those with its vectorised sincos).
template <class T>
LFT_HOST_DEVICE T xy_local_cs(const XYSite<T>& p, T c, T s, T cos_sum, T sin_sum) {
  return -p.beta * (c * cos_sum + s * sin_sum);
}
template <class T>
LFT_HOST_DEVICE T xy_local(const XYSite<T>& p, T theta, T cos_sum, T sin_sum) {
  using std::cos;
  using std::sin;
  return xy_local_cs(p, T(cos(theta)), T(sin(theta)), cos_sum, sin_sum);
}

// The two uniforms of one Metropolis site update: the proposal, then the accept test.
template <class T>
struct MetropolisUniforms;
// From the block's words too: the CPU sweep's vectorised loop holds them in lanes.
template <>
struct MetropolisUniforms<float> {
  LFT_HOST_DEVICE static void get(uint32_t w0, uint32_t w1, uint32_t, uint32_t, float& prop, double& acc) {
    prop = uniform_float(w0);
    acc = uniform_float(w1);
  }
  LFT_HOST_DEVICE static void get(const Philox4x32& r, float& prop, double& acc) {
    get(r.v[0], r.v[1], r.v[2], r.v[3], prop, acc);
  }
};
template <>
struct MetropolisUniforms<double> {
  LFT_HOST_DEVICE static void get(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3, double& prop, double& acc) {
    prop = uniform_double(w0, w1);
    acc = uniform_double(w2, w3);
  }
  LFT_HOST_DEVICE static void get(const Philox4x32& r, double& prop, double& acc) {
    get(r.v[0], r.v[1], r.v[2], r.v[3], prop, acc);
  }
};

// One local Metropolis update of a site holding v, whose N = 2d neighbours hold
// nb[0..N): proposal v + delta (2u - 1), accepted with probability min(1, exp(-dS)),
// both uniforms from the block r. Returns whether it was accepted (v is then the
// new value). The CPU sweep and the CUDA kernel both call these.
template <int N, class T>
LFT_HOST_DEVICE bool metropolis_site(const Phi4Site<T>& p, T& v, const T* nb, T delta, const Philox4x32& r) {
  T u;
  double ua;
  MetropolisUniforms<T>::get(r, u, ua);
  T sum = 0;
  LFT_UNROLL
  for (int k = 0; k < N; ++k) sum += nb[k];
  const T prop = v + delta * (T(2) * u - T(1));
  if (!metropolis_accept(double(phi4_local(p, prop, sum)) - double(phi4_local(p, v, sum)), ua)) return false;
  v = prop;
  return true;
}
template <int N, class T>
LFT_HOST_DEVICE bool metropolis_site(const XYSite<T>& p, T& v, const T* nb, T delta, const Philox4x32& r) {
  using std::cos;
  using std::sin;
  T u;
  double ua;
  MetropolisUniforms<T>::get(r, u, ua);
  T cs = 0, ss = 0;
  LFT_UNROLL
  for (int k = 0; k < N; ++k) {
    cs += cos(nb[k]);
    ss += sin(nb[k]);
  }
  const T prop = v + delta * (T(2) * u - T(1));
  if (!metropolis_accept(double(xy_local(p, prop, cs, ss)) - double(xy_local(p, v, cs, ss)), ua)) return false;
  v = canonical(p, prop);
  return true;
}

// Checkerboard updates need every extent even, so that no two sites of one parity
// are neighbours (host side; throws std::invalid_argument, a ValueError in Python).
inline void check_checkerboard(const Lattice& lat) {
  for (int mu = 0; mu < lat.ndim; ++mu)
    if (lat.extent[mu] % 2)
      throw std::invalid_argument("checkerboard Metropolis needs even lattice extents, got extent " +
                                  std::to_string(lat.extent[mu]) + " in dimension " + std::to_string(mu));
}

// Checkerboard parity of a site: the sum of its coordinates mod 2. Sites of one
// parity have all neighbours of the other parity when every extent is even.
template <class I>
LFT_HOST_DEVICE int site_parity(const Lattice& lat, I site) {
  I rest = site, sum = 0;
  for (int mu = lat.ndim - 1; mu >= 0; --mu) {
    const I q = lat.divide(rest, mu);
    sum += rest - q * I(lat.extent[mu]);
    rest = q;
  }
  return int(sum & 1);
}

}  // namespace lftaccel
