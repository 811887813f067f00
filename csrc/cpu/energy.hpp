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

// A leapfrog step from the force, fused into one pass over the lattice (stencil_kick_drift,
// stencil.hpp): p <- p - kick dS/dx(x), then, where xn is not null, xn <- x + eps p, and the
// action of x in double where action is not null. xn overlaps neither x nor p. The theories
// that have it say so in kHasKickDrift.
template <class T>
void kick_drift(const Phi4Site<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, T* mom,
                T* xn, T kick, T eps, int nthreads);
template <class T>
void kick_drift(const XYSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, T* mom,
                T* xn, T kick, T eps, int nthreads);
template <class T>
void kick_drift(const OscillatorSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action,
                T* mom, T* xn, T kick, T eps, int nthreads);

template <class Site>
constexpr bool kHasKickDrift = false;
template <class T>
constexpr bool kHasKickDrift<Phi4Site<T>> = true;
template <class T>
constexpr bool kHasKickDrift<OscillatorSite<T>> = true;
template <class T>
constexpr bool kHasKickDrift<XYSite<T>> = true;

}  // namespace cpu
}  // namespace lftaccel
