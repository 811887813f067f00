// phi^4 theory in the hopping form, per site:
//   s(x)      = -2 kappa phi(x) sum_mu phi(x+mu) + (1 - 2 lambda) phi(x)^2 + lambda phi(x)^4
//   dS/dphi(x) = -2 kappa sum_mu [phi(x+mu) + phi(x-mu)] + 2 (1 - 2 lambda) phi(x) + 4 lambda phi(x)^3
// S = sum_x s(x). Forward and backward neighbours are summed separately, so
// extent 2 (where x+mu == x-mu) and extent 1 need no special case.
#pragma once

#include "config.hpp"

namespace lftaccel {

template <class T>
struct Phi4Site {
  T kappa;
  T lam;

  // Action density and force from the forward and backward neighbour sums.
  LFT_HOST_DEVICE T density(T phi, T hop_fwd) const {
    return phi * (-T(2) * kappa * hop_fwd + (T(1) - T(2) * lam) * phi + lam * phi * phi * phi);
  }
  LFT_HOST_DEVICE T force(T phi, T hop_fwd, T hop_bwd) const {
    return -T(2) * kappa * (hop_fwd + hop_bwd) + T(2) * (T(1) - T(2) * lam) * phi +
           T(4) * lam * phi * phi * phi;
  }

  template <int D>
  LFT_HOST_DEVICE static T sum(const T* v) {
    T s = 0;
LFT_UNROLL
    for (int mu = 0; mu < D; ++mu) s += v[mu];
    return s;
  }

  template <int D>
  LFT_HOST_DEVICE T action(T phi, const T* fwd) const {
    return density(phi, sum<D>(fwd));
  }
  template <int D>
  LFT_HOST_DEVICE T grad(T phi, const T* fwd, const T* bwd) const {
    return force(phi, sum<D>(fwd), sum<D>(bwd));
  }
  // Both at once, sharing the forward sum (the stencils call this when both are wanted).
  template <int D>
  LFT_HOST_DEVICE T action_grad(T phi, const T* fwd, const T* bwd, T& g) const {
    const T hf = sum<D>(fwd);
    g = force(phi, hf, sum<D>(bwd));
    return density(phi, hf);
  }
};

}  // namespace lftaccel
