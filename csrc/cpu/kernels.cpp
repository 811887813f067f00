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
#include "parallel.hpp"
#include "stencil.hpp"

namespace lftaccel {
namespace cpu {

template <class T>
void phi4(const Lattice& lat, int64_t batch, const T* x, Out<T>* action, Out<T>* grad, const Phi4Site<T>& p,
          int nthreads) {
  stencil(p, lat, batch, x, action, grad, nthreads);
}

template <class T>
void oscillator(int64_t n_slices, int64_t batch, const T* x, Out<T>* action, Out<T>* grad,
                const OscillatorSite<T>& p, int nthreads) {
  const Lattice lat = make_lattice(1, &n_slices);
  if (action && grad)
    stencil_run<1, true, true>(p, lat, batch, x, action, grad, nthreads);
  else if (action)
    stencil_run<1, true, false>(p, lat, batch, x, action, grad, nthreads);
  else if (grad)
    stencil_run<1, false, true>(p, lat, batch, x, action, grad, nthreads);
}

template <class T>
void oscillator_fourier(int64_t n_slices, int64_t batch, const T* coeffs, const T* path, Out<T>* action,
                        Out<T>* grad_coeffs, Out<T>* grad_path, const OscillatorSite<T>& p, int nthreads) {
  const int64_t N = n_slices;
  std::vector<T> eig(N);
  for (int64_t j = 0; j < N; ++j) eig[j] = matsubara_eigenvalue<T>(j, N);
  parallel_items(batch, batch * N, nthreads, [&](int64_t b) {
    const T* c = coeffs + b * N;
    const T* x = path + b * N;
    double acc = 0;
    if (grad_coeffs) {
      T* gc = grad_coeffs + b * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) gc[j] = p.mode_grad(c[j], eig[j]);
    }
    if (grad_path) {
      T* gx = grad_path + b * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) gx[n] = p.a * p.potential_grad(x[n]);
    }
    if (action) {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < N; ++j) acc += p.mode_action(c[j], eig[j]) + p.a * p.potential(x[j]);
      action[b] = T(acc);
    }
  });
}

// Philox fills: work items are (chain, chunk of sites), so a single long chain
// is spread over the threads too. Every value depends only on its counter.
template <class F>
void philox_items(int64_t batch, int64_t n_sites, int nthreads, const F& f) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n_sites + kChunk - 1) / kChunk;
  parallel_items(batch * chunks, batch * n_sites, nthreads, [&](int64_t it) {
    const int64_t b = it / chunks, s0 = (it % chunks) * kChunk;
    const int64_t s1 = std::min(n_sites, s0 + kChunk);
    for (int64_t s = s0; s < s1; ++s) f(b, s);
  });
}

void philox_bits(uint32_t* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                 uint64_t step, uint32_t purpose, int nthreads) {
  philox_items(batch, n_sites, nthreads, [&](int64_t b, int64_t s) {
    const Philox4x32 r = philox_block(seed, chain_offset + uint32_t(b), uint32_t(s), step, purpose);
    for (int w = 0; w < 4; ++w) out[(b * n_sites + s) * 4 + w] = r.v[w];
  });
}

template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, int nthreads) {
  philox_items(batch, n_sites, nthreads, [&](int64_t b, int64_t s) {
    out[b * n_sites + s] = PhiloxVariates<T>::uniform(
        philox_block(seed, chain_offset + uint32_t(b), uint32_t(s), step, purpose));
  });
}

template <class T>
void philox_normal(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, int nthreads) {
  philox_items(batch, n_sites, nthreads, [&](int64_t b, int64_t s) {
    out[b * n_sites + s] = PhiloxVariates<T>::normal(
        philox_block(seed, chain_offset + uint32_t(b), uint32_t(s), step, purpose));
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

int num_procs() {
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
#endif
}

#define LFT_INSTANTIATE(T)                                                                        \
  template void phi4<T>(const Lattice&, int64_t, const T*, T*, T*, const Phi4Site<T>&, int);     \
  template void oscillator<T>(int64_t, int64_t, const T*, T*, T*, const OscillatorSite<T>&, int); \
  template void oscillator_fourier<T>(int64_t, int64_t, const T*, const T*, T*, T*, T*,          \
                                      const OscillatorSite<T>&, int);                            \
  template void philox_uniform<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t,  \
                                  int);                                                          \
  template void philox_normal<T>(T*, int64_t, int64_t, uint32_t, uint32_t, uint64_t, uint32_t, int);
LFT_INSTANTIATE(float)
LFT_INSTANTIATE(double)
#undef LFT_INSTANTIATE

}  // namespace cpu
}  // namespace lftaccel
