"""Affine coupling flows for scalar fields on a periodic 2D lattice (phi^4).

Layers alternate the two checkerboard masks (a site's parity (i + j) mod 2), so every site
is transformed in every second layer. Conditioners are small CNNs with circular padding,
which respects the periodic boundary; their last convolution starts at zero, so an
untrained flow is the identity map over the prior. Any extents work: on an odd extent the
checkerboard is only a partition of the sites, which is all a coupling layer needs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..._kernels import check_int
from .coupling import AffineCoupling, CouplingFlow, GaussianPrior

__all__ = ["ConvConditioner", "checkerboard", "lattice_flow"]


class ConvConditioner(nn.Module):
    """(batch, L0, L1) frozen field -> (s, t), each (batch, L0, L1)."""

    def __init__(self, hidden=(16, 16), kernel_size: int = 3, dtype=torch.float64):
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        for c in hidden:
            check_int(c, "hidden widths")
        layers, c_in = [], 1
        for c in hidden:
            layers += [nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2, padding_mode="circular",
                                 dtype=dtype), nn.LeakyReLU()]
            c_in = c
        last = nn.Conv2d(c_in, 2, kernel_size, padding=kernel_size // 2, padding_mode="circular", dtype=dtype)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x):
        out = self.net(x[:, None])
        return out[:, 0], out[:, 1]


def checkerboard(shape, parity: int, dtype=torch.float64) -> torch.Tensor:
    i = torch.arange(shape[0])[:, None]
    j = torch.arange(shape[1])[None, :]
    return ((i + j) % 2 == parity).to(dtype)


def lattice_flow(shape, *, n_layers: int = 8, hidden=(16, 16), kernel_size: int = 3, equivariant: bool = False,
                 prior_scale: float = 1.0, dtype=torch.float64) -> CouplingFlow:
    """A checkerboard affine coupling flow on a (L0, L1) periodic lattice over N(0, prior_scale^2)."""
    shape = tuple(shape)
    if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2 for s in shape):
        raise ValueError(f"shape must be two integer extents >= 2, got {shape}")
    shape = tuple(int(s) for s in shape)
    check_int(n_layers, "n_layers")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not prior_scale > 0:
        raise ValueError(f"prior_scale must be > 0, got {prior_scale!r}")
    layers = [AffineCoupling(ConvConditioner(hidden, kernel_size, dtype), checkerboard(shape, k % 2, dtype),
                             equivariant) for k in range(n_layers)]
    return CouplingFlow(GaussianPrior(torch.full(shape, float(prior_scale), dtype=dtype)), layers)
