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

  template <int D>
  LFT_HOST_DEVICE T action(T phi, const T* fwd) const {
    T hop = 0;
#pragma unroll
    for (int mu = 0; mu < D; ++mu) hop += fwd[mu];
    const T phi2 = phi * phi;
    return -T(2) * kappa * phi * hop + (T(1) - T(2) * lam) * phi2 + lam * phi2 * phi2;
  }

  template <int D>
  LFT_HOST_DEVICE T grad(T phi, const T* fwd, const T* bwd) const {
    T hop = 0;
#pragma unroll
    for (int mu = 0; mu < D; ++mu) hop += fwd[mu] + bwd[mu];
    return -T(2) * kappa * hop + T(2) * (T(1) - T(2) * lam) * phi + T(4) * lam * phi * phi * phi;
  }
};

}  // namespace lftaccel
