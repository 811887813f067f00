// CPU entry points of lftaccel, callable from any C++ lattice code without Python.
//
// Memory is the caller's: x holds batch * volume values in (batch, *shape)
// row-major order; `action` (batch values) and `grad` (like x) may each be
// null to skip that output. Outputs must not overlap x or each other (the loops
// are compiled on that assumption; the Python bindings check it). Results do not depend on the thread count:
// per-configuration sums are reduced over fixed chunks in a fixed order.
// nthreads <= 0 means the OpenMP default (one thread without OpenMP).
#pragma once

#include <cstdint>

#include "lattice.hpp"
#include "oscillator.hpp"
#include "phi4.hpp"
#include "xy.hpp"

namespace lftaccel {

namespace cpu {

template <class T>
void phi4(const Lattice& lat, int64_t batch, const T* x, Out<T>* action, Out<T>* grad, const Phi4Site<T>& p,
          int nthreads = 0);

template <class T>
void xy(const Lattice& lat, int64_t batch, const T* theta, Out<T>* action, Out<T>* grad, const XYSite<T>& p,
        int nthreads = 0);

// Paths of n_slices time slices; p.a must equal beta / n_slices.
template <class T>
void oscillator(int64_t n_slices, int64_t batch, const T* x, Out<T>* action, Out<T>* grad,
                const OscillatorSite<T>& p, int nthreads = 0);

// Matsubara form: `coeffs` are the real Fourier coefficients of `path` (see
// fourier.hpp); the transforms are the caller's. Outputs: the action, the
// kinetic gradient in coefficient space, and the potential gradient in path
// space (dS/dc = grad_coeffs + F grad_path).
template <class T>
void oscillator_fourier(int64_t n_slices, int64_t batch, const T* coeffs, const T* path, Out<T>* action,
                        Out<T>* grad_coeffs, Out<T>* grad_path, const OscillatorSite<T>& p, int nthreads = 0);

// Philox streams over a (batch, n_sites) block: chain = chain_offset + b, site = s.
void philox_bits(uint32_t* out /* batch*n_sites*4 */, int64_t batch, int64_t n_sites, uint32_t seed,
                 uint32_t chain_offset, uint64_t step, uint32_t purpose, int nthreads = 0);
template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, int nthreads = 0);
template <class T>
void philox_normal(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, int nthreads = 0);

bool has_openmp();
int max_threads();
int num_procs();  // processors available to this process

}  // namespace cpu
}  // namespace lftaccel
