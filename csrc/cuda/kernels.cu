// CUDA kernels: each thread owns a few sites (unroll<T>, below), calling the per-site
// physics of the headers (through site_action_grad, common.cuh) as the CPU loops do.
// Per-configuration sums are reduced per block (in double) and added to the caller's
// zeroed output with one atomic per block.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "lftaccel/cuda.hpp"
#include "lftaccel/fourier.hpp"
#include "lftaccel/philox.hpp"

namespace lftaccel {
namespace cuda {
namespace {

// Each thread owns unroll<T> sites of a block-contiguous chunk of unroll<T> * kBlock sites and
// issues all their loads before any arithmetic. With one site per thread a thread has one
// load from DRAM in flight (its neighbours hit the cache), which on an H200 left the stencils
// latency-bound at 20-40 % of copy bandwidth; several in flight per thread hide the latency,
// and a block's reduction and atomic are amortised over more sites. The bytes in flight per
// thread are a build option (CMakeLists.txt), the same for float32 and float64.
#ifndef LFTACCEL_CUDA_INFLIGHT_BYTES
#define LFTACCEL_CUDA_INFLIGHT_BYTES 32
#endif
template <class T>
constexpr int unroll = LFTACCEL_CUDA_INFLIGHT_BYTES / int(sizeof(T)) > 0 ? LFTACCEL_CUDA_INFLIGHT_BYTES / int(sizeof(T))
                                                                          : 1;
template <class T>
constexpr int64_t chunk = int64_t(kBlock) * unroll<T>;

struct Launch {
  dim3 grid;
  dim3 block{kBlock};
};

// Blocks over chunks of sites in x, chains in y (both capped: the kernels stride over the rest).
template <class T>
Launch launch_for(int64_t batch, int64_t sites) {
  Launch l;
  const int64_t chunks = (sites + chunk<T> - 1) / chunk<T>;
  l.grid = dim3(unsigned(chunks < 65535 ? chunks : 65535), unsigned(batch < 65535 ? batch : 65535));
  return l;
}

// The loop over a block's chunks: `base` is the same for every thread of the block (so a
// block-wide reduction after it is reached by all), site k of the thread is base + k kBlock +
// threadIdx.x (coalesced for every k).
#define LFT_FOR_CHUNKS(n) \
  for (int64_t base = int64_t(blockIdx.x) * chunk<T>; base < (n); base += int64_t(gridDim.x) * chunk<T>)

// phi^4, XY and the oscillator path: the physics per site is site_action_grad (common.cuh).
template <int D, bool A, bool G, class I, class Site, class T, class Acc>
__global__ void stencil_kernel(Site site, Lattice lat, int64_t batch, const T* __restrict__ x, Acc* action,
                               T* __restrict__ grad) {
  const int64_t V = lat.volume;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* xb = x + b * V;
    double acc = 0;
    LFT_FOR_CHUNKS(V) {
      T v[unroll<T>] = {}, f[unroll<T>][D] = {}, bk[unroll<T>][D] = {};
#pragma unroll
      for (int k = 0; k < unroll<T>; ++k) {
        // The site counter is 64-bit (a 32-bit one could wrap past 2^31 near the end of a
        // large lattice); the neighbour arithmetic runs in I, which holds any site < V.
        const int64_t s64 = base + k * kBlock + threadIdx.x;
        if (s64 >= V) continue;
        const I s = I(s64);
        I fi[D], bi[D];
        lat.neighbours<D>(s, fi, bi);
        v[k] = xb[s];
#pragma unroll
        for (int mu = 0; mu < D; ++mu) {
          f[k][mu] = xb[fi[mu]];
          if (G) bk[k][mu] = xb[bi[mu]];
        }
      }
#pragma unroll
      for (int k = 0; k < unroll<T>; ++k) {
        const int64_t s64 = base + k * kBlock + threadIdx.x;
        if (s64 >= V) continue;
        T g;
        acc += site_action_grad<D, A, G>(site, v[k], f[k], bk[k], g);
        if (G) grad[b * V + s64] = g;
      }
    }
    if (A) block_add(acc, action + b);
  }
}

// XY in two dimensions from a shared-memory tile. stencil_kernel evaluates D sincos and D sin
// per site (XYSite's angle-difference form, nothing shared between threads), and on an H200 it
// left XY at ~20 % of copy bandwidth, bound by double-precision sin/cos. Here a block loads a
// tile of TX x kHeight sites with a one-site halo, takes each loaded angle's (cos, sin) once
// into shared memory, and every site then uses XYSite's (cos, sin) form, as the CPU loop does:
// (TX + 2)(kHeight + 2) / (TX kHeight) sincos per site for a full tile (1.10-1.27 at the default
// 32 bytes in flight; more for partial tiles, about 3 when a row has one site) and no
// transcendental in the per-site arithmetic. Each thread owns unroll<T> sites of one tile
// column, at most 8 (which keeps shared memory under 48 KiB at 128 bytes in flight), and
// issues all its loads before the first sincos. The width TX (8..64) follows the row length,
// so a narrow lattice does not leave most threads idle (rows of 33..63 sites still idle up to
// half); 32-bit indices only (xy() falls back otherwise).
template <int TX, class T>
struct XYTile {
  static constexpr int kSitesPerThread = unroll<T> < 8 ? unroll<T> : 8;
  static constexpr int kThreadRows = kBlock / TX;  // threads per tile column
  static constexpr int kHeight = kThreadRows * kSitesPerThread;
  static constexpr int kPitch = TX + 2;
  static constexpr int kHalo = (kHeight + 2) * kPitch;  // sites loaded per tile, halo included
  static constexpr int kLoads = (kHalo + kBlock - 1) / kBlock;
  static_assert(2 * kHalo * sizeof(T) <= 48 * 1024, "XY tile exceeds 48 KiB of static shared memory");
};

__device__ inline void sin_cos(float x, float* s, float* c) { sincosf(x, s, c); }
__device__ inline void sin_cos(double x, double* s, double* c) { sincos(x, s, c); }

template <int TX, bool A, bool G, class T, class Acc>
__global__ void xy2d_tile_kernel(XYSite<T> site, int L0, int L1, int tiles_x, int n_tiles, int64_t batch,
                                 const T* __restrict__ theta, Acc* action, T* __restrict__ grad) {
  using Tile = XYTile<TX, T>;
  constexpr int P = Tile::kPitch;
  __shared__ T cs[Tile::kHalo], sn[Tile::kHalo];
  const int64_t V = int64_t(L0) * L1;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* tb = theta + b * V;
    double acc = 0;
    for (int tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {  // the same count for every thread
      const int r0 = (tile / tiles_x) * Tile::kHeight, c0 = (tile % tiles_x) * TX;
      const int rows = min(Tile::kHeight, L0 - r0), cols = min(TX, L1 - c0);
      // Halo element e sits at tile row e / P - 1 and column e % P - 1; a partial tile (the
      // last in a row or column) loads its rows and columns and the halo around them only.
      T v[Tile::kLoads];
      bool loaded[Tile::kLoads];
#pragma unroll
      for (int k = 0; k < Tile::kLoads; ++k) {
        const int e = k * kBlock + threadIdx.x, lr = e / P, lc = e % P;
        loaded[k] = e < Tile::kHalo && lr <= rows + 1 && lc <= cols + 1;
        if (!loaded[k]) continue;
        int r = r0 - 1 + lr, c = c0 - 1 + lc;  // in [-1, L0] and [-1, L1]: one wrap suffices
        r = r < 0 ? r + L0 : (r >= L0 ? r - L0 : r);
        c = c < 0 ? c + L1 : (c >= L1 ? c - L1 : c);
        v[k] = tb[r * L1 + c];
      }
#pragma unroll
      for (int k = 0; k < Tile::kLoads; ++k) {
        const int e = k * kBlock + threadIdx.x;
        if (!loaded[k]) continue;
        T s, c;
        sin_cos(v[k], &s, &c);
        sn[e] = s;
        cs[e] = c;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < Tile::kSitesPerThread; ++k) {
        const int row = ty + k * Tile::kThreadRows;  // the site's row in the tile
        if (row >= rows || tx >= cols) continue;
        const int e = (row + 1) * P + tx + 1;
        // mu = 0 along rows (stride L1), mu = 1 along the contiguous dimension.
        const T fc[2] = {cs[e + P], cs[e + 1]}, fs[2] = {sn[e + P], sn[e + 1]};
        if (A) acc += site.template action<2>(cs[e], sn[e], fc, fs);
        if (G) {
          const T bc[2] = {cs[e - P], cs[e - 1]}, bs[2] = {sn[e - P], sn[e - 1]};
          grad[b * V + int64_t(r0 + row) * L1 + c0 + tx] = site.template grad<2>(cs[e], sn[e], fc, fs, bc, bs);
        }
      }
      __syncthreads();  // the next tile overwrites cs and sn
    }
    if (A) block_add(acc, action + b);
  }
}

// Elementwise over (chain, coefficient). The chunk loop is outside the chain loop, so a
// thread's Laplacian eigenvalues (one sin each) are computed once for every chain.
template <class T, class Acc>
__global__ void fourier_kernel(OscillatorSite<T> site, int64_t n, int64_t batch,
                               const T* __restrict__ c, const T* __restrict__ x, Acc* action,
                               T* __restrict__ gc, T* __restrict__ gx) {
  LFT_FOR_CHUNKS(n) {
    T l[unroll<T>];
#pragma unroll
    for (int k = 0; k < unroll<T>; ++k) {
      const int64_t j = base + k * kBlock + threadIdx.x;
      l[k] = j < n ? matsubara_eigenvalue<T>(j, n) : T(0);
    }
    for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
      T cv[unroll<T>] = {}, xv[unroll<T>] = {};
#pragma unroll
      for (int k = 0; k < unroll<T>; ++k) {
        const int64_t j = base + k * kBlock + threadIdx.x;
        if (j >= n) continue;
        if (gc || action) cv[k] = c[b * n + j];
        if (gx || action) xv[k] = x[b * n + j];
      }
      double acc = 0;
#pragma unroll
      for (int k = 0; k < unroll<T>; ++k) {
        const int64_t i = b * n + base + k * kBlock + threadIdx.x;
        if (base + k * kBlock + threadIdx.x >= n) continue;
        if (gc) gc[i] = site.mode_grad(cv[k], l[k]);
        if (gx) gx[i] = site.a * site.potential_grad(xv[k]);
        if (action) acc += site.mode_action(cv[k], l[k]) + site.a * site.potential(xv[k]);
      }
      if (action) block_add(acc, action + b);
    }
  }
}

enum class Variate { Bits, Uniform, Normal };

// One thread per Philox block. Normals come in pairs: sites 2q and 2q + 1 are z0 and z1 of
// block q (philox_normal_at), so a thread computes the block and Box-Muller once for both.
template <Variate K, class T>
__global__ void philox_kernel(T* out, int64_t batch, int64_t n_sites, uint32_t seed,
                              uint32_t chain_offset, uint64_t step, uint32_t purpose) {
  const int64_t n_blocks = K == Variate::Normal ? (n_sites + 1) / 2 : n_sites;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y)
    for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < n_blocks;
         q += int64_t(gridDim.x) * blockDim.x) {
      const Philox4x32 r = philox_block(seed, chain_offset + uint32_t(b), uint32_t(q), step, purpose);
      if constexpr (K == Variate::Bits) {
        for (int w = 0; w < 4; ++w) out[(b * n_sites + q) * 4 + w] = r.v[w];
      } else if constexpr (K == Variate::Uniform) {
        out[b * n_sites + q] = PhiloxVariates<T>::uniform(r);
      } else {
        T z0, z1;
        PhiloxVariates<T>::normal_pair(r, z0, z1);
        out[b * n_sites + 2 * q] = z0;
        if (2 * q + 1 < n_sites) out[b * n_sites + 2 * q + 1] = z1;
      }
    }
}

template <class Acc>
void zero_action(Acc* action, int64_t batch, cudaStream_t st) {
  if (action) check(cudaMemsetAsync(action, 0, sizeof(Acc) * batch, st), "cudaMemsetAsync");
}

// Launches stencil_kernel in the (rank, outputs, index width) variant the call needs.
template <class Site, class T, class Acc>
void dispatch_stencil(const Site& site, const Lattice& lat, int64_t batch, const T* x, Acc* action, T* grad,
                      cudaStream_t st) {
  if (!action && !grad) return;
  zero_action(action, batch, st);
  const Launch l = launch_for<T>(batch, lat.volume);
  const bool small = lat.int32_indices();
  auto go = [&](auto dim, auto a, auto g) {
    constexpr int D = decltype(dim)::value;
    constexpr bool A = decltype(a)::value, G = decltype(g)::value;
    if (small)
      stencil_kernel<D, A, G, int><<<l.grid, l.block, 0, st>>>(site, lat, batch, x, action, grad);
    else
      stencil_kernel<D, A, G, int64_t><<<l.grid, l.block, 0, st>>>(site, lat, batch, x, action, grad);
  };
  auto outputs = [&](auto dim) {
    if (action && grad) go(dim, std::true_type{}, std::true_type{});
    else if (action) go(dim, std::true_type{}, std::false_type{});
    else go(dim, std::false_type{}, std::true_type{});
  };
  switch (lat.ndim) {
    case 1: outputs(std::integral_constant<int, 1>{}); break;
    case 2: outputs(std::integral_constant<int, 2>{}); break;
    case 3: outputs(std::integral_constant<int, 3>{}); break;
    case 4: outputs(std::integral_constant<int, 4>{}); break;
  }
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace

template <class T, class Acc>
void phi4(const Lattice& lat, int64_t batch, const T* x, Out<Acc>* action, Out<T>* grad, const Phi4Site<T>& p,
          void* stream) {
  checks::field(lat, batch, x, "x");
  checks::stencil_call(batch, lat.volume, x, "x", action, grad, p);
  if (batch == 0) return;
  dispatch_stencil(p, lat, batch, x, action, grad, as_stream(stream));
}

template <class T, class Acc>
void xy(const Lattice& lat, int64_t batch, const T* theta, Out<Acc>* action, Out<T>* grad, const XYSite<T>& p,
        void* stream) {
  checks::field(lat, batch, theta, "theta");
  checks::stencil_call(batch, lat.volume, theta, "theta", action, grad, p);
  if (batch == 0) return;
  if (lat.ndim != 2 || !lat.int32_indices())
    return dispatch_stencil(p, lat, batch, theta, action, grad, as_stream(stream));
  if (!action && !grad) return;
  const cudaStream_t st = as_stream(stream);
  zero_action(action, batch, st);
  const int L0 = int(lat.extent[0]), L1 = int(lat.extent[1]);
  auto go = [&](auto width, auto a, auto g) {
    constexpr int TX = decltype(width)::value;
    using Tile = XYTile<TX, T>;
    // (L - 1) / w + 1, not (L + w - 1) / w: an extent near 2^31 (the other one 1) must not overflow.
    const int tiles_x = (L1 - 1) / TX + 1, n_tiles = tiles_x * ((L0 - 1) / Tile::kHeight + 1);
    const dim3 grid(unsigned(n_tiles < 65535 ? n_tiles : 65535), unsigned(batch < 65535 ? batch : 65535));
    xy2d_tile_kernel<TX, decltype(a)::value, decltype(g)::value>
        <<<grid, dim3(kBlock), 0, st>>>(p, L0, L1, tiles_x, n_tiles, batch, theta, action, grad);
  };
  auto outputs = [&](auto width) {
    if (action && grad) go(width, std::true_type{}, std::true_type{});
    else if (action) go(width, std::true_type{}, std::false_type{});
    else go(width, std::false_type{}, std::true_type{});
  };
  if (L1 > 32) outputs(std::integral_constant<int, 64>{});
  else if (L1 > 16) outputs(std::integral_constant<int, 32>{});
  else if (L1 > 8) outputs(std::integral_constant<int, 16>{});
  else outputs(std::integral_constant<int, 8>{});
  check(cudaGetLastError(), "xy tile kernel launch");
}

template <class T, class Acc>
void oscillator(int64_t n_slices, int64_t batch, const T* x, Out<Acc>* action, Out<T>* grad,
                const OscillatorSite<T>& p, void* stream) {
  checks::path(n_slices, batch, x, "x");
  checks::stencil_call(batch, n_slices, x, "x", action, grad, p);
  if (batch == 0) return;
  dispatch_stencil(p, make_lattice(1, &n_slices), batch, x, action, grad, as_stream(stream));
}

template <class T, class Acc>
void oscillator_fourier(int64_t n_slices, int64_t batch, const T* coeffs, const T* path, Out<Acc>* action,
                        Out<T>* grad_coeffs, Out<T>* grad_path, const OscillatorSite<T>& p, void* stream) {
  checks::fourier_call(n_slices, batch, coeffs, path, action, grad_coeffs, grad_path, p);
  if (batch == 0 || (!action && !grad_coeffs && !grad_path)) return;
  zero_action(action, batch, as_stream(stream));
  const Launch l = launch_for<T>(batch, n_slices);
  fourier_kernel<<<l.grid, l.block, 0, as_stream(stream)>>>(p, n_slices, batch, coeffs, path,
                                                             action, grad_coeffs, grad_path);
  check(cudaGetLastError(), "fourier kernel launch");
}

template <Variate K, class T>
void launch_philox(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, void* stream) {
  checks::fill_call(out, batch, n_sites, chain_offset);
  if (batch == 0 || n_sites == 0) return;
  const int64_t threads = K == Variate::Normal ? (n_sites + 1) / 2 : n_sites;
  const int64_t blocks = (threads + kBlock - 1) / kBlock;
  const dim3 grid(unsigned(blocks < 65535 ? blocks : 65535), unsigned(batch < 65535 ? batch : 65535));
  philox_kernel<K><<<grid, dim3(kBlock), 0, as_stream(stream)>>>(out, batch, n_sites, seed,
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

void synchronize_stream(int device, uintptr_t stream) {
  const int prev = current_device();
  if (prev != device) set_device(device);
  // 1 and 2 are cudaStreamLegacy and cudaStreamPerThread themselves (2: the calling thread's
  // default stream, as the interface means it).
  const cudaError_t err = cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream));
  if (prev != device) cudaSetDevice(prev);
  // A failure that is not sticky (an invalid handle) stays the runtime's last error, which the
  // next launch's check would report as its own: cleared here, as pointer_device does.
  if (err != cudaSuccess) cudaGetLastError();
  check(err, "cudaStreamSynchronize on the 'stream' of a __cuda_array_interface__");
}

// Acc: the actions' type, T or double (see cuda.hpp).
#define LFT_INSTANTIATE_STENCILS(T, Acc)                                                                \
  template void phi4<T, Acc>(const Lattice&, int64_t, const T*, Acc*, T*, const Phi4Site<T>&, void*);    \
  template void xy<T, Acc>(const Lattice&, int64_t, const T*, Acc*, T*, const XYSite<T>&, void*);        \
  template void oscillator<T, Acc>(int64_t, int64_t, const T*, Acc*, T*, const OscillatorSite<T>&,       \
                                   void*);                                                               \
  template void oscillator_fourier<T, Acc>(int64_t, int64_t, const T*, const T*, Acc*, T*, T*,           \
                                           const OscillatorSite<T>&, void*);
LFT_INSTANTIATE_STENCILS(float, float)
LFT_INSTANTIATE_STENCILS(float, double)
LFT_INSTANTIATE_STENCILS(double, double)
#undef LFT_INSTANTIATE_STENCILS

#define LFT_INSTANTIATE(T)                                                                         \
  template void philox_uniform<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t,   \
                                  void*);                                                         \
  template void philox_normal<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t,    \
                                 void*);
LFT_INSTANTIATE(float)
LFT_INSTANTIATE(double)
#undef LFT_INSTANTIATE

}  // namespace cuda
}  // namespace lftaccel
