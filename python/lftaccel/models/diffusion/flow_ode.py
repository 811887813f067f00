"""The probability-flow ODE of a diffusion model, with the change of log-density along it.

The ODE dx/dt = v(x, t) = f(x, t) - g(t)^2 score(x, t) / 2 has the same marginals p_t as the
forward SDE. Along a trajectory, d log p_t(x(t)) / dt = -div v, so integrating from the prior
at t = 1 down to t = eps gives a sample x_eps and its log-density under the model,

    log q(x_eps) = log p_1(x_1) + int_eps^1 div v(x(t), t) dt,
    div v = div f - g^2 div score / 2,  div f = 0 (VE) or -beta(t) n_sites / 2 (VP).

div score is the trace of the score's Jacobian:
  * 'hutchinson': u^T (d score / dx) u with one Rademacher vector u per configuration, drawn
    once per trajectory (so log q is a fixed function of the prior draw), by one
    vector-Jacobian product per evaluation: unbiased for the trace, not exact;
  * 'exact': every diagonal element by a vector-Jacobian product per site (n_sites backward
    passes per evaluation: small lattices and checks).
For exact neural MCMC the log q must be the model's actual density. 'exact' gives it up to
the ODE's discretisation (classical RK4 in ``n_steps`` equal steps; the density is that of the
discretised map, whose own log-determinant RK4 approximates). 'hutchinson' does not: its
log q-hat is unbiased for log q, but the Metropolis ratio and the reweighting use
exp(-log q-hat), and E_u[exp(-delta)] (delta = log q-hat - log q) depends on x whenever the
score's Jacobian does, so the corrected chain targets p(x) E_u[exp(-delta(x, u))], not p.
Use it for cheap diagnostics of q, and 'exact' (ODESampler's default) for exact sampling.
"""

from __future__ import annotations

import math

import torch

from ..._kernels import check_int, check_param

__all__ = ["probability_flow", "ODESampler"]


def _divergence(fn, x, method, u):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        if method == "hutchinson":
            (vjp,) = torch.autograd.grad(out, x, u)
            div = (vjp * u).flatten(1).sum(1)
        else:
            flat = out.flatten(1)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < flat.shape[1] - 1)
                div = div + g.flatten(1)[:, i]
    return out.detach(), div.detach()


def probability_flow(score_fn, sde, x1, *, n_steps: int = 200, eps: float = 1e-3, divergence: str = "hutchinson",
                     seed: int = 0):
    """Integrates the probability-flow ODE from x1 (a draw from the prior, (B, H, W)) down to
    t = eps with RK4; returns (x_eps, log q(x_eps)) (log q float64, per configuration)."""
    check_int(n_steps, "n_steps")
    eps = check_param(eps, "eps", low=0.0, low_open=True)
    if eps >= 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    if divergence not in ("hutchinson", "exact"):
        raise ValueError(f"divergence must be 'hutchinson' or 'exact', got {divergence!r}")
    x = x1.detach().clone()
    n_sites = x[0].numel()
    s1 = sde.prior_std()
    log_q = (-0.5 * (x.double() / s1) ** 2).flatten(1).sum(1) - n_sites * (math.log(s1) + 0.5 * math.log(2 * math.pi))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u = (torch.randint(0, 2, x.shape, generator=gen) * 2 - 1).to(x)  # Rademacher, fixed along the path

    def velocity(y, t):
        b = 0.0 if sde.schedule == "ve" else sde.g2(t)  # VP: f = -beta x / 2, g^2 = beta
        drift, div_score = _divergence(lambda z: -0.5 * b * z - 0.5 * sde.g2(t) * score_fn(z, t), y, divergence, u)
        return drift, div_score

    dt = (1.0 - eps) / n_steps
    for k in range(n_steps):
        t = 1.0 - k * dt  # integrate toward smaller t: x(t - dt) = x(t) - dt v
        k1, d1 = velocity(x, t)
        k2, d2 = velocity(x - 0.5 * dt * k1, t - 0.5 * dt)
        k3, d3 = velocity(x - 0.5 * dt * k2, t - 0.5 * dt)
        k4, d4 = velocity(x - dt * k3, t - dt)
        x = x - dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        log_q = log_q + dt / 6.0 * (d1 + 2 * d2 + 2 * d3 + d4).double()
    return x, log_q


class ODESampler:
    """A trained diffusion model as a proposal density for lftaccel.mcmc.nmcmc: ``sample(n)``
    draws the prior, integrates the probability-flow ODE and returns (phi, log q(phi)) in
    physical units. With phi = c y (FieldScale c) the density picks up the Jacobian:
    log q(phi) = log q_y(y) - n_sites log c.

    ``divergence`` defaults to 'exact' (n_sites backward passes per evaluation): only that
    log q makes the Metropolis correction exact (see the module docstring). The prior draw uses
    torch's global RNG (seed it); Hutchinson vectors, if chosen, are seeded by ``seed`` plus
    the call count (so samplers with nearby seeds share streams)."""

    def __init__(self, score_fn, sde, shape, *, scale: float = 1.0, n_steps: int = 200, eps: float = 1e-3,
                 divergence: str = "exact", seed: int = 0, dtype=torch.float64, device="cpu"):
        self.score_fn, self.sde, self.shape = score_fn, sde, tuple(shape)
        self.scale = check_param(scale, "scale", low=0.0, low_open=True)
        self.n_steps, self.eps, self.divergence, self.seed = n_steps, eps, divergence, seed
        self.dtype, self.device, self.calls = dtype, device, 0

    @torch.no_grad()
    def sample(self, n: int):
        check_int(n, "n")
        x1 = self.sde.prior_std() * torch.randn(n, *self.shape, dtype=self.dtype, device=self.device)
        y, log_q = probability_flow(self.score_fn, self.sde, x1, n_steps=self.n_steps, eps=self.eps,
                                    divergence=self.divergence, seed=self.seed + self.calls)
        self.calls += 1
        n_sites = math.prod(self.shape)
        return y * self.scale, log_q - n_sites * math.log(self.scale)
