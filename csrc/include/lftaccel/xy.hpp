// XY model, S = -beta sum_x sum_mu cos(theta(x) - theta(x+mu)), angles in radians.
//
// The per-site functions take each angle as its (cos, sin) pair, so a stencil
// evaluates two transcendental functions per site instead of two per link:
//   cos(a - b) = cos a cos b + sin a sin b,   sin(a - b) = sin a cos b - cos a sin b.
//   s(x)       = -beta sum_mu cos(theta(x) - theta(x+mu))
//   dS/dtheta(x) = beta sum_mu [sin(theta(x) - theta(x+mu)) + sin(theta(x) - theta(x-mu))]
#pragma once

#include <cmath>

#include "config.hpp"

namespace lftaccel {

template <class T>
struct XYSite {
  T beta;

  template <int D>
  LFT_HOST_DEVICE T action(T c, T s, const T* fwd_c, const T* fwd_s) const {
    T acc = 0;
LFT_UNROLL
    for (int mu = 0; mu < D; ++mu) acc += c * fwd_c[mu] + s * fwd_s[mu];
    return -beta * acc;
  }

  template <int D>
  LFT_HOST_DEVICE T grad(T c, T s, const T* fwd_c, const T* fwd_s, const T* bwd_c,
                         const T* bwd_s) const {
    T cs = 0, ss = 0;  // sums of neighbour cosines and sines
LFT_UNROLL
    for (int mu = 0; mu < D; ++mu) {
      cs += fwd_c[mu] + bwd_c[mu];
      ss += fwd_s[mu] + bwd_s[mu];
    }
    return beta * (s * cs - c * ss);
  }
};

}  // namespace lftaccel
