"""Training a CAN by the variational free energy.

With E(theta) = -sum_<xy> cos(theta_x - theta_y) (J = 1) and p = exp(-beta E) / Z,

    beta F_q = E_q[beta E + ln q] = beta F + KL(q || p) >= beta F,

so F_q, estimated on every batch, is an upper bound on the free energy, reached only at
q = p. The samples are discrete draws through the conditionals, not reparameterisable, so
the gradient is the score-function (REINFORCE) estimator

    grad beta F_q = E_q[(beta E + ln q - b) grad ln q],

with b the batch mean of beta E + ln q taken over the *other* samples (leave-one-out: the
estimator stays unbiased; with the plain batch mean it is biased by O(1/B)).

beta annealing: step t trains at beta_t = beta (1 - anneal^(t + 1)), which starts near 0
(a nearly uniform target that the initial network already matches) and approaches beta with
time constant 1 / (1 - anneal) steps (within 1 % after 4.6 / (1 - anneal): 230 steps at
0.98, 2300 at 0.998; a run that ends before that warns); anneal = 0 trains at beta
throughout. The annealing guards against mode collapse onto an ordered configuration early
in training.

Logged per step (bar and history): f = F_q / N (per site, units of J, at beta_t), the
energy per site, the batch ESS of the weights exp(-beta_t E - ln q), and beta_t. The loop
(Adam, cosine schedule, clipping, tqdm, atomic checkpoints and resume) is
lftaccel.models._loop.optimise.
"""

from __future__ import annotations

import warnings

import torch

from ..._kernels import check_int, check_param
from ...mcmc.nmcmc import ess
from ...theories import XY
from .._loop import TrainResult, optimise

__all__ = ["train", "energy", "free_energy_loss"]

_UNIT = XY(1.0)


def energy(theta):
    """E(theta) = -sum over links of cos(theta_x - theta_y), (batch,), float64 (the XY kernel at beta = 1)."""
    return _UNIT.action(theta.double())


def free_energy_loss(model, beta: float, batch_size: int):
    """(surrogate loss, metrics) on a fresh batch: the loss's gradient is the score-function
    estimator of grad beta F_q (leave-one-out baseline); its value is not F_q (see metrics)."""
    theta, _ = model.sample(batch_size)
    log_q = model.log_prob(theta)
    E = energy(theta)
    f = (beta * E + log_q).detach()
    n = f.numel()
    advantage = (f - f.mean()) * (n / (n - 1)) if n > 1 else torch.zeros_like(f)
    loss = (advantage * log_q).mean()
    sites = model.n_sites
    metrics = {"f": float(f.mean()) / (beta * sites), "energy": float(E.mean()) / sites,
               "ess": ess(-f), "beta": beta}
    return loss, metrics


def train(model, beta: float, *, steps: int, batch_size: int = 256, lr: float = 1e-3, clip: float = 1.0,
          anneal: float = 0.998, seed: int = 0, checkpoint=None, checkpoint_every: int = 100, resume: bool = False,
          time_limit: float | None = None, progress: bool = True, schedule: str = "cosine") -> TrainResult:
    """Trains ``model`` (a CAN) in place toward the XY model at inverse temperature ``beta``."""
    beta = check_param(beta, "beta", low=0.0, low_open=True)
    check_int(batch_size, "batch_size", low=2)
    if not (0.0 <= anneal < 1.0):
        raise ValueError(f"anneal must be in [0, 1), got {anneal!r}")

    def loss_step(step):
        beta_t = beta * (1.0 - anneal ** (step + 1)) if anneal > 0 else beta
        return free_energy_loss(model, beta_t, batch_size)

    res = optimise(model, loss_step, steps=steps, lr=lr, clip=clip, seed=seed, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, resume=resume, time_limit=time_limit, progress=progress,
                   schedule=schedule, tag="can-free-energy", desc=f"CAN (beta {beta:g})")
    reached = res.history.get("beta", [beta])[-1] if res.steps else 0.0
    if reached < 0.99 * beta:
        warnings.warn(f"training ended at beta_t = {reached:.4g}, below the target beta = {beta:.4g}: the "
                      f"annealing (anneal = {anneal}) had not finished; train longer or anneal faster", stacklevel=2)
    return res
