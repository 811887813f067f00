"""The score network: a U-Net on the periodic lattice with a Gaussian-Fourier time embedding,
and the denoising score-matching loss.

Every convolution pads circularly (the lattice is periodic), downsampling is a stride-2
convolution and upsampling nearest-neighbour doubling followed by a convolution, so the
network commutes exactly with lattice translations by multiples of 2^(levels - 1) (and
approximately with the others). The extents must be divisible by 2^(levels - 1).

Time enters through Gaussian Fourier features [sin(2 pi w t), cos(2 pi w t)] with fixed
random frequencies w ~ N(0, scale^2), then a two-layer MLP, added as a per-channel bias in
every residual block. The network predicts the noise z of x_t = m x_0 + s z (an O(1) target
at every t; the loss drives z_hat to E[z | x_t]), and score = -z_hat / s(t).

Denoising score matching weighted by s(t)^2 (Song et al. 2021):
    L = E_t E_{x_0} E_z || s(t) score(x_t, t) + z ||^2 / n_sites,  t ~ U(eps, 1),
whose minimiser is the score of p_t; at the optimum the per-site loss at time t is
E[Var(z | x_t)] (for Gaussian data N(mu, s0^2): m^2 s0^2 / (m^2 s0^2 + s^2)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .sde import check_eps

__all__ = ["ScoreUNet", "dsm_loss"]


class FourierTime(torch.nn.Module):
    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("w", torch.randn(dim // 2) * scale)

    def forward(self, t):
        proj = 2.0 * math.pi * t[:, None] * self.w[None].to(t.dtype)
        return torch.cat([torch.sin(proj), torch.cos(proj)], -1)


def _conv(c_in, c_out, stride=1):
    return torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, padding_mode="circular")


class ResBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, emb_dim):
        super().__init__()
        self.conv1, self.conv2 = _conv(c_in, c_out), _conv(c_out, c_out)
        self.norm1 = torch.nn.GroupNorm(min(8, c_out), c_out)
        self.norm2 = torch.nn.GroupNorm(min(8, c_out), c_out)
        self.time = torch.nn.Linear(emb_dim, c_out)
        self.skip = torch.nn.Conv2d(c_in, c_out, 1) if c_in != c_out else torch.nn.Identity()

    def forward(self, x, emb):
        h = F.silu(self.norm1(self.conv1(x))) + self.time(emb)[:, :, None, None]
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class ScoreUNet(torch.nn.Module):
    """score(x, t) for a batch of 2D fields x (B, H, W) at times t (float or (B,))."""

    def __init__(self, shape, sde, *, channels=(32, 64, 64), emb_dim: int = 128, dtype=torch.float32):
        super().__init__()
        shape = tuple(shape)
        levels = len(channels)
        if levels < 1 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive integers, got {channels!r}")
        if len(shape) != 2 or any(s % 2 ** (levels - 1) for s in shape):
            raise ValueError(f"shape must be two extents divisible by 2^(levels - 1) = {2 ** (levels - 1)}, "
                             f"got {shape!r}")
        if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 2 or emb_dim % 2:
            raise ValueError(f"emb_dim must be an even integer >= 2 (sin and cos features), got {emb_dim!r}")
        self.shape, self.sde = shape, sde
        self.embed = torch.nn.Sequential(FourierTime(emb_dim), torch.nn.Linear(emb_dim, emb_dim), torch.nn.SiLU(),
                                         torch.nn.Linear(emb_dim, emb_dim))
        self.inp = _conv(1, channels[0])
        self.down = torch.nn.ModuleList()
        self.pool = torch.nn.ModuleList()
        c_prev = channels[0]
        for i, c in enumerate(channels):
            self.down.append(ResBlock(c_prev, c, emb_dim))
            c_prev = c
            if i < levels - 1:
                self.pool.append(_conv(c, c, stride=2))
        self.mid = ResBlock(c_prev, c_prev, emb_dim)
        self.up = torch.nn.ModuleList()
        self.unpool = torch.nn.ModuleList()
        for i in reversed(range(levels)):
            c = channels[i]
            self.up.append(ResBlock(c_prev + c, c, emb_dim))
            c_prev = c
            if i > 0:
                self.unpool.append(_conv(c, channels[i - 1]))
                c_prev = channels[i - 1]
        self.out = torch.nn.Conv2d(c_prev, 1, 1)
        torch.nn.init.zeros_(self.out.weight)  # start at score = 0 (the loss then starts at 1)
        torch.nn.init.zeros_(self.out.bias)
        self.to(dtype)

    @property
    def dtype(self):
        return self.out.weight.dtype

    def forward(self, x, t):
        if x.dim() != 3 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must be (batch, {self.shape[0]}, {self.shape[1]}), got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        emb = self.embed(t.to(self.dtype))
        h = self.inp(x[:, None].to(self.dtype))
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, emb)
        for k, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if k < len(self.unpool):
                h = self.unpool[k](F.interpolate(h, scale_factor=2, mode="nearest"))
        z_hat = self.out(h)[:, 0]
        _, s = self.sde.kernel(t)
        return -z_hat.to(x.dtype) / s.to(x.dtype)[:, None, None]


def dsm_loss(score_model, sde, x0, *, eps: float = 1e-5, t=None):
    """Denoising score matching weighted by s(t)^2, per site and batch element (module doc).
    ``t`` (float or (B,)) fixes the times; by default t ~ U(eps, 1) per configuration."""
    B = x0.shape[0]
    if t is None:
        eps = check_eps(eps)
        t = eps + (1.0 - eps) * torch.rand(B, dtype=torch.float64, device=x0.device)
    t = torch.as_tensor(t, dtype=torch.float64, device=x0.device).expand(B)
    if not bool(((t > 0) & (t <= 1)).all()):  # (NaN fails too)
        raise ValueError(f"t must lie in (0, 1], got values from {float(t.min())} to {float(t.max())}")
    m, s = (v.to(x0.dtype)[:, None, None] for v in sde.kernel(t))
    z = torch.randn_like(x0)
    score = score_model(m * x0 + s * z, t)
    return ((s * score + z) ** 2).flatten(1).mean(1).mean()
