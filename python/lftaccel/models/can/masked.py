"""Masked convolutions on a periodic 2D lattice, in raster order.

Site (r, c) of an H x W lattice has raster index i = r W + c. A PeriodicMaskedConv with
half-width h reads the (2h+1)^2 sites at offsets (dr, dc), |dr|, |dc| <= h, taken
periodically ((r + dr) mod H, (c + dc) mod W), and masks each by its raster index j:
exclusive layers keep j < i, inclusive layers j <= i.

Why not an ordinary masked convolution with circular padding: its mask is fixed per offset
(rows above, and the left part of the current row), so at the lattice's edges the wrapped
offsets would read sites that come *later* in raster order (the row above row 0 is row
H - 1) and break the autoregressive property, while the wrapped neighbours that come
*earlier* (the row below row H - 1 is row 0, already sampled) would be hidden. Masking by
the neighbour's actual index does both right: the last row sees the first row through the
periodic boundary, exactly the coupling the XY action has there, and nothing sees the future.
The mask therefore depends on the site, and the layer is a gather of neighbourhoods (masked
entries read an appended zero) followed by one matrix product; ``at`` evaluates it on any
subset of sites, which the sampler's activation cache uses.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PeriodicMaskedConv", "dependency_matrix", "pad_site"]


class PeriodicMaskedConv(torch.nn.Module):
    def __init__(self, shape, c_in: int, c_out: int, half_width: int, *, exclusive: bool,
                 dtype=torch.float32):
        super().__init__()
        H, W = shape
        h = half_width
        r, c = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        index = (r * W + c).flatten()
        nb = torch.stack([(((r + dr) % H) * W + (c + dc) % W).flatten()
                          for dr in range(-h, h + 1) for dc in range(-h, h + 1)])  # (offsets, N)
        keep = nb < index if exclusive else nb <= index
        self.n_sites = H * W
        # (N, offsets); masked neighbours read row N, a zero row appended to the input
        self.register_buffer("neighbours", torch.where(keep, nb, torch.full_like(nb, H * W)).T.contiguous(),
                             persistent=False)
        n_off = nb.shape[0]
        fan_in = c_in * max(1.0, keep.float().sum(0).mean().item())
        self.weight = torch.nn.Parameter(torch.randn(n_off * c_in, c_out, dtype=dtype) / math.sqrt(fan_in))
        self.bias = torch.nn.Parameter(torch.zeros(c_out, dtype=dtype))

    def forward(self, x):
        """x: (N, B, c_in), site-major -> (N, B, c_out)."""
        return self.at(pad_site(x), None)

    def at(self, x_padded, sites):
        """The layer's output at ``sites`` (LongTensor; None: all) only, (T, B, c_out), from an
        input (N + 1, B, c_in) whose last row is zero (kept padded by the sampler's cache, so
        that no step copies a whole activation map). Site-major, so that gathering a
        neighbourhood copies contiguous (B, c_in) blocks and the layer is one matrix product."""
        nb = self.neighbours if sites is None else self.neighbours[sites]
        n_sites, n_off = nb.shape
        batch, c_in = x_padded.shape[1:]
        patches = x_padded[nb.flatten()].view(n_sites, n_off, batch, c_in).transpose(1, 2)
        patches = patches.reshape(n_sites * batch, n_off * c_in)
        return torch.addmm(self.bias, patches, self.weight).view(n_sites, batch, -1)


def pad_site(x):
    """(N, B, C) -> (N + 1, B, C) with a zero last row, the masked entries' source."""
    return torch.cat([x, x.new_zeros(1, *x.shape[1:])])


def dependency_matrix(layer: PeriodicMaskedConv) -> torch.Tensor:
    """Boolean (N, N): entry [t, s] is True when the layer's output at t reads its input at s."""
    N = layer.n_sites
    dep = torch.zeros(N, N + 1, dtype=torch.bool, device=layer.neighbours.device)
    dep.scatter_(1, layer.neighbours, True)
    return dep[:, :N]
