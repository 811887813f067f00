// CPU instantiations of the linear stencils (phi^4, oscillator), the Matsubara
// oscillator action and the Philox fills.
#include <algorithm>
#include <cmath>
#include <thread>
#include <type_traits>
#include <vector>

#include "lftaccel/cpu.hpp"
#include "lftaccel/fourier.hpp"
#include "lftaccel/philox.hpp"
#include "energy.hpp"
#include "parallel.hpp"
#include "philox_lanes.hpp"
#include "stencil.hpp"
#include "vecmath.hpp"

namespace lftaccel {
namespace cpu {

template <class T>
void phi4(const Lattice& lat, int64_t batch, const T* x, Out<T>* action, Out<T>* grad, const Phi4Site<T>& p,
          int nthreads) {
  checks::field(lat, batch, x, "x");
  checks::stencil_call(batch, lat.volume, x, "x", action, grad, p);
  check_threads(nthreads);
  stencil(p, lat, batch, x, action, grad, nthreads);
}

template <class T>
void oscillator(int64_t n_slices, int64_t batch, const T* x, Out<T>* action, Out<T>* grad,
                const OscillatorSite<T>& p, int nthreads) {
  checks::path(n_slices, batch, x, "x");
  checks::stencil_call(batch, n_slices, x, "x", action, grad, p);
  check_threads(nthreads);
  const Lattice lat = make_lattice(1, &n_slices);
  stencil(p, lat, batch, x, action, grad, nthreads);
}

template <class T>
void energy(const Phi4Site<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, Out<T>* grad,
            int nthreads) {
  stencil(p, lat, batch, x, action, grad, nthreads);
}

template <class T>
void energy(const OscillatorSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action,
            Out<T>* grad, int nthreads) {
  stencil(p, lat, batch, x, action, grad, nthreads);
}

template <class T>
void kick_drift(const Phi4Site<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, T* mom,
                T* xn, T kick, T eps, int nthreads) {
  stencil_kick_drift(p, lat, batch, x, action, mom, xn, kick, eps, nthreads);
}

template <class T>
void kick_drift(const OscillatorSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action,
                T* mom, T* xn, T kick, T eps, int nthreads) {
  stencil_kick_drift(p, lat, batch, x, action, mom, xn, kick, eps, nthreads);
}

template <class T>
void oscillator_fourier(int64_t n_slices, int64_t batch, const T* coeffs, const T* path, Out<T>* action,
                        Out<T>* grad_coeffs, Out<T>* grad_path, const OscillatorSite<T>& p, int nthreads) {
  checks::fourier_call(n_slices, batch, coeffs, path, action, grad_coeffs, grad_path, p);
  check_threads(nthreads);
  const int64_t N = n_slices;
  std::vector<T> eig(N);
  for (int64_t j = 0; j < N; ++j) eig[j] = matsubara_eigenvalue<T>(j, N);
  parallel_items(batch, batch * N, nthreads, [&](int64_t b) {
    // Locals and restrict (the bindings check that outputs overlap nothing), so
    // no store can alias the parameters or the eigenvalue table.
    const OscillatorSite<T> q = p;
    const T* __restrict e = eig.data();
    const T* __restrict c = coeffs + b * N;
    const T* __restrict x = path + b * N;
    if (grad_coeffs) {
      T* __restrict gc = grad_coeffs + b * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) gc[j] = q.mode_grad(c[j], e[j]);
    }
    if (grad_path) {
      T* __restrict gx = grad_path + b * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) gx[n] = q.a * q.potential_grad(x[n]);
    }
    if (action) {
      // Blocks of 256 sum in T (float32 keeps its vector width), blocks in double.
      double acc = 0;
      for (int64_t j0 = 0; j0 < N; j0 += 256) {
        const int64_t j1 = std::min(N, j0 + 256);
        T block = 0;
#pragma omp simd reduction(+ : block)
        for (int64_t j = j0; j < j1; ++j) block += q.mode_action(c[j], e[j]) + q.a * q.potential(x[j]);
        acc += double(block);
      }
      action[b] = T(acc);
    }
  });
}

// The arguments of a Philox fill of `sites` counters per chain.
inline void check_fill(const void* out, int64_t batch, int64_t sites, uint32_t chain_offset, int nthreads) {
  check_threads(nthreads);
  checks::fill_call(out, batch, sites, chain_offset);
}

// Philox fills: work items are (chain, chunk of sites), so a single long chain
// is spread over the threads too. Every value depends only on its counter.
template <class F>
void philox_chunks(int64_t batch, int64_t n_sites, int nthreads, const F& f) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n_sites + kChunk - 1) / kChunk;
  // a Philox block per site costs what ~4 sites of a stencil pass do
  parallel_items(batch * chunks, 4 * batch * n_sites, nthreads, [&](int64_t it) {
    const int64_t b = it / chunks, s0 = (it % chunks) * kChunk;
    f(b, s0, std::min(n_sites, s0 + kChunk));
  });
}

void philox_bits(uint32_t* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                 uint64_t step, uint32_t purpose, int nthreads) {
  check_fill(out, batch, n_sites, chain_offset, nthreads);
  philox_chunks(batch, n_sites, nthreads, [&](int64_t b, int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const Philox4x32 r = philox_block(seed, chain_offset + uint32_t(b), uint32_t(s), step, purpose);
      for (int w = 0; w < 4; ++w) out[(b * n_sites + s) * 4 + w] = r.v[w];
    }
  });
}

template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, int nthreads);

// The two uniforms PhiloxVariates<T>::normal_pair feeds to Box-Muller.
inline void box_muller_uniforms(const PhiloxLanes& r, int64_t n, float* u1, float* u2) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    u1[k] = uniform_float(r.w0[k]);
    u2[k] = uniform_float(r.w1[k]);
  }
}
inline void box_muller_uniforms(const PhiloxLanes& r, int64_t n, double* u1, double* u2) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    u1[k] = uniform_double(r.w0[k], r.w1[k]);
    u2[k] = uniform_double(r.w2[k], r.w3[k]);
  }
}

// Same variates as philox_normal_at (sites 2j, 2j + 1 take z0, z1 of block j),
// vectorised: blocks of Philox lanes, then uniforms, then log/sqrt/sincos from
// vecmath.hpp in T. float32 normals are computed in float, as the GPU computes them
// (twice the lanes of double: 2.15 -> 1.13 ns per normal on one core), within 4 float ulps
// of the exact value (in double and rounded they were within 0.5). The GPU and the torch
// twin round 2 pi u to float before cos and sin, so they differ from these by up to 2e-6.
template <class T>
void philox_normal(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, int nthreads, uint32_t site_offset) {
  checks::at_least(n_sites, 0, "n_sites");
  check_fill(out, batch, int64_t(site_offset) + n_sites, chain_offset, nthreads);
  philox_chunks(batch, n_sites, nthreads, [&](int64_t b, int64_t s0, int64_t s1) {
    PhiloxLanes r;
    T u1[kLanes], u2[kLanes];
    T z[2 * kLanes];
    const uint32_t chain = chain_offset + uint32_t(b);
    T* o = out + b * n_sites;
    // Absolute sites [a, e) of this chunk, in pieces of whole blocks.
    const int64_t a = int64_t(site_offset) + s0, e = int64_t(site_offset) + s1;
    for (int64_t j0 = a >> 1; 2 * j0 < e; j0 += kLanes) {
      const int64_t nb = std::min(kLanes, ((e + 1) >> 1) - j0);
      r.fill(seed, chain, uint32_t(j0), nb, step, purpose);
      box_muller_uniforms(r, nb, u1, u2);
      const int64_t first = std::max(a, 2 * j0), last = std::min(e, 2 * (j0 + nb));
      // Both normals of every block wanted: written in place, not through z.
      const bool whole = first == 2 * j0 && last == 2 * (j0 + nb);
      T* __restrict dst = whole ? o + (first - int64_t(site_offset)) : z;
#pragma omp simd
      for (int64_t k = 0; k < nb; ++k) {
        T sn, cs;
        sincos_2pi(u2[k], sn, cs);
        const T rad = std::sqrt(T(-2) * log_positive(u1[k]));
        dst[2 * k] = rad * cs;
        dst[2 * k + 1] = rad * sn;
      }
      if (!whole)
        for (int64_t site = first; site < last; ++site) o[site - int64_t(site_offset)] = z[site - 2 * j0];
    }
  });
}

template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, int nthreads) {
  check_fill(out, batch, n_sites, chain_offset, nthreads);
  philox_chunks(batch, n_sites, nthreads, [&](int64_t b, int64_t s0, int64_t s1) {
    PhiloxLanes r;
    const uint32_t chain = chain_offset + uint32_t(b);
    for (int64_t s = s0; s < s1; s += kLanes) {
      const int64_t n = std::min(kLanes, s1 - s);
      r.fill(seed, chain, uint32_t(s), n, step, purpose);
      T* o = out + b * n_sites + s;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) {
        const Philox4x32 blk{{r.w0[k], r.w1[k], r.w2[k], r.w3[k]}};
        o[k] = PhiloxVariates<T>::uniform(blk);
      }
    }
  });
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int max_threads() { return resolve_threads(0); }

int max_nthreads() {
  static const int max = 4 * std::max(1, num_procs());  // once: the processor count is a system call
  return max;
}

int num_procs() {
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
#endif
}

#define LFT_INSTANTIATE(T)                                                                        \
  template void energy<T>(const Phi4Site<T>&, const Lattice&, int64_t, const T*, double*, T*, int); \
  template void energy<T>(const OscillatorSite<T>&, const Lattice&, int64_t, const T*, double*, T*, int); \
  template void kick_drift<T>(const Phi4Site<T>&, const Lattice&, int64_t, const T*, double*, T*, T*, T, T, \
                              int);                                                               \
  template void kick_drift<T>(const OscillatorSite<T>&, const Lattice&, int64_t, const T*, double*, T*, T*, \
                              T, T, int);                                                         \
  template void phi4<T>(const Lattice&, int64_t, const T*, T*, T*, const Phi4Site<T>&, int);     \
  template void oscillator<T>(int64_t, int64_t, const T*, T*, T*, const OscillatorSite<T>&, int); \
  template void oscillator_fourier<T>(int64_t, int64_t, const T*, const T*, T*, T*, T*,          \
                                      const OscillatorSite<T>&, int);                            \
  template void philox_uniform<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t,  \
                                  int);                                                          \
  template void philox_normal<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t, int, \
                                 uint32_t);
LFT_INSTANTIATE(float)
LFT_INSTANTIATE(double)
#undef LFT_INSTANTIATE

}  // namespace cpu
}  // namespace lftaccel
