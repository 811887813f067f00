"""Stochastic quantization with a learnt score.

Stochastic quantization samples exp(-S) as the equilibrium of the Langevin equation
d phi = -dS/dphi dtau + sqrt(2) dW (lftaccel.mcmc.Langevin, with the physical drift). A
diffusion model's score at small t, s(phi, t) = grad log p_t(phi), is a learnt drift of the
same form with S_DM = -log p_t: run as a Langevin drift it samples exp(-S_DM), which is the
data distribution as t -> 0. Comparing that equilibrium with exp(-S) (histograms of M, the
two-point function) tests what the network learnt, independently of the reverse process.

The update is the unadjusted (Euler-Maruyama) Langevin step
    phi <- phi + eps s(phi, t) + sqrt(2 eps) z,
whose equilibrium differs from exp(-S_DM) at O(eps) (for a Gaussian of variance v the
variance comes out v / (1 - eps / (2 v))). z is Philox (seed, chain_offset + b, site, step,
purpose 9), so a chain does not depend on the batch it runs in.
"""

from __future__ import annotations

import math

import torch

from ..._kernels import check_int, check_param
from .sde import check_time, checked_score

__all__ = ["learnt_langevin"]

LANGEVIN_PURPOSE = 9


@torch.no_grad()
def learnt_langevin(score_fn, x, *, t: float, eps: float, n_steps: int, seed: int, start_step: int = 0,
                    chain_offset: int = 0, record_every: int = 0):
    """Runs ``n_steps`` Langevin steps with drift score_fn(phi, t) from x (not modified).
    Returns the final state, and with record_every = k > 0 also the states every k steps
    stacked as (n_records, *x.shape)."""
    from ...random import normal

    check_int(n_steps, "n_steps")
    check_int(start_step, "start_step", low=0)
    check_int(record_every, "record_every", low=0)
    t = check_time(t)  # the networks learn the score on t in (0, 1] only
    eps = check_param(eps, "eps", low=0.0, low_open=True)
    x = x.clone()
    n, sites = x.shape[0], x[0].numel()
    records = []
    for k in range(n_steps):
        z = normal(n, sites, seed=seed, step=start_step + k, purpose=LANGEVIN_PURPOSE, chain_offset=chain_offset,
                   dtype=x.dtype, device=x.device).reshape(x.shape)
        x = x + eps * checked_score(score_fn, x, t).to(x.dtype) + math.sqrt(2.0 * eps) * z
        if record_every and (k + 1) % record_every == 0:
            records.append(x.clone())
    return (x, torch.stack(records)) if record_every else x
