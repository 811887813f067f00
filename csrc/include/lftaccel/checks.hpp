// Argument checks of the entry points in cpu.hpp and cuda.hpp, run on the host when they are
// called. A lattice code calling them directly gets a std::invalid_argument naming the
// argument, where a null pointer, a negative batch or a hand-filled Lattice with a wrong
// volume crashed or wrote nothing. (The Python bindings check the same before they call.)
//
// The preconditions: batch >= 0 (0 does nothing, and its pointers may be null); the buffers
// an entry point reads or writes are not null when batch > 0; a Lattice is what make_lattice
// builds (rank 1..4, extents >= 1, row-major strides, volume their product, <= 2^40); the
// values of all chains, and the work buffers' multiples of them, fit 64-bit indices; and where
// Philox streams are drawn, at most 2^32 sites per chain (the site is one 32-bit counter word)
// and chain_offset + batch <= 2^32 (the chain is one key word: more would repeat streams).
// The parameters: finite; the oscillator's a = beta / N and m > 0, its potential bounded below
// (c4 >= 0, and c2 >= 0 where c4 = 0), and so phi^4's where it is sampled (lam >= 0); step sizes (Langevin eps, Metropolis delta) and the
// Fourier HMC's inverse masses > 0; an SDE step's coefficients finite. (HMC's eps is not
// checked: a non-finite one gives non-finite energies, which are rejected.) On the CPU,
// nthreads at most 4 x the processors (libgomp ends the process when it cannot create them).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "lattice.hpp"
#include "mcmc.hpp"
#include "oscillator.hpp"

namespace lftaccel {
namespace checks {

[[noreturn]] inline void fail(const std::string& what) { throw std::invalid_argument(what); }

inline void at_least(int64_t value, int64_t low, const char* name) {
  if (value < low) fail(std::string(name) + " must be >= " + std::to_string(low) + ", got " + std::to_string(value));
}

// A buffer the call reads or writes: not null unless there is nothing to touch.
inline void required(const void* ptr, const char* name, int64_t batch) {
  if (ptr == nullptr && batch > 0) fail(std::string(name) + " must not be null");
}

// batch chains of `sites` values: the largest buffer (an HMC work buffer, 5 x) stays far
// inside int64.
inline void batch(int64_t batch, int64_t sites) {
  at_least(batch, 0, "batch");
  if (sites > 0 && batch > (int64_t(1) << 56) / sites)
    fail("batch * sites per chain = " + std::to_string(batch) + " * " + std::to_string(sites) +
         " is too large (at most 2^56 values)");
}

inline void lattice(const Lattice& lat) {
  if (lat.ndim < 1 || lat.ndim > kMaxDims) fail("lattice rank (lat.ndim) must be 1..4, got " + std::to_string(lat.ndim));
  int64_t volume = 1;
  for (int mu = lat.ndim - 1; mu >= 0; --mu) {
    const std::string at = "[" + std::to_string(mu) + "]";
    if (lat.extent[mu] < 1) fail("lat.extent" + at + " must be >= 1, got " + std::to_string(lat.extent[mu]));
    if (lat.stride[mu] != volume)
      fail("lat.stride" + at + " must be " + std::to_string(volume) + " (row-major), got " +
           std::to_string(lat.stride[mu]) + ": build the Lattice with make_lattice");
    if (volume > (int64_t(1) << 40) / lat.extent[mu]) fail("lattice volume too large (at most 2^40 sites)");
    volume *= lat.extent[mu];
  }
  if (lat.volume != volume)
    fail("lat.volume must be the product of the extents, " + std::to_string(volume) + ", got " +
         std::to_string(lat.volume) + ": build the Lattice with make_lattice");
}

// The lattice and batch of a stencil call or sampler, and its field.
inline void field(const Lattice& lat, int64_t batch_, const void* x, const char* name) {
  lattice(lat);
  batch(batch_, lat.volume);
  required(x, name, batch_);
}

// Paths of n_slices time slices (the oscillator's 1D lattice).
inline void path(int64_t n_slices, int64_t batch_, const void* x, const char* name) {
  at_least(n_slices, 1, "n_slices");
  if (n_slices > (int64_t(1) << 40)) fail("n_slices too large (at most 2^40)");
  batch(batch_, n_slices);
  required(x, name, batch_);
}

inline void streams(int64_t batch, int64_t sites, uint32_t chain_offset) {
  if (sites > (int64_t(1) << 32))
    fail("at most 2^32 sites per chain take Philox streams (the site is a 32-bit counter word), got " +
         std::to_string(sites));
  if (int64_t(chain_offset) + batch > (int64_t(1) << 32))
    fail("chain_offset + batch must be <= 2^32 (chain streams would repeat), got " + std::to_string(chain_offset) +
         " + " + std::to_string(batch));
}

// The buffers and streams of an HMC trajectory (hmc, hmc_fourier) over `sites` per chain.
inline void hmc_buffers(int64_t batch, int64_t sites, const void* work, const void* energies, const void* accepted,
                        uint32_t chain_offset) {
  required(work, "work", batch);
  required(energies, "energies", batch);
  required(accepted, "accepted", batch);
  streams(batch, sites, chain_offset);
}

inline std::string real(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

inline void finite(double v, const char* name) {
  if (!std::isfinite(v)) fail(std::string(name) + " must be finite, got " + real(v));
}

inline void positive(double v, const char* name) {
  finite(v, name);
  if (!(v > 0)) fail(std::string(name) + " must be > 0, got " + real(v));
}

template <class T>
void site(const Phi4Site<T>& s) {
  finite(double(s.kappa), "kappa");
  finite(double(s.lam), "lam");
}

template <class T>
void site(const XYSite<T>& s) {
  finite(double(s.beta), "beta");
}

template <class T>
void site(const OscillatorSite<T>& s) {
  positive(double(s.a), "a (= beta / n_slices)");
  positive(double(s.m), "m");
  finite(double(s.c0), "c0");
  finite(double(s.c2), "c2");
  finite(double(s.c4), "c4");
  if (s.c4 < 0) fail("c4 must be >= 0 (a potential bounded below), got " + real(double(s.c4)));
  if (s.c4 == 0 && s.c2 < 0)
    fail("c2 must be >= 0 where c4 = 0 (a potential bounded below), got " + real(double(s.c2)));
}

inline void sde(const SdeCoefficients& c) {
  finite(c.drift_x, "coef.drift_x");
  finite(c.score, "coef.score");
  finite(c.noise, "coef.noise");
}

// A buffer an entry point reads or writes: `bytes` from ptr (null: not used).
struct Span {
  const void* ptr;
  int64_t bytes;
  const char* name;
  bool written;
};

// What a call writes overlaps nothing else it reads or writes: its loops are compiled on that
// assumption (a gradient written over the field it is computed from gave a wrong action, with
// no error).
inline void apart(std::initializer_list<Span> spans) {
  for (const Span* a = spans.begin(); a != spans.end(); ++a)
    for (const Span* b = a + 1; b != spans.end(); ++b) {
      if (!(a->written || b->written) || !a->ptr || !b->ptr || a->bytes <= 0 || b->bytes <= 0) continue;
      const auto a0 = reinterpret_cast<uintptr_t>(a->ptr), b0 = reinterpret_cast<uintptr_t>(b->ptr);
      if (a0 < b0 + uintptr_t(b->bytes) && b0 < a0 + uintptr_t(a->bytes))
        fail(std::string(a->name) + " and " + b->name + " must not overlap");
    }
}

// (saturating: a span that large overlaps everything it could, and is refused elsewhere)
template <class T>
int64_t bytes(int64_t n) {
  return n > INT64_MAX / int64_t(sizeof(T)) ? INT64_MAX : n * int64_t(sizeof(T));
}

// n^2 values, saturating likewise.
inline int64_t squared(int64_t n) { return n > (int64_t(1) << 31) ? INT64_MAX : n * n; }

// The samplers' phi^4 must be bounded below (lam >= 0); the action kernels take any lam.
template <class Site>
void sampled(const Site&) {}
template <class T>
void sampled(const Phi4Site<T>& s) {
  if (s.lam < 0) fail("lam must be >= 0 to sample (an action bounded below), got " + real(double(s.lam)));
}

// ---- Each entry point's checks, one function for its CPU and its CUDA version (the CPU's
// also check nthreads). ----

// A Philox fill of `sites` counters per chain.
inline void fill_call(const void* out, int64_t nb, int64_t sites, uint32_t chain_offset) {
  at_least(sites, 0, "n_sites");
  batch(nb, sites);
  required(out, "out", sites > 0 ? nb : 0);
  streams(nb, sites, chain_offset);
}

// A stencil kernel's parameters and outputs, after its field (or path) of `sites` per chain.
template <class T, class A, class Site>
void stencil_call(int64_t nb, int64_t sites, const T* x, const char* name, const A* action, const T* grad,
                  const Site& s) {
  site(s);
  apart({{x, bytes<T>(nb * sites), name, false}, {action, bytes<A>(nb), "action", true},
         {grad, bytes<T>(nb * sites), "grad", true}});
}

template <class T, class A, class Site>
void fourier_call(int64_t n, int64_t nb, const T* coeffs, const T* path_, const A* action, const T* grad_coeffs,
                  const T* grad_path, const Site& s) {
  path(n, nb, coeffs, "coeffs");
  required(path_, "path", nb);
  site(s);
  apart({{coeffs, bytes<T>(nb * n), "coeffs", false}, {path_, bytes<T>(nb * n), "path", false},
         {action, bytes<A>(nb), "action", true}, {grad_coeffs, bytes<T>(nb * n), "grad_coeffs", true},
         {grad_path, bytes<T>(nb * n), "grad_path", true}});
}

template <class T, class Site>
void hmc_call(const Lattice& lat, int64_t nb, const T* x, const T* work, const double* energies,
              const uint32_t* accepted, const Site& s, const HmcSettings<T>& hs) {
  field(lat, nb, x, "x");
  hmc_buffers(nb, lat.volume, work, energies, accepted, hs.chain_offset);
  site(s);
  sampled(s);
  apart({{x, bytes<T>(nb * lat.volume), "x", true}, {work, bytes<T>(3 * nb * lat.volume), "work", true},
         {energies, bytes<double>(4 * nb), "energies", true}, {accepted, bytes<uint32_t>(nb), "accepted", true}});
  if (hs.n_steps < 1) fail("n_steps must be >= 1");
}

// (inv_mass > 0 is checked by the CPU version alone: on a GPU it lies in device memory.)
template <class T, class Site>
void hmc_fourier_call(int64_t n, int64_t nb, const T* coeffs, const T* work, const double* energies,
                      const uint32_t* accepted, const Site& s, const T* basis, const T* inv_mass,
                      const HmcSettings<T>& hs) {
  path(n, nb, coeffs, "coeffs");
  hmc_buffers(nb, n, work, energies, accepted, hs.chain_offset);
  required(basis, "basis", nb);
  required(inv_mass, "inv_mass", nb);
  site(s);
  apart({{coeffs, bytes<T>(nb * n), "coeffs", true}, {work, bytes<T>(5 * nb * n), "work", true},
         {energies, bytes<double>(4 * nb), "energies", true}, {accepted, bytes<uint32_t>(nb), "accepted", true},
         {basis, bytes<T>(squared(n)), "basis", false}, {inv_mass, bytes<T>(n), "inv_mass", false}});
  if (hs.n_steps < 1) fail("n_steps must be >= 1");
}

template <class T, class Site>
void langevin_call(const Lattice& lat, int64_t nb, const T* x, const T* work, const Site& s, T eps, int n_steps,
                   uint32_t chain_offset) {
  field(lat, nb, x, "x");
  required(work, "work", nb);
  streams(nb, lat.volume, chain_offset);
  site(s);
  sampled(s);
  positive(double(eps), "eps");
  apart({{x, bytes<T>(nb * lat.volume), "x", true}, {work, bytes<T>(2 * nb * lat.volume), "work", true}});
  if (n_steps < 0) fail("n_steps must be >= 0");
}

template <class T, class Site>
void metropolis_call(const Lattice& lat, int64_t nb, const T* x, const double* accepted, const Site& s, T delta,
                     int n_sweeps, uint32_t chain_offset) {
  field(lat, nb, x, "x");
  required(accepted, "accepted", nb);
  at_least(n_sweeps, 0, "n_sweeps");
  streams(nb, lat.volume, chain_offset);
  site(s);
  sampled(s);
  positive(double(delta), "delta");
  apart({{x, bytes<T>(nb * lat.volume), "x", true}, {accepted, bytes<double>(nb), "accepted", true}});
  check_checkerboard(lat);
}

template <class T>
void sde_call(int64_t nb, int64_t n_sites, const T* x, const T* score, const SdeCoefficients& coef,
              uint32_t chain_offset) {
  at_least(n_sites, 1, "n_sites");
  batch(nb, n_sites);
  required(x, "x", nb);
  required(score, "score", nb);
  streams(nb, n_sites, chain_offset);
  sde(coef);
  apart({{x, bytes<T>(nb * n_sites), "x", true}, {score, bytes<T>(nb * n_sites), "score", false}});
}

// <= 0: the OpenMP default.
inline void threads(int nthreads, int max) {
  if (nthreads > max)
    fail("nthreads must be <= " + std::to_string(max) + " (4 x the processors; <= 0: the OpenMP default), got " +
         std::to_string(nthreads));
}

}  // namespace checks
}  // namespace lftaccel
