// Anharmonic oscillator on a periodic Euclidean time lattice of N slices,
// a = beta / N, hbar = 1, potential V(x) = c0 + c2 x^2 + c4 x^4:
//   S_E = sum_n [ m (x_{n+1} - x_n)^2 / (2 a) + a V(x_n) ]
//   dS/dx_n = (m / a) (2 x_n - x_{n+1} - x_{n-1}) + a V'(x_n)
//
// Matsubara form. With the orthonormal real Fourier basis (see fourier.hpp),
// the kinetic term is diagonal: sum_n (x_{n+1} - x_n)^2 = sum_j l_j c_j^2 with
// l_j = 4 sin^2(pi k_j / N), so per mode  s_j = m l_j c_j^2 / (2 a)  and
// dS_kin/dc_j = m l_j c_j / a. The potential stays a per-slice function of x_n.
#pragma once

#include "config.hpp"

namespace lftaccel {

template <class T>
struct OscillatorSite {
  T a;             // lattice spacing beta / N
  T m;             // mass
  T c0, c2, c4;    // V(x) = c0 + c2 x^2 + c4 x^4

  // The same parameters as U (the CPU stencils' SIMD vectors: every lane holds them).
  template <class U>
  OscillatorSite<U> rebind() const {
    return {U(a), U(m), U(c0), U(c2), U(c4)};
  }

  LFT_HOST_DEVICE T potential(T x) const {
    const T x2 = x * x;
    return c0 + x2 * (c2 + c4 * x2);
  }
  LFT_HOST_DEVICE T potential_grad(T x) const { return x * (T(2) * c2 + T(4) * c4 * x * x); }

  // (m / (2a)) and (m / a) depend on the parameters alone, so a compiler hoists them out of a
  // site loop; written as m d^2 / (2a) the division would be per site (and on the CPU's
  // vector rows a vector division costs more than the rest of the site).
  template <int D>
  LFT_HOST_DEVICE T action(T x, const T* fwd) const {
    const T d = fwd[0] - x;
    return (m / (T(2) * a)) * (d * d) + a * potential(x);
  }

  template <int D>
  LFT_HOST_DEVICE T grad(T x, const T* fwd, const T* bwd) const {
    return (m / a) * (T(2) * x - fwd[0] - bwd[0]) + a * potential_grad(x);
  }

  template <int D>
  LFT_HOST_DEVICE T action_grad(T x, const T* fwd, const T* bwd, T& g) const {
    g = grad<D>(x, fwd, bwd);
    return action<D>(x, fwd);
  }

  // Matsubara kinetic term of one real Fourier coefficient with eigenvalue l.
  LFT_HOST_DEVICE T mode_action(T c, T l) const { return (m / (T(2) * a)) * l * (c * c); }
  LFT_HOST_DEVICE T mode_grad(T c, T l) const { return (m / a) * l * c; }
};

}  // namespace lftaccel
