// CUDA kernels: one thread per site, calling the same per-site functions as
// the CPU loops. Per-configuration sums are reduced per block (in double) and
// added to the caller's zeroed output with one atomic per block.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common.cuh"
#include "lftaccel/cuda.hpp"
#include "lftaccel/fourier.hpp"
#include "lftaccel/philox.hpp"

namespace lftaccel {
namespace cuda {
namespace {

struct Launch {
  dim3 grid;
  dim3 block{kBlock};
};

Launch launch_for(int64_t batch, int64_t sites) {
  Launch l;
  l.grid = grid_for(batch, sites);
  return l;
}

template <int D, bool A, bool G, class I, class Site, class T>
__global__ void linear_stencil_kernel(Site site, Lattice lat, int64_t batch, const T* __restrict__ x,
                                      T* action, T* __restrict__ grad) {
  const int64_t V = lat.volume;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* xb = x + b * lat.volume;
    double acc = 0;
    // The loop counter is 64-bit (a 32-bit one could wrap past 2^31 near the end of
    // a large lattice); the neighbour arithmetic runs in I, which holds any site < V.
    for (int64_t s64 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s64 < V;
         s64 += int64_t(gridDim.x) * blockDim.x) {
      const I s = I(s64);
      I fi[D], bi[D];
      lat.neighbours<D>(s, fi, bi);
      T f[D], bk[D];
#pragma unroll
      for (int mu = 0; mu < D; ++mu) {
        f[mu] = xb[fi[mu]];
        bk[mu] = xb[bi[mu]];
      }
      const T v = xb[s];
      if (G) grad[b * lat.volume + s] = site.template grad<D>(v, f, bk);
      if (A) acc += site.template action<D>(v, f);
    }
    if (A) block_add(acc, action + b);
  }
}

template <int D, bool A, bool G, class I, class T>
__global__ void xy_kernel(XYSite<T> site, Lattice lat, int64_t batch, const T* __restrict__ th,
                          T* action, T* __restrict__ grad) {
  const int64_t V = lat.volume;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* tb = th + b * lat.volume;
    double acc = 0;
    for (int64_t s64 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s64 < V;
         s64 += int64_t(gridDim.x) * blockDim.x) {
      const I s = I(s64);
      I fi[D], bi[D];
      lat.neighbours<D>(s, fi, bi);
      T fc[D], fs[D], bc[D], bs[D], c, sn;
#pragma unroll
      for (int mu = 0; mu < D; ++mu) {
        sincos(tb[fi[mu]], &fs[mu], &fc[mu]);
        if (G) sincos(tb[bi[mu]], &bs[mu], &bc[mu]);
      }
      sincos(tb[s], &sn, &c);
      if (G) grad[b * lat.volume + s] = site.template grad<D>(c, sn, fc, fs, bc, bs);
      if (A) acc += site.template action<D>(c, sn, fc, fs);
    }
    if (A) block_add(acc, action + b);
  }
}

template <class T>
__global__ void fourier_kernel(OscillatorSite<T> site, int64_t n, int64_t batch,
                               const T* __restrict__ c, const T* __restrict__ x, T* action,
                               T* __restrict__ gc, T* __restrict__ gx) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    double acc = 0;
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n;
         j += int64_t(gridDim.x) * blockDim.x) {
      const int64_t i = b * n + j;
      const T l = matsubara_eigenvalue<T>(j, n);
      if (gc) gc[i] = site.mode_grad(c[i], l);
      if (gx) gx[i] = site.a * site.potential_grad(x[i]);
      if (action) acc += site.mode_action(c[i], l) + site.a * site.potential(x[i]);
    }
    if (action) block_add(acc, action + b);
  }
}

enum class Variate { Bits, Uniform, Normal };

template <Variate K, class T>
__global__ void philox_kernel(T* out, int64_t batch, int64_t n_sites, uint32_t seed,
                              uint32_t chain_offset, uint64_t step, uint32_t purpose) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y)
    for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < n_sites;
         s += int64_t(gridDim.x) * blockDim.x) {
      const Philox4x32 r = philox_block(seed, chain_offset + uint32_t(b), uint32_t(s), step, purpose);
      if constexpr (K == Variate::Bits) {
        for (int w = 0; w < 4; ++w) out[(b * n_sites + s) * 4 + w] = r.v[w];
      } else if constexpr (K == Variate::Uniform) {
        out[b * n_sites + s] = PhiloxVariates<T>::uniform(r);
      } else {
        out[b * n_sites + s] = philox_normal_at<T>(seed, chain_offset + uint32_t(b), uint32_t(s), step, purpose);
      }
    }
}

template <class T>
void zero_action(T* action, int64_t batch, cudaStream_t st) {
  if (action) check(cudaMemsetAsync(action, 0, sizeof(T) * batch, st), "cudaMemsetAsync");
}

// Compiles the (rank, outputs, index width) variants of a stencil kernel.
template <template <int, bool, bool, class> class K, class... Args>
void dispatch_stencil(const Lattice& lat, int64_t batch, bool want_action, bool want_grad,
                      cudaStream_t st, Args... args) {
  if (!want_action && !want_grad) return;
  const Launch l = launch_for(batch, lat.volume);
  const bool small = lat.volume < (int64_t(1) << 31);
  auto go = [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    if (want_action && want_grad)
      small ? K<D, true, true, int>::launch(l, st, args...) : K<D, true, true, int64_t>::launch(l, st, args...);
    else if (want_action)
      small ? K<D, true, false, int>::launch(l, st, args...) : K<D, true, false, int64_t>::launch(l, st, args...);
    else
      small ? K<D, false, true, int>::launch(l, st, args...) : K<D, false, true, int64_t>::launch(l, st, args...);
  };
  switch (lat.ndim) {
    case 1: go(std::integral_constant<int, 1>{}); break;
    case 2: go(std::integral_constant<int, 2>{}); break;
    case 3: go(std::integral_constant<int, 3>{}); break;
    case 4: go(std::integral_constant<int, 4>{}); break;
  }
  check(cudaGetLastError(), "kernel launch");
}

template <int D, bool A, bool G, class I>
struct LinearLaunch {
  template <class Site, class T>
  static void launch(const Launch& l, cudaStream_t st, Site site, Lattice lat, int64_t batch,
                     const T* x, T* action, T* grad) {
    linear_stencil_kernel<D, A, G, I><<<l.grid, l.block, 0, st>>>(site, lat, batch, x, action, grad);
  }
};

template <int D, bool A, bool G, class I>
struct XYLaunch {
  template <class T>
  static void launch(const Launch& l, cudaStream_t st, XYSite<T> site, Lattice lat, int64_t batch,
                     const T* x, T* action, T* grad) {
    xy_kernel<D, A, G, I><<<l.grid, l.block, 0, st>>>(site, lat, batch, x, action, grad);
  }
};

}  // namespace

template <class T>
void phi4(const Lattice& lat, int64_t batch, const T* x, Out<T>* action, Out<T>* grad, const Phi4Site<T>& p,
          void* stream) {
  zero_action(action, batch, as_stream(stream));
  dispatch_stencil<LinearLaunch>(lat, batch, action != nullptr, grad != nullptr, as_stream(stream),
                                 p, lat, batch, x, action, grad);
}

template <class T>
void xy(const Lattice& lat, int64_t batch, const T* theta, Out<T>* action, Out<T>* grad, const XYSite<T>& p,
        void* stream) {
  zero_action(action, batch, as_stream(stream));
  dispatch_stencil<XYLaunch>(lat, batch, action != nullptr, grad != nullptr, as_stream(stream), p,
                             lat, batch, theta, action, grad);
}

template <class T>
void oscillator(int64_t n_slices, int64_t batch, const T* x, Out<T>* action, Out<T>* grad,
                const OscillatorSite<T>& p, void* stream) {
  const Lattice lat = make_lattice(1, &n_slices);
  zero_action(action, batch, as_stream(stream));
  dispatch_stencil<LinearLaunch>(lat, batch, action != nullptr, grad != nullptr, as_stream(stream),
                                 p, lat, batch, x, action, grad);
}

template <class T>
void oscillator_fourier(int64_t n_slices, int64_t batch, const T* coeffs, const T* path, Out<T>* action,
                        Out<T>* grad_coeffs, Out<T>* grad_path, const OscillatorSite<T>& p, void* stream) {
  if (!action && !grad_coeffs && !grad_path) return;
  zero_action(action, batch, as_stream(stream));
  const Launch l = launch_for(batch, n_slices);
  fourier_kernel<<<l.grid, l.block, 0, as_stream(stream)>>>(p, n_slices, batch, coeffs, path,
                                                             action, grad_coeffs, grad_path);
  check(cudaGetLastError(), "fourier kernel launch");
}

template <Variate K, class T>
void launch_philox(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, void* stream) {
  const Launch l = launch_for(batch, n_sites);
  philox_kernel<K><<<l.grid, l.block, 0, as_stream(stream)>>>(out, batch, n_sites, seed,
                                                               chain_offset, step, purpose);
  check(cudaGetLastError(), "philox kernel launch");
}

void philox_bits(uint32_t* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                 uint64_t step, uint32_t purpose, void* stream) {
  launch_philox<Variate::Bits>(out, batch, n_sites, seed, chain_offset, step, purpose, stream);
}

template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, void* stream) {
  launch_philox<Variate::Uniform>(out, batch, n_sites, seed, chain_offset, step, purpose, stream);
}

template <class T>
void philox_normal(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, void* stream) {
  launch_philox<Variate::Normal>(out, batch, n_sites, seed, chain_offset, step, purpose, stream);
}

int device_count() {
  int n = 0;
  // No driver or no GPU is an ordinary situation: report zero devices.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::vector<std::string> device_names() {
  std::vector<std::string> out;
  for (int d = 0, n = device_count(); d < n; ++d) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    out.push_back(std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                  std::to_string(prop.minor) + ", " +
                  std::to_string(prop.totalGlobalMem >> 20) + " MiB)");
  }
  return out;
}

int pointer_device(const void* ptr) {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

void set_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }

int current_device() {
  int d = 0;
  check(cudaGetDevice(&d), "cudaGetDevice");
  return d;
}

#define LFT_INSTANTIATE(T)                                                                         \
  template void phi4<T>(const Lattice&, int64_t, const T*, T*, T*, const Phi4Site<T>&, void*);    \
  template void xy<T>(const Lattice&, int64_t, const T*, T*, T*, const XYSite<T>&, void*);        \
  template void oscillator<T>(int64_t, int64_t, const T*, T*, T*, const OscillatorSite<T>&,       \
                              void*);                                                             \
  template void oscillator_fourier<T>(int64_t, int64_t, const T*, const T*, T*, T*, T*,           \
                                      const OscillatorSite<T>&, void*);                           \
  template void philox_uniform<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t,   \
                                  void*);                                                         \
  template void philox_normal<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t,    \
                                 void*);
LFT_INSTANTIATE(float)
LFT_INSTANTIATE(double)
#undef LFT_INSTANTIATE

}  // namespace cuda
}  // namespace lftaccel
