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
  * Pareto k-hat (``pareto_k``): the shape of a generalised Pareto fit to the largest
    weights (Vehtari et al., "Pareto smoothed importance sampling"). The weights' tail falls
    like w^(-1/k): their variance is infinite for k >= 1/2, and above k ~ 0.7 the exact
    estimates are unreliable at any practical N. It says what the ESS cannot: an ESS of 0.2
    from a light tail is trustworthy, one from a heavy tail is not.

What low ESS does to the errors, measured on a case with a known answer (p = N(0, 1)^d,
q = N(0, s^2)^d: a too-narrow q, as variational training gives; O = mean x^2; 8 streams of
1024 proposals, 100 repetitions each; "error" is the RMS reported error over the actual
spread of the estimates):
  * ESS 0.57 (d = 64, s = 0.94, k-hat 0.2): the independence-Metropolis chain's Gamma-method
    error 1.01, 7 % of pulls outside 2 sigma: as it should be.
  * ESS 0.19 (d = 64, s = 0.9, k-hat 0.40): Gamma error 1.03, 7 % outside 2 sigma.
  * ESS 0.11 (d = 16, s = 0.8, k-hat 0.53): Gamma error 1.10, 12 % outside 2 sigma, and the
    streams' start (a draw from q) biases <O> by -0.14 +- 0.10 of its spread.
This needs the fluctuations taken about the mean of all streams (lftaccel.analysis.primary).
About each stream's own mean, pyerrors' default for replica, the same data gave Gamma errors
of 0.82 (ESS 0.19) and 0.76 (ESS 0.11); an earlier version of this note blamed the Gamma
window for missing the long tail that rare heavy weights give.
Reweighting's propagated error held (0.93-1.10) with a smaller bias, 13-14 % outside 2 sigma
at both low ESS. lftaccel.reproduce.common.chain_observables drops the first 10 % of every
stream and reports the larger of the Gamma error and the spread of the streams' own
estimates (a check that needs no window): 1.04-1.11, with 5-12 % of pulls outside 2 sigma
and no bias left beyond the errors (-0.01 of the spread at ESS 0.11).
What remains at ESS 0.11 is the estimates' skewed, heavy-tailed distribution, which no error
bar fixes: k-hat above 0.5 is the warning.

The same on the real system: lftaccel.reproduce.xy_can's network for 8x8 XY at T = 0.9 after
60 s of training (ESS 0.2-0.45 after the point-group average, k-hat 0.46-0.62), 4096
proposals per estimate. The errors held (the larger-of rule 1.03-1.14 of the spread over 16
estimates, the Gamma method's 0.90-0.99, both measured about each stream's own mean), but
the mean of 40 chain estimates, energy -1.4568(8) and helicity 0.6698(11), sits at -2.0 and
+3.1 sigma from HMC and Metropolis (80000 configurations each: -1.4549(7), 0.6660(9);
-1.4547(9), 0.6646(15)): a bias toward q of 0.5-0.7 of one estimate's error, which 60 %
burn-in did not remove, nor a start drawn by importance resampling (reweighting:
-1.4559(8), 0.6678(15)). With k-hat near 0.5 the bias of
a self-normalised estimate falls no faster than its error as N grows: more proposals do not
cure it, a better q does. Where q is good the samplers are exact: on 3x2 at ESS ~1 the chain
and reweighting agree with quadrature to 2e-4 over 2^20 proposals (tests/test_can.py checks
this at 2^17).

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

__all__ = ["log_weights", "ess", "pareto_k", "gpd_shape", "Chain", "independence_metropolis", "reweight", "draw"]


def _as_1d(values, name):
    if isinstance(values, torch.Tensor):
        if values.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        values = values.detach().cpu().double().numpy()
    if np.iscomplexobj(values):
        raise TypeError(f"{name} must be real, got complex values")
    if np.asarray(values).dtype == object:  # None entries would become NaN, i.e. weight 0, silently
        raise TypeError(f"{name} must be an array of real numbers, got Python objects")
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of real numbers: {err}") from None
    if v.ndim != 1 or len(v) < 1:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {v.shape}")
    return v


def log_weights(action, log_q) -> np.ndarray:
    """log w = -S - log q per proposal; NaN (a broken sample) becomes -inf (weight 0), with a
    warning that counts them: dropped samples whose failure correlates with an observable bias
    its estimate."""
    S = _as_1d(action, "action")
    lq = _as_1d(log_q, "log_q")
    if len(S) != len(lq):
        raise ValueError(f"action and log_q have different lengths ({len(S)} and {len(lq)})")
    broken = np.isnan(S) | np.isnan(lq) | (lq == np.inf)
    if broken.any():
        warnings.warn(f"{int(broken.sum())} of {len(S)} proposals have a NaN action or log q, or log q = +inf: "
                      f"they get weight 0 (dropped)", RuntimeWarning, stacklevel=2)
    with np.errstate(invalid="ignore"):
        lw = -S - lq
    lw[broken | np.isnan(lw)] = -np.inf
    if np.any(lw == np.inf):
        raise ValueError("log weight +inf: a proposal with S = -inf or log q = -inf")
    return lw


def ess(log_w) -> float:
    """Normalised effective sample size (sum w)^2 / (N sum w^2). Zero weights (log w = -inf
    or NaN) count in N; +inf is an error, as in log_weights."""
    lw = _as_1d(log_w, "log_w")
    if np.any(lw == np.inf):
        raise ValueError("log weight +inf: a proposal with S = -inf or log q = -inf")
    lw = np.where(np.isnan(lw), -np.inf, lw)
    if not np.any(np.isfinite(lw)):
        return 0.0
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    return float(w.sum() ** 2 / (len(w) * (w * w).sum()))


def pareto_k(log_w) -> float:
    """Pareto k-hat of the importance weights exp(log_w): the shape parameter of a generalised
    Pareto distribution fitted to the exceedances of the M = min(N / 5, 3 sqrt N) largest
    weights over the next largest (Vehtari et al.'s tail size), by Zhang and Stephens' method
    (``gpd_shape``). k < 0.5: finite variance; 0.5 - 0.7: slow, noisy convergence; > 0.7: the
    reweighted and independence-Metropolis estimates are unreliable. -inf when the tail is
    flat (equal weights, q = p); needs N >= 20 finite weights. Zero weights (log w = -inf or
    NaN) are left out; +inf is an error, as in log_weights."""
    lw = _as_1d(log_w, "log_w")
    if np.any(lw == np.inf):
        raise ValueError("log weight +inf: a proposal with S = -inf or log q = -inf")
    lw = lw[np.isfinite(lw)]
    if len(lw) < 20:
        raise ValueError(f"pareto_k needs at least 20 finite log weights, got {len(lw)}")
    w = np.sort(np.exp(lw - lw.max()))
    m = int(min(len(w) / 5, 3 * math.sqrt(len(w))))
    tail = w[-m:] - w[-m - 1]
    if not np.any(tail > 0):
        return float("-inf")
    return gpd_shape(tail)


def gpd_shape(x) -> float:
    """Shape k of a generalised Pareto distribution, F(x) = 1 - (1 + k x / s)^(-1/k), x >= 0,
    fitted to the sample x by Zhang and Stephens' method (Technometrics 51 (2009) 316), the fit
    Vehtari et al. use for k-hat. With b = k / s, the likelihood maximised over k at fixed b
    gives k(b) = mean log(1 + b x) and the profile log L(b) = n (log(b / k(b)) - k(b) - 1); b is
    the average of m = 20 + floor(sqrt n) grid points weighted by their profile likelihood (grid
    b_j = -1/x_max + (sqrt(m / (j - 1/2)) - 1) / (3 x_q), x_q the lower quartile: the empirical
    prior of the paper), and k = k(b). It is nearly unbiased and less noisy than the plain
    maximum-likelihood fit on small tails: on exact Pareto tails of 20 points (mean +- spread over
    100 samples), k = 0.5 came out 0.48 +- 0.33 (maximum likelihood 0.36 +- 0.39), k = 0.25
    0.26 +- 0.29 (0.09 +- 0.35); at 271 points (the tail of 8192 weights) both are within 0.01
    of the truth, and the k-hat figures in this module's docstring, taken with maximum
    likelihood, moved by at most 0.011 (20 repetitions). Vehtari et al. also shrink k toward 0.5
    with a weak prior; that is not done here."""
    x = np.sort(np.asarray(x, dtype=float))
    if x.ndim != 1 or len(x) < 2 or not np.all(np.isfinite(x)) or x[0] < 0 or not x[-1] > 0:
        raise ValueError("x must be at least two finite exceedances >= 0, not all zero")
    x = x / x[-1]  # the fit is scale-free; in [0, 1] nothing below overflows but a subnormal quartile
    n = len(x)
    m = 20 + int(math.sqrt(n))
    quartile = x[int(n / 4 + 0.5) - 1]
    if not quartile > 0:  # ties at the threshold: the smallest positive exceedance sets the scale
        quartile = x[x > 0][0]
    j = np.arange(1, m + 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        b = -1.0 + (np.sqrt(m / (j - 0.5)) - 1.0) / (3.0 * quartile)  # all > -1 / x_max = -1
        b = b[b != 0.0]  # k(0) = 0: the ratio b / k(b) is 0 / 0 there (an exact hit only)
        k = np.log1p(b[:, None] * x).mean(1)
        log_l = n * (np.log(b / k) - k - 1.0)
        weight = np.exp(log_l - log_l.max())
        shape = float(np.log1p(float((weight * b).sum() / weight.sum()) * x).mean())
    # not finite only when the lower quartile is below ~1e-308 of the largest value: a tail
    # that heavy is reported as k = inf (unreliable), never as NaN, which every k > 0.7 test passes
    return shape if np.isfinite(shape) else float("inf")


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

    @property
    def pareto_k(self) -> float:
        """Pareto k-hat of the proposals' weights (module function ``pareto_k``); NaN with
        fewer than 20 finite weights."""
        if np.isfinite(self.log_w).sum() < 20:
            return float("nan")
        return pareto_k(self.log_w)

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
    proposals and seed give the same chain. A chain starts on the first proposal of its stream
    with a nonzero weight (the proposals before it are rejected moves): started on a weight-0
    state it would measure a configuration of probability zero.
    """
    check_int(seed, "seed", low=0)
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
    finite = np.isfinite(streams)
    if not finite.any(0).all():
        c = int(np.flatnonzero(~finite.any(0))[0])
        raise ValueError(f"chain {c} has no proposal of nonzero weight among its {n_steps}")
    current = finite.argmax(0)  # the first proposal of nonzero weight in each stream
    accepted[0] = True
    index[0] = offset + current
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
        # weight 0 times a broken (non-finite) value counts as 0
        wv = np.where(w > 0, w * v, 0.0)
        out = primary(wv, f"w {name}", ensemble="reweight") / primary(w, "w", ensemble="reweight")
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
