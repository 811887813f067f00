"""Mock spectral functions, their propagators by accurate quadrature, and noise.

Spectra (all functions of omega >= 0, combinable with + and scalar *):
  * Breit-Wigner  rho(w) = 4 A G w / ((M^2 + G^2 - w^2)^2 + 4 G^2 w^2), whose Kallen-Lehmann
    propagator has the closed form D(p) = A / (M^2 + (p + G)^2) (:func:`bw_propagator`);
  * Gaussian      rho(w) = A exp(-(w - mu)^2 / (2 s^2));
  * Lorentzian    rho(w) = A G / (pi ((w - M)^2 + G^2));
  * continuum     rho(w) = A (1 - exp(-(w - w0) / d)) W^2 / (w^2 + W^2) for w > w0: a smooth
    threshold at w0 that decays as 1/w^2 above W, so that D stays finite;
  * sums of these; with a negative coefficient, a spectral function that is not positive.

Mock propagators come from :func:`propagator`: adaptive quadrature (scipy.integrate.quad,
split at the peaks, to absolute/relative tolerance 1e-13) of the exact spectrum, never from
the Riemann sum a reconstruction uses on its grid.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import numpy as np
from scipy import integrate

from .kernels import Kernel

__all__ = ["Spectrum", "breit_wigner", "gaussian", "lorentzian", "continuum", "resonance_plus_continuum",
           "non_positive", "bw_propagator", "propagator", "relative_noise_sigma", "add_noise"]


@dataclasses.dataclass
class Spectrum:
    """A spectral function: a callable of omega, with the positions of its structures."""

    fn: Callable
    peaks: tuple = ()
    name: str = "spectrum"

    def __call__(self, omega):
        return self.fn(np.asarray(omega, dtype=np.float64))

    def __add__(self, other: "Spectrum") -> "Spectrum":
        f, g = self.fn, other.fn
        return Spectrum(lambda w: f(w) + g(w), self.peaks + other.peaks, f"{self.name} + {other.name}")

    def __rmul__(self, c: float) -> "Spectrum":
        f = self.fn
        return Spectrum(lambda w: c * f(w), self.peaks, f"{c:g} {self.name}")

    __mul__ = __rmul__


def _positive(name, v):
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    return float(v)


def _finite(name, v):
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return float(v)


def breit_wigner(A: float = 1.0, M: float = 2.0, G: float = 0.5) -> Spectrum:
    A, M, G = _finite("A", A), _positive("M", M), _positive("G", G)
    return Spectrum(lambda w: 4 * A * G * w / ((M * M + G * G - w * w) ** 2 + 4 * G * G * w * w), (M,),
                    f"BW(A={A:g}, M={M:g}, G={G:g})")


def bw_propagator(p, A: float = 1.0, M: float = 2.0, G: float = 0.5):
    """Closed form of the Kallen-Lehmann propagator of :func:`breit_wigner`."""
    p = np.asarray(p, dtype=np.float64)
    return A / (M * M + (p + G) ** 2)


def gaussian(A: float = 1.0, mu: float = 2.5, s: float = 0.4) -> Spectrum:
    A, mu, s = _finite("A", A), _finite("mu", mu), _positive("s", s)
    return Spectrum(lambda w: A * np.exp(-((w - mu) ** 2) / (2 * s * s)), (mu,), f"Gauss(mu={mu:g}, s={s:g})")


def lorentzian(A: float = 1.0, M: float = 4.0, G: float = 0.3) -> Spectrum:
    A, M, G = _finite("A", A), _finite("M", M), _positive("G", G)
    return Spectrum(lambda w: A * G / (np.pi * ((w - M) ** 2 + G * G)), (M,), f"Lorentz(M={M:g}, G={G:g})")


def continuum(A: float = 0.2, w0: float = 4.0, d: float = 1.0, W: float = 10.0) -> Spectrum:
    A, w0, d, W = _finite("A", A), _finite("w0", w0), _positive("d", d), _positive("W", W)

    def f(w):
        x = np.clip((w - w0) / d, 0.0, None)
        return np.where(w > w0, A * -np.expm1(-x) * W * W / (w * w + W * W), 0.0)

    return Spectrum(f, (w0,), f"continuum(w0={w0:g})")


def resonance_plus_continuum() -> Spectrum:
    """A narrow resonance below a threshold continuum, the shape of lattice QCD correlators."""
    s = breit_wigner(1.0, 1.5, 0.15) + continuum(0.15, 3.0, 1.0, 12.0)
    s.name = "resonance + continuum"
    return s


def non_positive() -> Spectrum:
    """A spectral function with a negative region (as for confined gluons)."""
    s = breit_wigner(1.0, 2.0, 0.5) + (-0.3) * gaussian(1.0, 4.5, 0.5)
    s.name = "BW - 0.3 Gauss (not positive)"
    return s


def propagator(spectrum, p, kernel="kallen-lehmann", *, omega_max: float = math.inf, tol: float = 1e-13):
    """D(p_i) = int_0^omega_max K(p_i, w) rho(w) dw by adaptive quadrature. An integral that
    quad cannot converge is an error, not a number: at p = 0 the Kallen-Lehmann kernel is
    1/(pi w), so D(0) diverges unless rho vanishes at w = 0 (a Lorentzian or Gaussian with
    rho(0) != 0 gave a finite value with only a warning)."""
    K = Kernel(kernel)
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    peaks = sorted(x for x in getattr(spectrum, "peaks", ()) if 0 < x < omega_max)
    cuts = [0.0]
    for x in peaks:
        cuts += [max(x - 2.0, cuts[-1]), x, x + 2.0]
    cuts = sorted(set(c for c in cuts if c < omega_max))
    out = np.empty(len(p))
    for i, pi in enumerate(p):
        def f(w, pi=pi):
            return float(K(np.array([pi]), np.array([w]))[0, 0] * spectrum(np.array([w]))[0])
        total = 0.0
        edges = cuts + [omega_max]
        for a, b in zip(edges[:-1], edges[1:]):
            if b <= a:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("error", integrate.IntegrationWarning)
                try:
                    val, _ = integrate.quad(f, a, b, epsabs=tol * 1e-3, epsrel=tol, limit=500)
                except integrate.IntegrationWarning as warning:
                    raise ValueError(f"the integral for p = {pi:g} does not converge on [{a:g}, {b:g}] "
                                     f"({str(warning).splitlines()[0].strip()}): is K(p, w) rho(w) "
                                     f"integrable there (rho(0) != 0 at p = 0)?") from None
            total += val
        out[i] = total
    return out


def relative_noise_sigma(D, p, eps: float):
    """The published protocol: sigma_i = eps D_i p_i / 0.8 (relative noise growing with p)."""
    return eps * np.abs(np.asarray(D, dtype=np.float64)) * np.asarray(p, dtype=np.float64) / 0.8


def add_noise(D, sigma, seed: int):
    """D + sigma * N(0, 1), from numpy's PCG64 seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.asarray(D, dtype=np.float64) + np.asarray(sigma, dtype=np.float64) * rng.standard_normal(len(D))
