"""Affine coupling layers and the flow that stacks them over a prior (Gaussian, or see kink_prior).

A coupling layer splits the degrees of freedom by a fixed binary mask into frozen (mask 1)
and active (mask 0) ones. The frozen ones pass through; the active ones are transformed

    x_active -> x_active * exp(s(x_frozen)) + t(x_frozen),

so the Jacobian is triangular and log|det J| = sum over active sites of s. The inverse is
(x_active - t) * exp(-s). The conditioner maps the masked field to (s, t) of the same shape
and sees only frozen sites (its input is multiplied by the mask).

Z2 equivariance (``equivariant=True``): s is replaced by its even part (s(x) + s(-x)) / 2
and t by its odd part (t(x) - t(-x)) / 2, so T(-z) = -T(z) exactly; with a symmetric
prior the model density then obeys q(-x) = q(x) and cannot collapse onto one sign of the
field. It costs one more conditioner pass per layer.

Conventions: the model density is log q(x) = log p0(z) - sum_layers log|det J| with
x = T(z); ``sample(n)`` returns (x, log q(x)) and ``log_prob(x)`` inverts T.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ..._kernels import check_int

__all__ = ["AffineCoupling", "CouplingFlow", "GaussianPrior", "DoubleWellZeroModePrior"]


class AffineCoupling(nn.Module):
    """One affine coupling layer over a fixed mask (1 = frozen)."""

    def __init__(self, conditioner: nn.Module, mask: torch.Tensor, equivariant: bool = False):
        super().__init__()
        self.conditioner = conditioner
        self.register_buffer("mask", mask)
        self.equivariant = bool(equivariant)

    def _s_t(self, frozen):
        if self.equivariant:
            s_p, t_p = self.conditioner(frozen)
            s_m, t_m = self.conditioner(-frozen)
            s, t = (s_p + s_m) / 2, (t_p - t_m) / 2
        else:
            s, t = self.conditioner(frozen)
        active = 1 - self.mask
        return s * active, t * active

    def forward(self, x):
        """x -> (T(x), log|det J| per sample)."""
        s, t = self._s_t(x * self.mask)
        y = x * self.mask + (1 - self.mask) * (x * torch.exp(s) + t)
        return y, s.flatten(1).sum(1)

    def inverse(self, y):
        """y -> (T^-1(y), log|det J^-1| per sample)."""
        s, t = self._s_t(y * self.mask)
        x = y * self.mask + (1 - self.mask) * (y - t) * torch.exp(-s)
        return x, -s.flatten(1).sum(1)


class GaussianPrior(nn.Module):
    """Independent normal variables with fixed standard deviations ``scale`` (a shape-(...) tensor)."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        if not (torch.all(scale > 0) and torch.all(torch.isfinite(scale))):
            raise ValueError("prior scale must be finite and > 0 everywhere")
        self.register_buffer("scale", scale)

    @property
    def shape(self):
        return tuple(self.scale.shape)

    def sample(self, n: int, generator=None):
        z = torch.randn((n, *self.shape), dtype=self.scale.dtype, device=self.scale.device, generator=generator)
        return z * self.scale

    def log_prob(self, z):
        u = z / self.scale
        const = self.scale.numel() * 0.5 * math.log(2 * math.pi) + torch.log(self.scale).sum()
        return -0.5 * (u * u).flatten(1).sum(1) - const


class DoubleWellZeroModePrior(GaussianPrior):
    """GaussianPrior whose first coordinate is instead the symmetric mixture
    (N(+centre, scale_0^2) + N(-centre, scale_0^2)) / 2: a base density with both wells of a
    double-well zero mode, even in z, so an equivariant flow over it keeps q(-x) = q(x)."""

    def __init__(self, scale: torch.Tensor, centre: float):
        super().__init__(scale)
        if scale.dim() != 1:
            raise ValueError("DoubleWellZeroModePrior is for 1-d coordinates (batch, N)")
        if not centre >= 0:
            raise ValueError(f"centre must be >= 0, got {centre!r}")
        self.centre = float(centre)

    def sample(self, n: int, generator=None):
        z = super().sample(n, generator)
        sign = torch.randint(0, 2, (n,), device=z.device, generator=generator).to(z.dtype) * 2 - 1
        z[:, 0] = z[:, 0] + sign * self.centre
        return z

    def log_prob(self, z):
        gauss = super().log_prob(z)
        s0 = self.scale[0]
        # replace coordinate 0's Gaussian term by the mixture's
        u = z[:, 0] / s0
        up, um = (z[:, 0] - self.centre) / s0, (z[:, 0] + self.centre) / s0
        mix = torch.logaddexp(-0.5 * up * up, -0.5 * um * um) - math.log(2.0)
        return gauss + 0.5 * u * u + mix


class CouplingFlow(nn.Module):
    """x = T(z), z from ``prior``, T a stack of coupling layers."""

    def __init__(self, prior: nn.Module, layers):
        super().__init__()
        self.prior = prior
        self.layers = nn.ModuleList(layers)

    @property
    def dtype(self):
        return self._prior_tensor().dtype

    @property
    def device(self):
        return self._prior_tensor().device

    def _prior_tensor(self):
        """A floating tensor of the prior (a buffer of a fixed prior, a parameter of a learnt one)."""
        return next(t for t in itertools.chain(self.prior.buffers(), self.prior.parameters()) if t.is_floating_point())

    def transform(self, z):
        """z -> (x, log|det dx/dz|)."""
        logdet = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            z, ld = layer(z)
            logdet = logdet + ld
        return z, logdet

    def sample(self, n: int, generator=None, with_latent: bool = False):
        """(x, log q(x)) for n samples; differentiable in the parameters (reparameterisation).
        with_latent: also return log P of the prior's discrete latent draw (a KinkGasPrior's
        signs; None for a prior without one), whose gradient is the score-function term."""
        check_int(n, "n")
        if hasattr(self.prior, "sample_with_latent"):
            z, log_p_latent = self.prior.sample_with_latent(n, generator)
        else:
            z, log_p_latent = self.prior.sample(n, generator), None
        x, logdet = self.transform(z)
        out = (x, self.prior.log_prob(z) - logdet)
        return (*out, log_p_latent) if with_latent else out

    def log_prob(self, x):
        """log q(x) through the inverse map."""
        want = getattr(self.prior, "shape", None)  # (a prior without one: the layers will say)
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or (want is not None and tuple(x.shape[1:]) != tuple(want)):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            what = ", ".join(map(str, want)) if want is not None else "*lattice"
            raise ValueError(f"x must be a (batch, {what}) tensor, got {got}")
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in reversed(self.layers):
            x, ld = layer.inverse(x)
            logdet = logdet + ld
        return self.prior.log_prob(x) + logdet
