"""A kink-gas prior for double-well paths: the dilute instanton gas as a base density.

A double-well path at f >~ 1.4 sits in one well or the other and jumps between them at
kinks; at beta = 10, f = 1.4 most paths carry two or more. A flow from a Gaussian (even one
with both wells in its zero mode) makes smooth one-well paths and almost never a kink, and
reverse-KL training does not find them: a kink costs action, and the entropy that pays for
it (the number of places to put it) is invisible to a model that has no kinks to move.
This prior puts the kinks in the base density, with their entropy counted exactly:

    y_n = mu s_n + sigma eps_n,   eps_n iid N(0, 1),
    s in {+1, -1}^N a periodic two-state Markov chain, P(s) = prod_n T(s_n, s_n+1) / Tr T^N,
    T = [[1 - p, p], [p, 1 - p]],  Tr T^N = 1 + (1 - 2p)^N,

a hidden Markov model (an Ising chain in the field h_n = mu y_n / sigma^2), whose density is
summed over all 2^N sign sequences exactly by a product of 2x2 transfer matrices:

    p(y) = Tr prod_n [diag(N(y_n; mu, sigma), N(y_n; -mu, sigma)) T] / Tr T^N.

The coordinates are then taken to the Fourier basis and each mode j is scaled by F_j (a
linear, volume-changing map, log det = sum log F_j): F_j = scale_j / sigma, with scale_j the
Fourier-flow's Gaussian mode widths, so the white noise becomes the well's fluctuation
spectrum and each sign jump a kink smoothed over the well's correlation length. At its start
(sigma = scale_0, so F_0 = 1) and with p -> 0 it is the double-well zero-mode prior (both
wells, no kinks).

mu, sigma, F and p are learnt. mu, sigma and F move the sample and get path gradients; p only
changes which discrete s is drawn, so it gets its gradient from the score-function term
(log P(s) times the centred per-sample loss), which ``sample_with_latent`` supplies and
flows.reverse_kl_loss adds. Symmetric under y -> -y, so Z2-equivariant flows over it stay so.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...fourier import from_fourier, to_fourier

__all__ = ["KinkGasPrior"]


def _log_tr_product(mats):
    """log Tr(M_0 M_1 ... M_{N-1}) for positive (batch, N, 2, 2), by pairwise products with rescaling."""
    log_scale = torch.zeros(mats.shape[0], dtype=mats.dtype, device=mats.device)
    while mats.shape[1] > 1:
        if mats.shape[1] % 2:  # fold the odd one out into its neighbour first
            mats = torch.cat([mats[:, :-2], (mats[:, -2] @ mats[:, -1]).unsqueeze(1)], dim=1)
        mats = mats[:, 0::2] @ mats[:, 1::2]
        peak = mats.amax(dim=(-2, -1), keepdim=True)
        mats = mats / peak
        log_scale = log_scale + torch.log(peak).flatten(1).sum(1)
    tr = mats[:, 0, 0, 0] + mats[:, 0, 1, 1]
    return torch.log(tr) + log_scale


class KinkGasPrior(nn.Module):
    """Base density over Fourier coordinates (batch, N) of a periodic path with kinks (see module docstring)."""

    def __init__(self, mode_scale: torch.Tensor, centre: float, flip: float, noise: float | None = None):
        super().__init__()
        if mode_scale.dim() != 1 or not (torch.all(mode_scale > 0) and torch.all(torch.isfinite(mode_scale))):
            raise ValueError("mode_scale must be a 1-d tensor, finite and > 0")
        if not (centre > 0 and math.isfinite(centre)):
            raise ValueError(f"centre must be finite and > 0, got {centre!r}")
        if not 0 < flip < 0.5:
            raise ValueError(f"flip must be in (0, 1/2), got {flip!r}")
        dtype = mode_scale.dtype
        noise = float(mode_scale.max()) if noise is None else noise
        if not (noise > 0 and math.isfinite(noise)):
            raise ValueError(f"noise must be finite and > 0, got {noise!r}")
        self.n = mode_scale.numel()
        self.log_mu = nn.Parameter(torch.tensor(math.log(centre), dtype=dtype))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(noise), dtype=dtype))
        self.log_filter = nn.Parameter(torch.log(mode_scale / noise))
        self.flip_logit = nn.Parameter(torch.tensor(math.log(flip / (1 - flip)), dtype=dtype))

    @property
    def flip(self):
        return torch.sigmoid(self.flip_logit)

    def _log_norm(self):
        """log Tr T^N = log(1 + (1 - 2p)^N), with 1 - 2p = tanh(-logit / 2) (no cancellation near p = 0)."""
        return torch.log1p(torch.tanh(-self.flip_logit / 2) ** self.n)

    def _log_p_signs(self, s):
        """log P(s) of the periodic chain for signs s (batch, N) in {+1, -1}, differentiable in p."""
        flips = (s != torch.roll(s, -1, dims=1)).to(s.dtype).sum(1)
        log_p, log_stay = nn.functional.logsigmoid(self.flip_logit), nn.functional.logsigmoid(-self.flip_logit)
        return flips * log_p + (self.n - flips) * log_stay - self._log_norm()

    def _sample_signs(self, n_samples, generator, device, dtype):
        """Periodic chain: s_0 = +-1 with 1/2, then P(s_k | s_k-1, s_0) prop. to T(s_k-1, s_k) (T^(N-k))(s_k, s_0)."""
        with torch.no_grad():
            p = float(self.flip)
            r = 1 - 2 * p
            u = torch.rand((n_samples, self.n), generator=generator, dtype=torch.float64, device=device)
            s = torch.empty((n_samples, self.n), dtype=torch.float64, device=device)
            s[:, 0] = torch.where(u[:, 0] < 0.5, 1.0, -1.0)
            for k in range(1, self.n):
                rk = r ** (self.n - k)
                # weight of staying (s_k = s_k-1) and of flipping, each times (1 + r^(N-k) s_k s_0) / 2
                same = s[:, k - 1] * s[:, 0]
                w_stay = (1 - p) * (1 + rk * same)
                w_flip = p * (1 - rk * same)
                stay = u[:, k] * (w_stay + w_flip) < w_stay
                s[:, k] = torch.where(stay, s[:, k - 1], -s[:, k - 1])
            return s.to(dtype)

    def sample_with_latent(self, n: int, generator=None):
        """(Fourier coordinates (n, N), log P(s) of the drawn signs, differentiable in the flip rate)."""
        dtype, device = self.log_mu.dtype, self.log_mu.device
        s = self._sample_signs(n, generator, device, dtype)
        eps = torch.randn((n, self.n), dtype=dtype, device=device, generator=generator)
        y = self.log_mu.exp() * s + self.log_sigma.exp() * eps
        return to_fourier(y) * self.log_filter.exp(), self._log_p_signs(s)

    def sample(self, n: int, generator=None):
        return self.sample_with_latent(n, generator)[0]

    def log_prob(self, z):
        y = from_fourier(z / self.log_filter.exp())
        mu, sigma, p = self.log_mu.exp(), self.log_sigma.exp(), self.flip
        # emission N(y; +-mu, sigma) = exp(-(y^2 + mu^2) / (2 sigma^2) +- h) / (sqrt(2 pi) sigma), h = mu y / sigma^2
        h = mu * y / sigma ** 2
        log_common = ((-(y * y + mu * mu) / (2 * sigma ** 2)).sum(1)
                      - self.n * (0.5 * math.log(2 * math.pi) + torch.log(sigma)))
        # M_n = diag(e^h, e^-h) T / e^|h|, entries <= 1; T's rows (1 - p, p), (p, 1 - p)
        a = torch.abs(h)
        up, down = torch.exp(h - a), torch.exp(-h - a)
        T = torch.stack([torch.stack([1 - p, p]), torch.stack([p, 1 - p])])
        mats = torch.stack([up, down], dim=-1).unsqueeze(-1) * T  # (batch, N, 2, 2): row i scaled by e^(+-h)
        log_tr = _log_tr_product(mats) + a.sum(1)
        return log_common + log_tr - self._log_norm() - self.log_filter.sum()
