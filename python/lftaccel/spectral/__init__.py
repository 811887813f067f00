"""Spectral reconstruction: rho(omega) from a noisy Euclidean propagator
D(p) = int_0^inf K(p, w) rho(w) dw (Kallen-Lehmann by default).

    from lftaccel.spectral import reconstruct
    res = reconstruct(p, D, sigma, omega, method="tikhonov")
    res.rho, res.band, res.chi2, res.diagnostics    # band: None where the method has none

Methods: 'tsvd' (discrepancy-principle rank), 'tikhonov' (identity or second derivative,
positivity by default, lambda by discrepancy or GCV), 'mem' (maximum entropy, flat or user
default model, alpha at the chi^2 kink by default or marginalised as Bryan does), 'nn' and 'p2p' (neural
representations of rho fitted by automatic differentiation, torch float64; see nn.py).
``read_propagator`` reads the command's input files (data.py).
numpy/scipy and torch only: nothing here calls the compiled kernels.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import classical, kernels, mem, mock, nn
from .data import covariance_of_mean, read_propagator
from .kernels import Kernel, finite_temperature, kallen_lehmann, singular_values
from .problem import CHI2_MISFIT, MisfitWarning, Problem, Reconstruction

__all__ = ["reconstruct", "Problem", "Reconstruction", "Kernel", "kallen_lehmann", "finite_temperature",
           "singular_values", "read_propagator", "covariance_of_mean", "kernels", "mock", "classical", "mem",
           "nn", "METHODS", "MisfitWarning", "CHI2_MISFIT"]

METHODS = {"tsvd": classical.tsvd, "tikhonov": classical.tikhonov, "mem": mem.maxent, "nn": nn.nn,
           "p2p": nn.p2p}


def reconstruct(p, D, sigma=None, omega=None, method: str = "tikhonov", *, kernel="kallen-lehmann", cov=None,
                quadrature: str = "linear", **options) -> Reconstruction:
    """Reconstruct rho on the grid ``omega`` (default linspace(0.04, 20, 500)) from data
    (p, D) with errors ``sigma`` (one per point, or one for all; or a covariance ``cov``).
    ``quadrature`` is the forward map's ('linear': accurate, default; 'riemann': the published
    sum). ``options`` go to the method. Every method's result with chi^2/N_p above CHI2_MISFIT
    (4) warns (MisfitWarning): it does not reproduce the data within their errors (a grid that
    does not cover the spectrum, data inconsistent with the kernel, errors too small, or a fit
    stopped too early)."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
    prob = Problem.build(p, D, sigma, omega, kernel, cov, quadrature)
    res = fn(prob, **options)
    if not (np.all(np.isfinite(res.rho)) and np.isfinite(res.chi2)):
        raise ValueError(f"method {method!r} gave a non-finite rho or chi^2 on these data and this grid "
                         f"(omega {prob.omega[0]:g} .. {prob.omega[-1]:g})")
    if res.chi2_per_point > CHI2_MISFIT:
        warnings.warn(f"{method}: chi^2/N_p = {res.chi2_per_point:.3g}: rho does not reproduce the data within "
                      f"their errors (a fit that does gives about 1); check that the omega grid ({prob.omega[0]:g} .. "
                      f"{prob.omega[-1]:g}) covers the spectrum, and the data", MisfitWarning, stacklevel=2)
    return res
