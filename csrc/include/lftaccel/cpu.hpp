// CPU entry points of lftaccel, callable from any C++ lattice code without Python.
//
// Memory is the caller's: x holds batch * volume values in (batch, *shape)
// row-major order; `action` (batch values) and `grad` (like x) may each be
// null to skip that output. Outputs must not overlap x or each other (the loops
// are compiled on that assumption; checked). Results do not depend on the thread count:
// per-configuration sums are reduced over fixed chunks in a fixed order (bitwise, for one
// build: other compiler flags, such as -march=native, may round differently).
// nthreads <= 0 means the OpenMP default (one thread without OpenMP); at most 4 x the
// processors. T is float or double: the library holds those instantiations only.
// Every entry point checks its arguments first, parameters included (checks.hpp states the
// preconditions), and throws std::invalid_argument naming the one it refuses.
#pragma once

#include <cstdint>

#include "checks.hpp"
#include "lattice.hpp"
#include "mcmc.hpp"
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

// Philox streams over a (batch, n_sites) block: chain = chain_offset + b, site = s
// (n_sites <= 2^32, chain_offset + batch <= 2^32).
void philox_bits(uint32_t* out /* batch*n_sites*4 */, int64_t batch, int64_t n_sites, uint32_t seed,
                 uint32_t chain_offset, uint64_t step, uint32_t purpose, int nthreads = 0);
template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, int nthreads = 0);
// site_offset shifts the site counter: out[b, s] is the variate of site site_offset + s.
template <class T>
void philox_normal(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, int nthreads = 0, uint32_t site_offset = 0);

// ---- Monte Carlo (conventions and Philox streams: mcmc.hpp) ----

// One HMC trajectory of every chain, updating x in place. Site is Phi4Site,
// XYSite or OscillatorSite (a 1D lattice of n_slices). work holds 3 * batch *
// volume values (momenta, trial field, scratch); with settings.refresh false the
// momenta are read from its first third. energies (4 * batch doubles) is a (4, batch)
// row-major array: energies[k * batch + b] for k = 0..3 holds chain b's S_old, K_old, S_new,
// K_new, K = sum p^2 / 2 (in double, whatever T); accepted[b] is 1 when
// chain b moved. A non-finite energy is rejected, never propagated. Accepted
// XY angles are wrapped into [-pi, pi).
template <class T, class Site>
void hmc(const Lattice& lat, int64_t batch, T* x, T* work, double* energies, uint32_t* accepted,
         const Site& site, const HmcSettings<T>& settings, int nthreads = 0);

// The oscillator's HMC in Fourier coordinates c (x = basis c, basis (n, n)
// row-major, row = slice). Momentum of mode j has variance 1 / inv_mass[j] (> 0), and
// K = sum_j inv_mass[j] p_j^2 / 2. work holds 5 * batch * n_slices values; otherwise as hmc.
template <class T>
void hmc_fourier(int64_t n_slices, int64_t batch, T* coeffs, T* work, double* energies, uint32_t* accepted,
                 const OscillatorSite<T>& site, const T* basis, const T* inv_mass,
                 const HmcSettings<T>& settings, int nthreads = 0);

// n_steps Langevin steps x <- x - eps dS/dx + sqrt(2 eps) eta, in place; step
// s of the call uses Philox step `step + s`. work: 2 * batch * volume values.
template <class T, class Site>
void langevin(const Lattice& lat, int64_t batch, T* x, T* work, const Site& site, T eps, int n_steps,
              uint32_t seed, uint32_t chain_offset, uint64_t step, int nthreads = 0);

// n_sweeps checkerboard Metropolis sweeps (Phi4Site or XYSite; every extent
// even), proposals x + delta (2u - 1). accepted[b] = accepted site updates of chain b.
template <class T, class Site>
void metropolis(const Lattice& lat, int64_t batch, T* x, double* accepted, const Site& site, T delta,
                int n_sweeps, uint32_t seed, uint32_t chain_offset, uint64_t step, int nthreads = 0);

// One reverse-SDE Euler-Maruyama step on x (batch, n_sites) in place, given the
// score; coefficients from sde_ve / sde_vp (mcmc.hpp).
template <class T>
void sde_step(int64_t batch, int64_t n_sites, T* x, const T* score, const SdeCoefficients& coef,
              uint32_t seed, uint32_t chain_offset, uint64_t step, int nthreads = 0);

bool has_openmp();
int max_threads();
int num_procs();  // processors available to this process
// The most threads an entry point takes, 4 x num_procs(): more would only oversubscribe the
// machine, and libgomp ends the process when it cannot create them (50000 did).
int max_nthreads();

}  // namespace cpu
}  // namespace lftaccel
