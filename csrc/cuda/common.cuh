// Helpers shared by the CUDA translation units: launch shape, error checks, the
// block-wide reduction behind every per-configuration sum, and the per-site evaluation
// that every stencil kernel calls.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "lftaccel/xy.hpp"

namespace lftaccel {
namespace cuda {

constexpr int kBlock = 256;

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("lftaccel CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Blocks over sites in x, chains in y (both capped: the kernels stride over the rest).
inline dim3 grid_for(int64_t batch, int64_t sites) {
  const int64_t bx = (sites + kBlock - 1) / kBlock;
  return dim3(unsigned(bx < 65535 ? bx : 65535), unsigned(batch < 65535 ? batch : 65535));
}

// Block-wide sum of v (in double), added atomically to *out by one thread. Every
// thread of the block must call it (it synchronises the block).
template <class T>
__device__ inline void block_add(double v, T* out) {
  __shared__ double warp_sums[kBlock / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBlock / 32 ? warp_sums[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0 && v != 0.0) atomicAdd(out, T(v));
  }
  __syncthreads();
}

// One site of a stencil from its value v and its forward / backward neighbours f, bk (bk
// is read only when G): returns the action density when A (else 0) and stores dS/dx in g
// when G. XY goes through its angle-difference form (xy.hpp): a GPU thread that owns one
// site would otherwise evaluate 2D + 1 sincos, none shared; the other theories through
// their plain action and grad.
template <int D, bool A, bool G, class Site, class T>
__device__ inline T site_action_grad(const Site& site, T v, const T* f, const T* bk, T& g) {
  if constexpr (std::is_same_v<Site, XYSite<T>>) {
    if constexpr (A && G) return site.template action_grad_from_angles<D>(v, f, bk, g);
    if constexpr (G) g = site.template grad_from_angles<D>(v, f, bk);
    if constexpr (A) return site.template action_from_angles<D>(v, f);
  } else {
    if constexpr (G) g = site.template grad<D>(v, f, bk);
    if constexpr (A) return site.template action<D>(v, f);
  }
  return T(0);
}

}  // namespace cuda
}  // namespace lftaccel
