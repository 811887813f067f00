// CUDA entry points of lftaccel. Same contract as cpu.hpp, with device
// pointers and the caller's stream (a cudaStream_t passed as void*; null is
// the legacy default stream). Nothing here allocates device memory. Each
// function throws std::runtime_error when a launch fails. Outputs must not
// overlap the inputs. Per-configuration actions are summed per block in double
// and combined with one atomic add per block in the action's type Acc, so the last bits
// of an action can differ from run to run (gradients are exact and deterministic). For a
// float field Acc may be double, and should be wherever the action matters to more than
// float's last digits: float atomics round the running total at its own magnitude, in an
// order that changes between runs, so where the terms cancel a float action is neither as
// accurate as its blocks' sums nor the same twice; in double the caller rounds once. (The
// Python layer passes a double action for float32 CUDA fields.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checks.hpp"
#include "lattice.hpp"
#include "mcmc.hpp"
#include "oscillator.hpp"
#include "phi4.hpp"
#include "xy.hpp"

namespace lftaccel {
namespace cuda {

template <class T, class Acc = T>
void phi4(const Lattice& lat, int64_t batch, const T* x, Out<Acc>* action, Out<T>* grad, const Phi4Site<T>& p,
          void* stream);
template <class T, class Acc = T>
void xy(const Lattice& lat, int64_t batch, const T* theta, Out<Acc>* action, Out<T>* grad, const XYSite<T>& p,
        void* stream);
template <class T, class Acc = T>
void oscillator(int64_t n_slices, int64_t batch, const T* x, Out<Acc>* action, Out<T>* grad,
                const OscillatorSite<T>& p, void* stream);
template <class T, class Acc = T>
void oscillator_fourier(int64_t n_slices, int64_t batch, const T* coeffs, const T* path, Out<Acc>* action,
                        Out<T>* grad_coeffs, Out<T>* grad_path, const OscillatorSite<T>& p, void* stream);

void philox_bits(uint32_t* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                 uint64_t step, uint32_t purpose, void* stream);
template <class T>
void philox_uniform(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                    uint64_t step, uint32_t purpose, void* stream);
template <class T>
void philox_normal(T* out, int64_t batch, int64_t n_sites, uint32_t seed, uint32_t chain_offset,
                   uint64_t step, uint32_t purpose, void* stream);

// Monte Carlo: same contracts as in cpu.hpp. energies / accepted are device buffers, and so is
// hmc_fourier's inv_mass, which is therefore not checked here (its entries must be > 0).
template <class T, class Site>
void hmc(const Lattice& lat, int64_t batch, T* x, T* work, double* energies, uint32_t* accepted,
         const Site& site, const HmcSettings<T>& settings, void* stream);
template <class T>
void hmc_fourier(int64_t n_slices, int64_t batch, T* coeffs, T* work, double* energies, uint32_t* accepted,
                 const OscillatorSite<T>& site, const T* basis, const T* inv_mass,
                 const HmcSettings<T>& settings, void* stream);
template <class T, class Site>
void langevin(const Lattice& lat, int64_t batch, T* x, T* work, const Site& site, T eps, int n_steps,
              uint32_t seed, uint32_t chain_offset, uint64_t step, void* stream);
template <class T, class Site>
void metropolis(const Lattice& lat, int64_t batch, T* x, double* accepted, const Site& site, T delta,
                int n_sweeps, uint32_t seed, uint32_t chain_offset, uint64_t step, void* stream);
template <class T>
void sde_step(int64_t batch, int64_t n_sites, T* x, const T* score, const SdeCoefficients& coef,
              uint32_t seed, uint32_t chain_offset, uint64_t step, void* stream);

// Number of visible devices; 0 (not an error) when there is no driver or GPU.
int device_count();
// "name (sm_XY, N MiB)" per visible device.
std::vector<std::string> device_names();
// Device owning a pointer, or -1 when it is not device memory.
int pointer_device(const void* ptr);
// Makes `device` current (the bindings restore the previous one after a call).
void set_device(int device);
int current_device();
// Blocks the host until the work queued on `stream` has finished, with `device` current while it
// waits. `stream` is a cudaStream_t, or 1 / 2 for the legacy / per-thread default stream: the
// values of the 'stream' key of __cuda_array_interface__ version 3.
void synchronize_stream(int device, uintptr_t stream);

}  // namespace cuda
}  // namespace lftaccel
