"""Neural MCMC: any model that gives (samples, log q) made exact, by independence Metropolis
or by reweighting.

Target p(x) = exp(-S(x)) / Z. Each proposal x ~ q carries the log weight
log w = -S(x) - log q(x) (log Z drops out of every ratio).

  * Independence Metropolis: the chain moves from x to the next proposal x' with
    probability min(1, w(x') / w(x)). The chain is exact for any q whose support covers p;
    a perfect q accepts everything. Proposals are used in the order drawn, split into
    ``n_chains`` contiguous streams (independent chains, replicas of one pyerrors ensemble).
  * Reweighting: <O> = sum w O / sum w over independent proposals, as a ratio of two
    pyerrors observables, so its error is propagated (the proposals are iid: tau_int = 1/2).
  * ESS = (sum w)^2 / (N sum w^2), in (0, 1]: the fraction of proposals that count.

The module never trains or samples a model itself beyond ``draw``: flows, autoregressive
networks and diffusion models all reduce to arrays of S and log q.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import torch

from .._kernels import check_int

__all__ = ["log_weights", "ess", "Chain", "independence_metropolis", "reweight", "draw"]


def _as_1d(values, name):
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) < 1:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {v.shape}")
    return v


def log_weights(action, log_q) -> np.ndarray:
    """log w = -S - log q per proposal; NaN (a broken sample) becomes -inf (weight 0)."""
    S = _as_1d(action, "action")
    lq = _as_1d(log_q, "log_q")
    if len(S) != len(lq):
        raise ValueError(f"action and log_q have different lengths ({len(S)} and {len(lq)})")
    lw = -S - lq
    lw[np.isnan(lw)] = -np.inf
    if np.any(lw == np.inf):
        raise ValueError("log weight +inf: a proposal with S = -inf or log q = -inf")
    return lw


def ess(log_w) -> float:
    """Normalised effective sample size (sum w)^2 / (N sum w^2)."""
    lw = _as_1d(log_w, "log_w")
    if not np.any(np.isfinite(lw)):
        return 0.0
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    return float(w.sum() ** 2 / (len(w) * (w * w).sum()))


@dataclasses.dataclass
class Chain:
    """Independence-Metropolis chains over a fixed list of proposals.

    ``index[t, c]`` is the proposal chain c sits on after step t; ``take(v)`` turns
    per-proposal values into per-step values of shape (n_steps, n_chains), ready for
    ``lftaccel.analysis.primary``.
    """

    index: np.ndarray
    accepted: np.ndarray
    log_w: np.ndarray

    @property
    def acceptance(self) -> float:
        """Fraction of accepted proposals, the chains' first states excluded."""
        return float(self.accepted[1:].mean()) if len(self.accepted) > 1 else 1.0

    @property
    def ess(self) -> float:
        return ess(self.log_w)

    def take(self, values) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        values = np.asarray(values)
        if len(values) != len(self.log_w):
            raise ValueError(f"values must have one entry per proposal ({len(self.log_w)}), got {len(values)}")
        return values[self.index]

    def longest_rejection_run(self) -> int:
        """Longest stretch of consecutive rejections in any chain: a symptom of rare large weights."""
        best = 0
        for c in range(self.accepted.shape[1]):
            run = 0
            for a in self.accepted[:, c]:
                run = 0 if a else run + 1
                best = max(best, run)
        return best


def independence_metropolis(action, log_q, *, seed: int, n_chains: int = 1) -> Chain:
    """Runs n_chains independence-Metropolis chains over the proposals (in the order drawn).

    The accept/reject uniforms come from numpy's PCG64 seeded with ``seed``; the same
    proposals and seed give the same chain.
    """
    lw = log_weights(action, log_q)
    check_int(n_chains, "n_chains")
    if len(lw) % n_chains or len(lw) // n_chains < 2:
        raise ValueError(f"the {len(lw)} proposals must split into n_chains = {n_chains} equal streams of >= 2")
    n_steps = len(lw) // n_chains
    u = np.log(np.random.default_rng(seed).random((n_steps, n_chains)))
    streams = lw.reshape(n_chains, n_steps).T  # (step, chain): chain c owns proposals c*n_steps..
    offset = np.arange(n_chains) * n_steps
    index = np.empty((n_steps, n_chains), dtype=np.int64)
    accepted = np.zeros((n_steps, n_chains), dtype=bool)
    current = np.zeros(n_chains, dtype=np.int64)
    accepted[0] = True
    index[0] = offset
    for t in range(1, n_steps):
        lw_new, lw_cur = streams[t], streams[current, np.arange(n_chains)]
        with np.errstate(invalid="ignore"):  # -inf - -inf: both weights zero, move on
            log_ratio = np.where(np.isneginf(lw_cur), 0.0, lw_new - lw_cur)
        ok = u[t] < log_ratio
        current = np.where(ok, t, current)
        accepted[t] = ok
        index[t] = offset + current
    return Chain(index, accepted, lw)


def reweight(values, log_w, name: str = "O"):
    """<O>_p = sum w O / sum w over iid proposals, as a pyerrors Obs (error propagated)."""
    from ..analysis import primary

    v = _as_1d(values, "values")
    lw = _as_1d(log_w, "log_w")
    if len(v) != len(lw):
        raise ValueError(f"values and log_w have different lengths ({len(v)} and {len(lw)})")
    if not np.any(np.isfinite(lw)):
        raise ValueError("every weight is zero: nothing to reweight")
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = primary(w * v, f"w {name}", ensemble="reweight") / primary(w, "w", ensemble="reweight")
    out.tag = name
    return out


@torch.no_grad()
def draw(model, action_fn, n: int, *, batch_size: int = 1024, progress: bool = False):
    """n proposals from ``model.sample(k) -> (x, log_q)`` in batches, with S = action_fn(x).

    Returns (x, log_q, S) as torch tensors on the model's device (x keeps its dtype;
    log_q and S are float64).
    """
    check_int(n, "n")
    check_int(batch_size, "batch_size")
    xs, lqs, Ss = [], [], []
    batches = range(math.ceil(n / batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="proposals", unit="batch", leave=False)
    for i in batches:
        k = min(batch_size, n - i * batch_size)
        x, log_q = model.sample(k)
        xs.append(x)
        lqs.append(log_q.double())
        Ss.append(action_fn(x).double())
    return torch.cat(xs), torch.cat(lqs), torch.cat(Ss)
