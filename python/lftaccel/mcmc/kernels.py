"""Validated calls into the fused Monte Carlo kernels of ``lftaccel._C``.

Every function updates its field **in place** and crosses into C++ once: a whole HMC
trajectory, k Langevin steps, k Metropolis sweeps, one reverse-SDE step. Work
buffers are the caller's (pass them to avoid an allocation per call). Fields may
be torch tensors (CPU or CUDA) or numpy arrays.

Random numbers come from Philox keyed by (seed, chain_offset + b) and countered by
(site, step, purpose) (see ``csrc/include/lftaccel/mcmc.hpp``): chain b's random numbers
depend only on the seed, its index and the step counters, never on threads or device. On the
CPU its whole history is bitwise independent of the thread count; on a GPU, energies summed
by atomic adds can differ in their last bits from run to run, which can (rarely) flip an accept
decision that sits that close to its threshold.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import _C
from .._kernels import _mark_written, _new, _nthreads, _raw, _stream, _written, check_array, check_param
from ..fourier import from_fourier
from ..theories import XY, Oscillator, Phi4

__all__ = [
    "hmc_trajectory", "hmc_fourier_trajectory", "langevin_steps", "metropolis_sweeps", "sde_step",
    "fourier_basis", "fourier_inverse_masses", "fourier_mode_frequency",
]


def _theory_args(theory):
    if not isinstance(theory, (Phi4, XY, Oscillator)):
        raise TypeError(f"theory must be a Phi4, XY or Oscillator, got {type(theory).__name__}")
    return theory.kernel, [float(v) for v in theory._params().values()]


_INT_LIMITS = {"seed": 2**32 - 1, "chain_offset": 2**32 - 1, "step": 2**62, "n_steps": 2**24, "n_sweeps": 2**24}


def _int(value, name, low=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    high = _INT_LIMITS.get(name, 2**62)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_inv_mass(inv_mass, n):
    t = torch.as_tensor(inv_mass)
    if t.shape != (n,):
        raise ValueError(f"inv_mass must have shape ({n},), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError("inv_mass must be finite and > 0 (the inverse HMC mass of each mode)")


def _check_field(theory, x):
    return check_array(x, "x", min_dims=theory.min_dims, max_dims=theory.max_dims)


def hmc_trajectory(theory, x, *, eps: float, n_steps: int, seed: int, step: int, chain_offset: int = 0,
                   work=None, energies=None, accepted=None, refresh: bool = True, accept_reject: bool = True):
    """One HMC trajectory (momentum refresh, ``n_steps`` leapfrog steps of size ``eps``,
    Metropolis test) for every chain of ``x``, in place.

    Returns ``(energies, accepted)``: energies (4, batch) float64 holds
    (S_old, K_old, S_new, K_new), so dH = energies[2] + energies[3] - energies[0] - energies[1];
    accepted (batch,) uint32 is 1 where the chain moved. A non-finite dH is rejected.
    ``work`` (3, *x.shape) keeps (momenta, trial field, scratch) after the call; with
    ``refresh=False`` the momenta are read from ``work[0]`` instead of drawn.
    """
    kind, params = _theory_args(theory)
    _check_field(theory, x)
    work = _new(x, (3, *x.shape)) if work is None else work
    energies = _new(x, (4, x.shape[0]), np.float64) if energies is None else energies
    accepted = _new(x, (x.shape[0],), np.uint32) if accepted is None else accepted
    written = _written((x, "x"), (work, "work"), (energies, "energies"), (accepted, "accepted"))
    _C.hmc(_raw(x, "x"), _raw(work, "work"), _raw(energies, "energies"), _raw(accepted, "accepted"), kind,
           params, check_param(eps, "eps"), _int(n_steps, "n_steps", 1), _int(seed, "seed"), _int(step, "step"),
           _int(chain_offset, "chain_offset"), bool(refresh), bool(accept_reject), _nthreads(), _stream(x))
    _mark_written(written)
    return energies, accepted


def fourier_basis(n: int, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The (n, n) matrix B with path = B @ coefficients (row = time slice), see lftaccel.fourier."""
    n = _int(n, "n", 1)
    return from_fourier(torch.eye(n, dtype=dtype, device=device)).T.contiguous()


def _check_basis(basis, n, dtype):
    b = torch.as_tensor(basis) if isinstance(basis, (torch.Tensor, np.ndarray)) else None
    if b is None or tuple(b.shape) != (n, n):
        got = tuple(b.shape) if b is not None else type(basis).__name__
        raise ValueError(f"basis must be fourier_basis({n}), an ({n}, {n}) matrix, got {got}")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    if not torch.allclose(b.to(torch.float64), fourier_basis(n, device=b.device), rtol=0, atol=tol):
        raise ValueError(f"basis must be fourier_basis({n}) (the kernel's kinetic term is the Matsubara one)")


def fourier_inverse_masses(theory: Oscillator, n: int, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Fourier acceleration: inverse HMC masses 1/M_j = h_0 / h_j with h_j = m l_j / a + a w2,
    the stiffness of mode j (l_j the Laplacian eigenvalue, w2 the potential's curvature at its
    minimum: 2 c2, or -4 c2 for a double well). Every mode then oscillates at the zero mode's
    frequency, so one step size suits them all."""
    h = _mode_stiffness(theory, n)
    return (h[0] / h).to(dtype=dtype, device=device)


def fourier_mode_frequency(theory: Oscillator, n: int) -> float:
    """The frequency sqrt(h_0) at which every mode oscillates in the molecular dynamics under
    :func:`fourier_inverse_masses` (mode j: stiffness h_j, mass h_j / h_0), in the potential's
    quadratic approximation. A trajectory of a quarter period, pi / (2 sqrt(h_0)), takes mode j
    from (c, p) to (p / (M_j omega), -M_j omega c): its new position is set by the fresh
    momentum alone, and the autocorrelation of c^2 per trajectory, cos^2(omega tau), vanishes.
    At a half or a whole period it is 1: c^2 returns where it started (up to the leapfrog
    error)."""
    return math.sqrt(float(_mode_stiffness(theory, n)[0]))


def _mode_stiffness(theory, n):
    """h_j = m l_j / a + a w2 of the Matsubara modes j (float64, CPU)."""
    if not isinstance(theory, Oscillator):
        raise TypeError(f"theory must be an Oscillator, got {type(theory).__name__}")
    n = _int(n, "n", 1)
    a = theory.spacing(n)
    w2 = 2 * theory.c2 if theory.c2 > 0 else (-4 * theory.c2 if theory.c2 < 0 else 1.0 / theory.beta**2)
    lap = 4 * torch.sin(math.pi * ((torch.arange(n, dtype=torch.float64) + 1) // 2) / n) ** 2
    return theory.m * lap / a + a * w2


def hmc_fourier_trajectory(theory: Oscillator, coeffs, *, eps: float, n_steps: int, seed: int, step: int,
                           basis=None, inv_mass=None, chain_offset: int = 0, work=None, energies=None,
                           accepted=None, refresh: bool = True, accept_reject: bool = True,
                           check_masses: bool = True):
    """One HMC trajectory of the oscillator in Fourier coordinates (coefficients (batch, N)
    of lftaccel.fourier), in place. ``inv_mass`` defaults to ones (plain HMC in rotated
    coordinates); pass :func:`fourier_inverse_masses` for Fourier acceleration (checked to be
    finite and positive unless ``check_masses=False``, for callers that checked them once).
    ``basis`` defaults to :func:`fourier_basis` (n); one passed in must be that matrix (the
    kernel's kinetic term is the Matsubara one: another basis would sample another action),
    which is checked unless ``check_masses=False``.
    ``work`` is (5, batch, N). Returns (energies, accepted) as :func:`hmc_trajectory`."""
    if not isinstance(theory, Oscillator):
        raise TypeError(f"theory must be an Oscillator, got {type(theory).__name__}")
    check_array(coeffs, "coeffs", min_dims=1, max_dims=1)
    n = coeffs.shape[1]
    is_torch = isinstance(coeffs, torch.Tensor)
    dt = coeffs.dtype if is_torch else torch.from_numpy(np.empty(0, coeffs.dtype)).dtype
    dev = coeffs.device if is_torch else "cpu"
    if basis is None:
        basis = fourier_basis(n, dtype=dt, device=dev)
        basis = basis if is_torch else basis.numpy()
    elif check_masses:
        _check_basis(basis, n, dt)
    if inv_mass is None:
        inv_mass = torch.ones(n, dtype=dt, device=dev)
        inv_mass = inv_mass if is_torch else inv_mass.numpy()
    elif check_masses:
        _check_inv_mass(inv_mass, n)
    work = _new(coeffs, (5, *coeffs.shape)) if work is None else work
    energies = _new(coeffs, (4, coeffs.shape[0]), np.float64) if energies is None else energies
    accepted = _new(coeffs, (coeffs.shape[0],), np.uint32) if accepted is None else accepted
    written = _written((coeffs, "coeffs"), (work, "work"), (energies, "energies"), (accepted, "accepted"))
    _C.hmc_fourier(_raw(coeffs, "coeffs"), _raw(work, "work"), _raw(energies, "energies"),
                   _raw(accepted, "accepted"), _raw(basis, "basis"), _raw(inv_mass, "inv_mass"),
                   [float(v) for v in theory._params().values()], check_param(eps, "eps"),
                   _int(n_steps, "n_steps", 1), _int(seed, "seed"), _int(step, "step"),
                   _int(chain_offset, "chain_offset"), bool(refresh), bool(accept_reject), _nthreads(),
                   _stream(coeffs))
    _mark_written(written)
    return energies, accepted


def langevin_steps(theory, x, *, eps: float, n_steps: int, seed: int, step: int, chain_offset: int = 0,
                   work=None):
    """``n_steps`` steps of x <- x - eps dS/dx + sqrt(2 eps) eta, in place (step s of the
    call draws Philox step ``step + s``). The equilibrium is exp(-S) up to O(eps)."""
    kind, params = _theory_args(theory)
    _check_field(theory, x)
    work = _new(x, (2, *x.shape)) if work is None else work
    written = _written((x, "x"), (work, "work"))
    _C.langevin(_raw(x, "x"), _raw(work, "work"), kind, params, check_param(eps, "eps"),
                _int(n_steps, "n_steps"), _int(seed, "seed"), _int(step, "step"),
                _int(chain_offset, "chain_offset"), _nthreads(), _stream(x))
    _mark_written(written)
    return x


def metropolis_sweeps(theory, x, *, delta: float, n_sweeps: int, seed: int, step: int, chain_offset: int = 0,
                      accepted=None):
    """``n_sweeps`` checkerboard sweeps of local Metropolis updates x -> x + delta (2u - 1)
    (phi^4 or XY; even extents), in place. Returns the accepted site updates per chain
    (float64, (batch,)); divide by n_sweeps * volume for the rate. ``step`` counts sweeps:
    sweep s of the call draws the Philox step of sweep ``step + s``, so the next call of a
    chain continues at ``step + n_sweeps`` (advancing by 1 would reuse n_sweeps - 1 sweeps'
    random numbers)."""
    kind, params = _theory_args(theory)
    _check_field(theory, x)
    accepted = _new(x, (x.shape[0],), np.float64) if accepted is None else accepted
    written = _written((x, "x"), (accepted, "accepted"))
    _C.metropolis(_raw(x, "x"), _raw(accepted, "accepted"), kind, params, check_param(delta, "delta"),
                  _int(n_sweeps, "n_sweeps"), _int(seed, "seed"), _int(step, "step"),
                  _int(chain_offset, "chain_offset"), _nthreads(), _stream(x))
    _mark_written(written)
    return accepted


def sde_step(x, score, *, t: float, dt: float, seed: int, step: int, schedule: str = "ve", sigma: float = 25.0,
             beta_min: float = 0.1, beta_max: float = 20.0, noise: bool = True, chain_offset: int = 0):
    """One reverse-time Euler-Maruyama step of a diffusion model, from t to t - dt, in place.

    The forward SDE is dx = f dt + g dW on t in [0, 1]; its reverse integrated backwards is
        x <- x - f(x, t) dt + g(t)^2 score dt + g(t) sqrt(dt) z,
    with score = grad_x log p_t(x) (from the network).
      * ``schedule='ve'``: f = 0, g(t) = sigma^t (variance exploding);
      * ``schedule='vp'``: f = -beta(t) x / 2, g = sqrt(beta(t)),
        beta(t) = beta_min + t (beta_max - beta_min) (variance preserving).
    ``noise=False`` drops the z term (the usual last, denoising step). z is Philox
    (seed, chain_offset + b, site, step, purpose 5): pass a different ``step`` (the step
    index) at every step, or the noise repeats. Requires 0 < dt <= t. The step takes any
    sigma > 0 and beta_min, beta_max > 0, as the formulas do; the schedule classes of
    ``lftaccel.models.diffusion`` (VESDE, VPSDE) further require sigma > 1 and beta_max >=
    beta_min, for a forward process that noises the data. A score with a non-finite value is
    refused (a network that blew up would otherwise fill x with NaN silently); the check is a
    reduction over the score, and on a GPU a synchronisation, per call.
    """
    if schedule == "ve":
        params = [check_param(sigma, "sigma")]
    elif schedule == "vp":
        params = [check_param(beta_min, "beta_min"), check_param(beta_max, "beta_max")]
    else:
        raise ValueError(f"schedule must be 've' or 'vp', got {schedule!r}")
    if isinstance(x, torch.Tensor) != isinstance(score, torch.Tensor):
        raise TypeError("x and score must both be torch tensors or both numpy arrays")
    if isinstance(score, torch.Tensor) and score.is_floating_point():
        finite = bool(torch.isfinite(score).all())
    elif isinstance(score, np.ndarray) and score.dtype.kind == "f":
        finite = bool(np.isfinite(score).all())
    else:
        finite = True  # a wrong dtype: _C names it
    if not finite:
        raise ValueError("score has non-finite values (NaN or inf): the network's output is broken")
    written = _written((x, "x"))
    _C.sde_step(_raw(x, "x"), _raw(score, "score"), schedule, params, check_param(t, "t"),
                check_param(dt, "dt"), bool(noise), _int(seed, "seed"), _int(step, "step"),
                _int(chain_offset, "chain_offset"), _nthreads(), _stream(x))
    _mark_written(written)
    return x
