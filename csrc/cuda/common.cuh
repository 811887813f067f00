// Helpers shared by the CUDA translation units: launch shape, error checks and
// the block-wide reduction behind every per-configuration sum.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

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

}  // namespace cuda
}  // namespace lftaccel
