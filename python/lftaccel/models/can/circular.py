"""Mixture densities on the circle: the conditionals of a continuous autoregressive network.

Each takes raw network outputs ``params`` of shape (..., n_params) and an angle phi in
[0, 2 pi), and gives the log-density of phi (per radian, so it integrates to 1 over the
circle) and samples. The mixture weights are softmax(logits); positive shape parameters
are softplus(raw) + a floor that keeps them away from degenerate limits.

  * BetaMixture (the original CAN's choice): phi = 2 pi u with u ~ sum_k w_k Beta(a_k, b_k),
    a_k, b_k >= 1 (see the class). Its density is not periodic: every component with a
    shape above 1 vanishes at phi = 0 = 2 pi, so q has a hole at that point where the target
    has none, and the weights p / q grow without bound toward it (the neural-MCMC chain stays
    exact; its ESS suffers). The network is fed angles measured so that aligned spins sit
    mid-range, at phi = pi (see network.py), which keeps most of the mass away from the hole.
  * VonMisesMixture: sum_k w_k exp(kappa_k cos(phi - mu_k)) / (2 pi I0(kappa_k)), periodic
    by construction.

Log-densities are computed in float64 whatever the network's dtype: a log q summed over
hundreds of sites enters Metropolis ratios, where float32 rounding (1e-3 absolute) would
show.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..._kernels import check_int

__all__ = ["BetaMixture", "VonMisesMixture", "make_conditional"]

TWO_PI = 2.0 * math.pi


class _Mixture:
    n_per_component: int = 0
    shape_floor = 1e-3

    def __init__(self, n_components: int):
        self.k = check_int(n_components, "n_components")

    @property
    def n_params(self) -> int:
        return self.k * self.n_per_component

    def _split(self, params):
        params = params.double()
        if params.shape[-1] != self.n_params:
            raise ValueError(f"params must end in {self.n_params} values, got shape {tuple(params.shape)}")
        return params.unflatten(-1, (self.n_per_component, self.k)).unbind(-2)

    def _positive(self, raw):
        return F.softplus(raw) + self.shape_floor

    def log_prob(self, params, phi):
        """log q(phi) per radian, float64, shape params.shape[:-1]."""
        logits, *rest = self._split(params)
        log_w = torch.log_softmax(logits, -1)
        return torch.logsumexp(log_w + self._component_log_prob(rest, phi.double()[..., None]), -1)

    @torch.no_grad()
    def sample(self, params):
        """One phi in [0, 2 pi) per leading index, float64, from torch's global RNG on the
        params' device (seed it with torch.manual_seed)."""
        logits, *rest = self._split(params)
        if not bool(torch.isfinite(params).all()):
            # (a NaN or infinite concentration never passes the von Mises rejection test: the
            # sampler would loop for ever)
            raise ValueError("the network's conditional parameters are not finite (NaN or infinite weights, "
                             "or a diverged training): cannot sample")
        u = torch.rand(logits.shape[:-1], dtype=torch.float64, device=logits.device)
        cdf = torch.softmax(logits, -1).cumsum(-1)
        comp = torch.searchsorted(cdf, u[..., None]).clamp_(max=self.k - 1)  # inverse-CDF component choice
        chosen = [r.gather(-1, comp)[..., 0] for r in rest]
        return self._component_sample(chosen)


class BetaMixture(_Mixture):
    """phi / 2 pi ~ a mixture of Beta(a_k, b_k); params per component: logit, raw a, raw b."""

    n_per_component = 3
    name = "beta"
    # a, b >= 1: each component is bounded and unimodal. Below 1 a component diverges at an
    # endpoint, and draws pile up within float rounding of phi = 0: log q at the angle
    # actually returned (theta, rounded) then differs from log q at the draw by hundreds.
    shape_floor = 1.0

    def _component_log_prob(self, rest, phi):
        a, b = (self._positive(r) for r in rest)
        # clamp away from the endpoints, where log Beta can be +-inf: a sample at exactly 0
        # (float rounding) would otherwise poison a whole batch's loss
        u = (phi / TWO_PI).clamp(1e-15, 1.0 - 1e-15)
        log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
        return (a - 1) * torch.log(u) + (b - 1) * torch.log1p(-u) - log_beta - math.log(TWO_PI)

    def _component_sample(self, chosen):
        a, b = (self._positive(r) for r in chosen)
        x = torch._standard_gamma(a)  # Beta(a, b) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b)
        y = torch._standard_gamma(b)
        u = x / (x + y)
        u = torch.where(torch.isfinite(u), u, (a / (a + b)))  # both Gammas underflowing to 0: take the mean
        return (u * TWO_PI).clamp_(0.0, math.nextafter(TWO_PI, 0.0))


class VonMisesMixture(_Mixture):
    """A mixture of von Mises densities; params per component: logit, cos-like, sin-like (the
    mean direction is atan2 of the two; the concentration is softplus of a fourth)."""

    n_per_component = 4
    name = "vonmises"

    def _component_log_prob(self, rest, phi):
        c, s, raw_kappa = rest
        mu = torch.atan2(s, c)
        kappa = self._positive(raw_kappa)
        # log I0(kappa) = log i0e(kappa) + kappa, stable for large kappa
        log_i0 = torch.log(torch.special.i0e(kappa)) + kappa
        return kappa * torch.cos(phi - mu) - log_i0 - math.log(TWO_PI)

    def _component_sample(self, chosen):
        c, s, raw_kappa = chosen
        mu = torch.atan2(s, c)
        kappa = self._positive(raw_kappa)
        return torch.remainder(mu + _von_mises_centred(kappa), TWO_PI).clamp_(max=math.nextafter(TWO_PI, 0.0))


def _von_mises_centred(kappa):
    """Best-Fisher rejection sampling of VM(0, kappa) (accepts > 65 % for every kappa),
    vectorised: redraw only the rejected entries."""
    tau = 1.0 + torch.sqrt(1.0 + 4.0 * kappa * kappa)
    rho = (tau - torch.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho * rho) / (2.0 * rho)
    out = torch.empty_like(kappa)
    todo = torch.ones_like(kappa, dtype=torch.bool)
    while todo.any():
        idx = todo.nonzero(as_tuple=True)
        n = idx[0].numel()
        u1, u2, u3 = torch.rand((3, n), dtype=kappa.dtype, device=kappa.device)
        z = torch.cos(math.pi * u1)
        f = (1.0 + r[idx] * z) / (r[idx] + z)
        c = kappa[idx] * (r[idx] - f)
        ok = (c * (2.0 - c) - u2 > 0) | (torch.log(c / u2) + 1.0 - c >= 0)
        theta = torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1.0, 1.0))
        sel = tuple(i[ok] for i in idx)
        out[sel] = theta[ok]
        todo[sel] = False
    return out


def make_conditional(kind: str, n_components: int) -> _Mixture:
    kinds = {"beta": BetaMixture, "vonmises": VonMisesMixture}
    if kind not in kinds:
        raise ValueError(f"conditional must be one of {sorted(kinds)}, got {kind!r}")
    return kinds[kind](n_components)
