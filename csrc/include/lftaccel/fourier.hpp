// Real orthonormal Fourier basis of a periodic path x_0..x_{N-1}.
//
// Coefficients are stored interleaved by frequency, c = (c_0, a_1, b_1, a_2, b_2, ...),
// ending with a_{N/2} alone when N is even:
//   x_n = [ c_0 + sqrt(2) sum_{1 <= k < N/2} (a_k cos(2 pi k n/N) + b_k sin(2 pi k n/N))
//           + (-1)^n a_{N/2} ] / sqrt(N)
// The map is orthogonal, so sum_n x_n^2 = sum_j c_j^2 and dS/dc = F (dS/dx): the
// gradient transforms like the path. Coefficient j has frequency k_j = (j + 1) / 2.
#pragma once

#include <cmath>
#include <cstdint>

#include "config.hpp"

namespace lftaccel {

// Eigenvalue of the periodic lattice Laplacian -(x_{n+1} - 2 x_n + x_{n-1}) on coefficient j.
template <class T>
LFT_HOST_DEVICE T matsubara_eigenvalue(int64_t j, int64_t n_slices) {
  const int64_t k = (j + 1) / 2;
  using std::sin;
  const T s = sin(T(3.14159265358979323846) * T(k) / T(n_slices));
  return T(4) * s * s;
}

}  // namespace lftaccel
