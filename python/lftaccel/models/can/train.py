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

``fit`` trains the other way round, by maximum likelihood on configurations drawn from p
(an MCMC ensemble): it minimises -E_p[ln q] / N = (KL(p || q) + H(p)) / N, the forward KL up
to p's entropy. The two KLs fail differently, and the difference decides whether the CAN can
be made exact at low ESS. KL(q || p) is mode-seeking: where q misses part of p it is not
penalised, so a q trained by it is narrower than p, the weights p / q have a heavy tail
(Pareto k-hat above 1/2) and the exact estimates lean toward q. KL(p || q) is mass-covering:
q is pushed to cover all of p, wider rather than narrower, and the weights' tail is light.
Measured on 16x16 at T = 1.0 (network of lftaccel.reproduce.xy_can trained by ``train`` from
scratch for 1200 s; 4096 proposals averaged over the point group): ESS 0.073, k-hat 0.73,
current fluctuation beta <I^2> / 2V 0.130 against HMC's 0.176; after 600 s of ``fit`` on
10^4 HMC configurations: ESS 0.39, k-hat 0.24, raw current 0.27 (now too wide: safe), 0.179
reweighted. The gradient of ``fit`` is plain backpropagation through ln q, with no score-
function noise, and a step draws nothing: one log q pass and its backward, several times
cheaper than a ``train`` step, which draws its batch site by site.
Each batch is a random draw from the ensemble mapped by a random symmetry of the XY weight
(a translation, a lattice rotation or reflection, theta -> -theta; each sample its own), so
that q learns the symmetries the data hold only statistically.
"""

from __future__ import annotations

import warnings

import torch

from ..._kernels import check_int, check_param
from ...mcmc.nmcmc import ess
from ...theories import XY
from .._loop import TrainResult, data_digest, optimise
from .network import _symmetry_maps

__all__ = ["train", "fit", "energy", "free_energy_loss"]

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
          time_limit: float | None = None, progress: bool = True, schedule: str = "cosine",
          start: str | None = None) -> TrainResult:
    """Trains ``model`` (a CAN) in place toward the XY model at inverse temperature ``beta``.
    ``start`` (optional) names what the training starts from, a digest of the starting weights
    (lftaccel.models._loop.weights_digest, say): it is kept in the checkpoint, and a resume
    from other weights is refused."""
    beta = check_param(beta, "beta", low=0.0, low_open=True)
    check_int(batch_size, "batch_size", low=2)
    if not (0.0 <= anneal < 1.0):
        raise ValueError(f"anneal must be in [0, 1), got {anneal!r}")

    def loss_step(step):
        beta_t = beta * (1.0 - anneal ** (step + 1)) if anneal > 0 else beta
        return free_energy_loss(model, beta_t, batch_size)

    res = optimise(model, loss_step, steps=steps, lr=lr, clip=clip, seed=seed, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, resume=resume, time_limit=time_limit, progress=progress,
                   schedule=schedule, tag="can-free-energy", desc=f"CAN (beta {beta:g})",
                   settings={"beta": beta, "anneal": anneal, "batch_size": batch_size,
                             **({"start": start} if start is not None else {})})
    reached = res.history.get("beta", [beta])[-1] if res.steps else 0.0
    if reached < 0.99 * beta:
        warnings.warn(f"training ended at beta_t = {reached:.4g}, below the target beta = {beta:.4g}: the "
                      f"annealing (anneal = {anneal}) had not finished; train longer or anneal faster", stacklevel=2)
    return res


def _augment(theta, generator):
    """Each configuration mapped by its own uniformly random symmetry of the XY weight: a
    lattice translation, an element of the lattice's point group, and theta -> +-theta."""
    n, H, W = theta.shape
    dev = theta.device
    a = torch.randint(H, (n,), generator=generator).to(dev)
    b = torch.randint(W, (n,), generator=generator).to(dev)
    rows = (torch.arange(H, device=dev)[None] + a[:, None]) % H
    cols = (torch.arange(W, device=dev)[None] + b[:, None]) % W
    out = theta[torch.arange(n, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
    group = _symmetry_maps((H, W), True, True, 1)
    pick = torch.randint(len(group), (n,), generator=generator).to(dev)
    for j, g in enumerate(group[1:], start=1):
        chosen = pick == j
        if chosen.any():
            out[chosen] = g(out[chosen])
    return out


def fit(model, configs, *, steps: int, batch_size: int = 256, lr: float = 1e-3, clip: float = 1.0, seed: int = 0,
        augment: bool = True, checkpoint=None, checkpoint_every: int = 100, resume: bool = False,
        time_limit: float | None = None, progress: bool = True, schedule: str = "constant",
        start: str | None = None) -> TrainResult:
    """Trains ``model`` (a CAN) in place by maximum likelihood on ``configs`` (n, H, W), angles
    sampled from the target (an MCMC ensemble: lftaccel.io reads them), each batch mapped by
    random symmetries unless ``augment=False``. Logged: nll, -ln q per site on the batch.
    ``start``: as in :func:`train`."""
    check_int(batch_size, "batch_size", low=1)
    if not isinstance(augment, bool):
        raise ValueError(f"augment must be True or False, got {augment!r}")
    data = torch.as_tensor(configs)
    if data.dim() != 3 or tuple(data.shape[1:]) != model.shape or len(data) == 0:
        raise ValueError(f"configs must be angles (n >= 1, {model.shape[0]}, {model.shape[1]}), "
                         f"got {tuple(data.shape)}")
    if not data.is_floating_point() or not bool(torch.isfinite(data).all()):
        raise ValueError("configs must be finite real angles")
    if len(data) < batch_size:  # as flows.train's forward KL: a batch would repeat the data
        raise ValueError(f"configs has {len(data)} configurations, fewer than batch_size = {batch_size}")
    data = data.to(device=model.device, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)

    def loss_step(step):
        batch = data[torch.randint(len(data), (batch_size,), generator=generator).to(data.device)]
        if augment:
            batch = _augment(batch, generator)
        nll = -model.log_prob(batch).mean() / model.n_sites
        return nll, {"nll": float(nll.detach())}

    return optimise(model, loss_step, steps=steps, lr=lr, clip=clip, seed=seed, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every, resume=resume, time_limit=time_limit, progress=progress,
                    schedule=schedule, tag="can-max-likelihood", desc="CAN (max likelihood)", generator=generator,
                    settings={"batch_size": batch_size, "augment": augment, "data_sha256": data_digest(data),
                              **({"start": start} if start is not None else {})})
