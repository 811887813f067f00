// Geometry of a periodic hypercubic lattice in 1..4 dimensions, row-major
// (the last dimension is contiguous), as laid out in a (batch, *shape) buffer.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "config.hpp"

namespace lftaccel {

constexpr int kMaxDims = 4;

// Division of 32-bit site indices by a lattice extent d, as a multiply and a shift
// (Granlund and Montgomery's round-up method): with l = ceil(log2 d) and
// m = ceil(2^(31 + l) / d), floor(n m / 2^(31 + l)) = floor(n / d) for every 0 <= n < 2^31.
// Proof: m = (2^(31 + l) + r) / d with 0 <= r < d, so n m / 2^(31 + l) = n / d + e with
// 0 <= e = n r / (d 2^(31 + l)) < 2^-l <= 1 / d, and the fraction of n / d is at most
// 1 - 1 / d, so the floor does not move. m < 2^32 (2^(l - 1) < d, or m = 2^31 for d = 2^l),
// so n m < 2^63. The kernels that index sites in 32 bits (a Lattice from make_lattice,
// volume < 2^31) find a site's coordinates this way in a few instructions instead of the ~20
// of an integer division, which GPUs emulate in software.
struct FastDivisor {
  uint32_t magic = 0;  // 0: not usable (d >= 2^31; only 64-bit-index kernels see such extents)
  int shift = 0;

  static FastDivisor make(int64_t d) {
    FastDivisor f;
    if (d < 1 || d >= (int64_t(1) << 31)) return f;
    int l = 0;
    while ((int64_t(1) << l) < d) ++l;
    f.shift = 31 + l;
    f.magic = uint32_t(((uint64_t(1) << f.shift) + uint64_t(d) - 1) / uint64_t(d));
    return f;
  }
  // floor(n / d) for 0 <= n < 2^31.
  LFT_HOST_DEVICE uint32_t divide(uint32_t n) const { return uint32_t((uint64_t(n) * magic) >> shift); }
};

struct Lattice {
  int ndim = 0;
  int64_t extent[kMaxDims] = {1, 1, 1, 1};
  int64_t stride[kMaxDims] = {0, 0, 0, 0};
  int64_t volume = 0;
  FastDivisor divisor[kMaxDims];  // by extent[mu], for 32-bit site indices (set by make_lattice)

  // Whether kernels may index sites with 32-bit integers: the volume fits and the
  // divisors are those of the extents (make_lattice sets them; a Lattice filled in by
  // hand without them takes the 64-bit path, which divides plainly).
  bool int32_indices() const {
    if (volume >= (int64_t(1) << 31)) return false;
    for (int mu = 0; mu < ndim; ++mu) {
      const FastDivisor f = FastDivisor::make(extent[mu]);
      if (f.magic == 0 || f.magic != divisor[mu].magic || f.shift != divisor[mu].shift) return false;
    }
    return true;
  }

  // Site index of the forward (+1) or backward (-1) neighbour along mu. I is
  // the index type: GPU kernels use 32-bit indices where the volume allows.
  template <class I = int64_t>
  LFT_HOST_DEVICE I forward(I site, int mu) const {
    const I st = I(stride[mu]), L = I(extent[mu]);
    return (site / st) % L + 1 == L ? site - (L - 1) * st : site + st;
  }
  template <class I = int64_t>
  LFT_HOST_DEVICE I backward(I site, int mu) const {
    const I st = I(stride[mu]), L = I(extent[mu]);
    return (site / st) % L == 0 ? site + (L - 1) * st : site - st;
  }

  // floor(n / extent[mu]) in the index type I: FastDivisor's multiply and shift for 32-bit
  // indices (only on a Lattice from make_lattice, int32_indices(), whose divisors are set),
  // plain division for 64-bit ones: the coordinates of neighbours() and site_parity().
  template <class I>
  LFT_HOST_DEVICE I divide(I n, int mu) const {
    if constexpr (sizeof(I) == 4) return I(divisor[mu].divide(uint32_t(n)));
    else return n / I(extent[mu]);
  }

  // All 2D neighbours of a site at once: one division per dimension (the
  // coordinates) instead of two per neighbour, which is what a GPU thread that
  // owns one site wants. fwd[mu] / bwd[mu] are the sites at x +/- mu.
  template <int D, class I>
  LFT_HOST_DEVICE void neighbours(I site, I* fwd, I* bwd) const {
    I rest = site;
    LFT_UNROLL
    for (int mu = D - 1; mu >= 0; --mu) {
      const I L = I(extent[mu]), st = I(stride[mu]);
      const I q = mu == 0 ? I(0) : divide(rest, mu);  // the rest at mu = 0 is the coordinate
      const I c = rest - q * L;
      rest = q;
      fwd[mu] = c + 1 == L ? site - (L - 1) * st : site + st;
      bwd[mu] = c == 0 ? site + (L - 1) * st : site - st;
    }
  }
};

// Builds the geometry; throws std::invalid_argument on a bad shape. Extent 1
// is allowed (the site is its own neighbour); extent 2 makes both neighbours
// along that direction the same site, which the stencils handle without
// special cases because they sum over forward and backward links separately.
inline Lattice make_lattice(int ndim, const int64_t* extents) {
  if (ndim < 1 || ndim > kMaxDims)
    throw std::invalid_argument("lattice rank must be 1..4, got " + std::to_string(ndim));
  if (extents == nullptr) throw std::invalid_argument("extents must not be null");
  Lattice lat;
  lat.ndim = ndim;
  int64_t vol = 1;
  for (int mu = ndim - 1; mu >= 0; --mu) {
    if (extents[mu] < 1)
      throw std::invalid_argument("lattice extent " + std::to_string(mu) + " must be >= 1, got " +
                                  std::to_string(extents[mu]));
    lat.extent[mu] = extents[mu];
    lat.stride[mu] = vol;
    lat.divisor[mu] = FastDivisor::make(extents[mu]);
    if (vol > (int64_t(1) << 40) / extents[mu])
      throw std::invalid_argument("lattice volume too large");
    vol *= extents[mu];
  }
  lat.volume = vol;
  return lat;
}

}  // namespace lftaccel
