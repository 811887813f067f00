// Internal CPU entry points for the samplers: the theories' action per
// configuration in double (so that dH is never rounded to float32) and the force.
// Same contracts as the public kernels of cpu.hpp; action or grad may be null.
#pragma once

#include <cstdint>

#include "lftaccel/cpu.hpp"

namespace lftaccel {
namespace cpu {

template <class T>
void energy(const Phi4Site<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, Out<T>* grad,
            int nthreads);
template <class T>
void energy(const XYSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, Out<T>* grad,
            int nthreads);
// The oscillator on a 1D lattice of n_slices (lat.volume) sites.
template <class T>
void energy(const OscillatorSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action,
            Out<T>* grad, int nthreads);

}  // namespace cpu
}  // namespace lftaccel
