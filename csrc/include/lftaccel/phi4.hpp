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

  // The same parameters as U (the CPU stencils' SIMD vectors: every lane holds them).
  template <class U>
  Phi4Site<U> rebind() const {
    return {U(kappa), U(lam)};
  }

  // Action density and force from the forward and backward neighbour sums. The local terms
  // are factored as phi (a + b phi^2): two multiplies and two fused multiply-adds per site
  // for the force.
  LFT_HOST_DEVICE T density(T phi, T hop_fwd) const {
    return phi * (-T(2) * kappa * hop_fwd + phi * ((T(1) - T(2) * lam) + lam * (phi * phi)));
  }
  LFT_HOST_DEVICE T force(T phi, T hop_fwd, T hop_bwd) const {
    return -T(2) * kappa * (hop_fwd + hop_bwd) + phi * (T(2) * (T(1) - T(2) * lam) + T(4) * lam * (phi * phi));
  }

  template <int D>
  LFT_HOST_DEVICE static T sum(const T* v) {
    T s = v[0];  // (not 0 + v[0]: without fast-math that addition is not optimised away)
LFT_UNROLL
    for (int mu = 1; mu < D; ++mu) s += v[mu];
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

  // Both at once, the action as two sums beside the force g = dS/dphi:
  //   S = sum_x [ phi g / 2 - lambda phi^4 ],
  // since sum_x phi(x) phi(x - mu) = sum_x phi(x) phi(x + mu) on the periodic lattice (phi g
  // counts each link twice; its local terms hold 2 lambda phi^4). Given g, each sum costs one
  // fused multiply-add per site against the density's three multiplies or FMAs, which is what
  // bounds the CPU's vector rows: the fused action + gradient at 64 x 64^2 float64 runs at
  // 0.26 instead of 0.31 ns per site on one core (AMD EPYC, AVX-512). The sums are u = phi g
  // and v = phi^4; action_from_parts puts them together. phi^4 overflows before lambda phi^4
  // where lambda is small: a caller whose sum is not finite sums the density instead.
  template <int D>
  LFT_HOST_DEVICE void action_parts_grad(T phi, const T* fwd, const T* bwd, T& g, T& u, T& v) const {
    g = force(phi, sum<D>(fwd), sum<D>(bwd));
    const T phi2 = phi * phi;
    u = phi * g;
    v = phi2 * phi2;
  }
  LFT_HOST_DEVICE double action_from_parts(double u, double v) const { return 0.5 * u - double(lam) * v; }
};

}  // namespace lftaccel
