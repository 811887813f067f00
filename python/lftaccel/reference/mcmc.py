"""Pure-torch twins of the fused Monte Carlo kernels.

Each takes its random numbers as arguments, so a test can feed it the same Philox
variates the kernel draws (``momenta``, ``accept_uniforms`` ... below, built on the
pure-torch Philox) and compare the results to rounding; the benchmarks feed it
``torch.randn`` instead. ``action(x)`` and ``grad(x)`` are any per-configuration
action and its gradient, e.g. ``lambda x: phi4_action(x, kappa, lam)``.
"""

from __future__ import annotations

import math

import torch

from .oscillator import oscillator_action, oscillator_action_and_grad, oscillator_grad
from .philox import _uniform, philox_bits, philox_normal
from .phi4 import phi4_action, phi4_action_and_grad, phi4_grad
from .xy import xy_action, xy_action_and_grad, xy_grad

# Stream purposes, as in csrc/include/lftaccel/mcmc.hpp.
MOMENTUM, ACCEPT, LANGEVIN, METROPOLIS, SDE = 1, 2, 3, 4, 5


_TWINS = {"phi4": (phi4_action, phi4_grad), "xy": (xy_action, xy_grad),
          "oscillator": (oscillator_action, oscillator_grad)}
_FUSED = {"phi4": phi4_action_and_grad, "xy": xy_action_and_grad, "oscillator": oscillator_action_and_grad}


def theory_twin(kernel: str, params):
    """(action(x), grad(x), canonical) of a theory's kernel ('phi4', 'xy', 'oscillator') and its
    parameters in the kernel's order (``theory.kernel``, ``theory._params().values()``);
    canonical wraps XY angles as the kernels store them, None otherwise."""
    action, grad = _TWINS[kernel]
    params = list(params)
    return ((lambda x: action(x, *params)), (lambda x: grad(x, *params)),
            wrap_angle if kernel == "xy" else None)


def theory_twin_fused(kernel: str, params):
    """action_and_grad(x) -> (action, grad) of a theory's kernel in one pass
    (``phi4_action_and_grad`` ...), for ``hmc_trajectory_fused``."""
    fused = _FUSED[kernel]
    params = list(params)
    return lambda x: fused(x, *params)


def momenta(batch, n_sites, seed, step, chain_offset=0, dtype=torch.float64):
    """The HMC momenta the kernel draws for trajectory ``step``: (batch, n_sites)."""
    return philox_normal(batch, n_sites, seed, step, MOMENTUM, chain_offset, dtype)


def accept_uniforms(batch, seed, step, chain_offset=0):
    """The accept/reject uniforms of trajectory ``step``, one per chain, in float64."""
    return _uniform(philox_bits(batch, 1, seed, step, ACCEPT, chain_offset), torch.float64)[0][:, 0]


def langevin_noise(batch, n_sites, seed, step, chain_offset=0, dtype=torch.float64):
    return philox_normal(batch, n_sites, seed, step, LANGEVIN, chain_offset, dtype)


def metropolis_uniforms(batch, n_sites, seed, counter, chain_offset=0, dtype=torch.float64):
    """(proposal, accept) uniforms of one checkerboard half-sweep; counter = 2 sweep + parity."""
    return _uniform(philox_bits(batch, n_sites, seed, counter, METROPOLIS, chain_offset), dtype)


def sde_noise(batch, n_sites, seed, step, chain_offset=0, dtype=torch.float64):
    return philox_normal(batch, n_sites, seed, step, SDE, chain_offset, dtype)


def _per_config(v):
    return v.flatten(1).to(torch.float64).sum(1)


def leapfrog(x, p, grad, eps, n_steps, inv_mass=1.0):
    """n_steps leapfrog steps: half kick, (drift, kick) ..., drift, half kick; the drift is
    eps M^-1 p (``inv_mass``, per coordinate, for Fourier acceleration)."""
    p = p - 0.5 * eps * grad(x)
    for s in range(n_steps):
        x = x + eps * inv_mass * p
        p = p - (eps if s + 1 < n_steps else 0.5 * eps) * grad(x)
    return x, p


def hmc_trajectory(x, p, u, action, grad, eps, n_steps, canonical=None, inv_mass=1.0):
    """One HMC trajectory from momenta ``p`` with accept uniforms ``u`` (batch,), kinetic
    energy p M^-1 p / 2 (``inv_mass`` per coordinate; 1: unit masses).

    Returns (x_next, energies (4, batch) = (S_old, K_old, S_new, K_new), accepted (batch,) bool).
    """
    xt, pt = leapfrog(x, p, grad, eps, n_steps, inv_mass)
    e = torch.stack([action(x).to(torch.float64), 0.5 * _per_config(inv_mass * p * p),
                     action(xt).to(torch.float64), 0.5 * _per_config(inv_mass * pt * pt)])
    return _metropolis_end(x, xt, e, u, canonical)


def _metropolis_end(x, xt, e, u, canonical):
    """A trajectory's accept/reject from its energies e = (S_old, K_old, S_new, K_new): returns
    (x_next, e, accepted); a non-finite dH is rejected."""
    dH = e[2] + e[3] - e[0] - e[1]
    acc = torch.isfinite(dH) & ((dH <= 0) | (torch.log(u) < -dH))
    if canonical is not None:
        xt = canonical(xt)
    mask = acc.reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(mask, xt, x), e, acc


def hmc_trajectory_fused(x, p, u, action_and_grad, eps, n_steps, canonical=None):
    """hmc_trajectory (unit masses) written for speed in plain torch, the benchmarks' one-pass
    pure-torch HMC: every force from the one-pass action_and_grad (for phi^4 faster than the
    plain gradient alone; for XY, whose one pass adds a cosine, slower), the actions at the two
    ends with them, the kicks and drifts in place.
    The same trajectory, energies and decisions as hmc_trajectory, to rounding. n_steps >= 1."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    s_old, g = action_and_grad(x)
    k_old = 0.5 * _per_config(p * p)
    pt = p - (0.5 * eps) * g
    xt = x.clone()
    for s in range(n_steps):
        xt.add_(pt, alpha=eps)
        s_new, g = action_and_grad(xt)
        pt.sub_(g, alpha=eps if s + 1 < n_steps else 0.5 * eps)
    e = torch.stack([s_old.to(torch.float64), k_old, s_new.to(torch.float64), 0.5 * _per_config(pt * pt)])
    return _metropolis_end(x, xt, e, u, canonical)


def wrap_angle(theta):
    """Angles into [-pi, pi), as the kernels store accepted XY fields."""
    return theta - 2 * math.pi * torch.floor((theta + math.pi) / (2 * math.pi))


def langevin_step(x, eta, grad, eps):
    """x - eps dS/dx + sqrt(2 eps) eta."""
    return x - eps * grad(x) + math.sqrt(2 * eps) * eta


def parity(shape, device=None):
    """Checkerboard parity (sum of coordinates mod 2) of a lattice of this shape."""
    coords = torch.meshgrid(*[torch.arange(n, device=device) for n in shape], indexing="ij")
    return sum(coords) % 2


def _neighbour_sum(x, f):
    dims = range(1, x.dim())
    return sum(f(torch.roll(x, 1, d)) + f(torch.roll(x, -1, d)) for d in dims)


def phi4_local(phi, nsum, kappa, lam):
    phi2 = phi**2  # phi2**2, not phi**4: see reference/phi4.py
    return -2 * kappa * phi * nsum + (1 - 2 * lam) * phi2 + lam * phi2**2


def xy_local(theta, cos_sum, sin_sum, beta):
    return -beta * (torch.cos(theta) * cos_sum + torch.sin(theta) * sin_sum)


def metropolis_sweep(x, uniforms, theory: str, params, delta):
    """One checkerboard sweep. ``uniforms`` = [(u_prop, u_acc) for parity 0, for parity 1],
    each (batch, *shape). Returns (x, accepted site updates per chain)."""
    par = parity(x.shape[1:], x.device)
    n_acc = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for q in (0, 1):
        u_prop, u_acc = uniforms[q]
        prop = x + delta * (2 * u_prop - 1)
        if theory == "phi4":
            nsum = _neighbour_sum(x, lambda v: v)
            dS = (phi4_local(prop, nsum, *params).double() - phi4_local(x, nsum, *params).double())
        else:
            cs, ss = _neighbour_sum(x, torch.cos), _neighbour_sum(x, torch.sin)
            dS = xy_local(prop, cs, ss, *params).double() - xy_local(x, cs, ss, *params).double()
            prop = wrap_angle(prop)
        acc = (par == q) & torch.isfinite(dS) & ((dS <= 0) | (torch.log(u_acc.double()) < -dS))
        x = torch.where(acc, prop, x)
        n_acc += acc.flatten(1).sum(1).double()
    return x, n_acc


def sde_step(x, score, z, t, dt, schedule="ve", sigma=25.0, beta_min=0.1, beta_max=20.0, noise=True):
    """Reverse-time Euler-Maruyama step from t to t - dt (see lftaccel.mcmc.kernels.sde_step)."""
    if schedule == "ve":
        g2 = sigma ** (2 * t)
        drift = 0.0
    else:
        g2 = beta_min + t * (beta_max - beta_min)
        drift = 0.5 * g2 * dt
    noise_c = math.sqrt(g2 * dt) if noise else 0.0
    return x + drift * x + g2 * dt * score + noise_c * z
