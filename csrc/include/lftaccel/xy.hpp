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

  // The same parameter as U (the CPU stencils' SIMD vectors: every lane holds it).
  template <class U>
  XYSite<U> rebind() const {
    return {U(beta)};
  }

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

  // The same from the angles themselves, one transcendental call per link: cos and sin of
  // theta(x) - theta(x+mu), sin of theta(x) - theta(x-mu). A GPU thread that owns one site would
  // otherwise evaluate 2D + 1 sincos (its own angle and each neighbour's, none shared between
  // threads); these need D sincos and D sin, and have no cancellation in c c' + s s'.
  template <int D>
  LFT_HOST_DEVICE T action_from_angles(T th, const T* fwd) const {
    T acc = 0;
LFT_UNROLL
    for (int mu = 0; mu < D; ++mu) acc += link_cos(th, fwd[mu]);
    return -beta * acc;
  }

  template <int D>
  LFT_HOST_DEVICE T grad_from_angles(T th, const T* fwd, const T* bwd) const {
    T acc = 0;
LFT_UNROLL
    for (int mu = 0; mu < D; ++mu) acc += link_sin(th, fwd[mu]) + link_sin(th, bwd[mu]);
    return beta * acc;
  }

  // Both, sharing each forward link's angle difference (the fused kernels call this); the sums
  // in the order of the two above, so that the results are theirs to the bit.
  template <int D>
  LFT_HOST_DEVICE T action_grad_from_angles(T th, const T* fwd, const T* bwd, T& g) const {
    T a = 0, gs = 0;
LFT_UNROLL
    for (int mu = 0; mu < D; ++mu) {
      T c, s;
      link_cos_sin(th, fwd[mu], c, s);
      a += c;
      gs += s + link_sin(th, bwd[mu]);
    }
    g = beta * gs;
    return -beta * a;
  }

  // Whether a link's angle difference a - b is formed in double. In float it rounds where the
  // angles are large (|a|, |b| ~ 1e4: up to 5e-4 rad off), while the (cos, sin) form is
  // accurate for any angle. Angles within [-8, 8], which hold [-pi, pi) and [0, 2 pi) and the
  // samplers' wrapped angles, keep the float difference (off by at most 1e-6 rad).
  LFT_HOST_DEVICE static bool wide_link(T a, T b) {
    if constexpr (sizeof(T) == 4) return a > T(8) || a < T(-8) || b > T(8) || b < T(-8);
    else return false;
  }
  LFT_HOST_DEVICE static T link_cos(T a, T b) {
    using std::cos;
    return wide_link(a, b) ? T(cos(double(a) - double(b))) : cos(a - b);
  }
  LFT_HOST_DEVICE static T link_sin(T a, T b) {
    using std::sin;
    return wide_link(a, b) ? T(sin(double(a) - double(b))) : sin(a - b);
  }
  // Both of one link from one difference (cos and sin of the same argument: one sincos on a GPU).
  LFT_HOST_DEVICE static void link_cos_sin(T a, T b, T& c, T& s) {
    using std::cos;
    using std::sin;
    if (wide_link(a, b)) {
      const double d = double(a) - double(b);
      c = T(cos(d));
      s = T(sin(d));
    } else {
      const T d = a - b;
      c = cos(d);
      s = sin(d);
    }
  }
};

}  // namespace lftaccel
