// Geometry of a periodic hypercubic lattice in 1..4 dimensions, row-major
// (the last dimension is contiguous), as laid out in a (batch, *shape) buffer.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "config.hpp"

namespace lftaccel {

constexpr int kMaxDims = 4;

struct Lattice {
  int ndim = 0;
  int64_t extent[kMaxDims] = {1, 1, 1, 1};
  int64_t stride[kMaxDims] = {0, 0, 0, 0};
  int64_t volume = 0;

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

  // All 2D neighbours of a site at once: one division per dimension (the
  // coordinates) instead of two per neighbour, which is what a GPU thread that
  // owns one site wants. fwd[mu] / bwd[mu] are the sites at x +/- mu.
  template <int D, class I>
  LFT_HOST_DEVICE void neighbours(I site, I* fwd, I* bwd) const {
    I rest = site;
    LFT_UNROLL
    for (int mu = D - 1; mu >= 0; --mu) {
      const I L = I(extent[mu]), st = I(stride[mu]);
      const I c = mu == 0 ? rest : rest % L;
      rest = mu == 0 ? rest : rest / L;
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
  Lattice lat;
  lat.ndim = ndim;
  int64_t vol = 1;
  for (int mu = ndim - 1; mu >= 0; --mu) {
    if (extents[mu] < 1)
      throw std::invalid_argument("lattice extent " + std::to_string(mu) + " must be >= 1, got " +
                                  std::to_string(extents[mu]));
    lat.extent[mu] = extents[mu];
    lat.stride[mu] = vol;
    if (vol > (int64_t(1) << 40) / extents[mu])
      throw std::invalid_argument("lattice volume too large");
    vol *= extents[mu];
  }
  lat.volume = vol;
  return lat;
}

}  // namespace lftaccel
