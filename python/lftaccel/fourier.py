"""Real orthonormal Fourier (Matsubara) coefficients of periodic paths.

For a path x_0..x_{N-1} the coefficients are interleaved by frequency,
``c = (c_0, a_1, b_1, a_2, b_2, ...)``, ending with ``a_{N/2}`` alone when N is even:

    x_n = [c_0 + sqrt(2) sum_{1<=k<N/2} (a_k cos(2 pi k n / N) + b_k sin(2 pi k n / N))
           + (-1)^n a_{N/2}] / sqrt(N)

The map is orthogonal: sum_n x_n^2 = sum_j c_j^2, the inverse is the transpose, and
a gradient transforms like a path (dS/dc = to_fourier(dS/dx)). Coefficient j has
frequency k_j = (j + 1) // 2 and lattice-Laplacian eigenvalue 4 sin^2(pi k_j / N),
so the kinetic term sum_n (x_{n+1} - x_n)^2 equals sum_j 4 sin^2(pi k_j / N) c_j^2.
Both functions act on the last dimension, accept torch tensors or numpy arrays, and
are differentiable (torch.fft).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["to_fourier", "from_fourier", "frequencies", "laplacian_eigenvalues"]


def _as_tensor(x, name):
    if isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float64) or not x.dtype.isnative:
            raise TypeError(f"{name} must have dtype float32 or float64 (native byte order), got {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{name} must have a time dimension, got a 0-d array")
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _check(t, name):
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {t.dtype}")
    if t.ndim < 1 or t.numel() == 0:
        raise ValueError(f"{name} must be non-empty with a last (time) dimension, got shape {tuple(t.shape)}")


def to_fourier(x):
    """Path (..., N) -> real Fourier coefficients (..., N)."""
    t, was_np = _as_tensor(x, "x")
    _check(t, "x")
    n = t.shape[-1]
    k = (n - 1) // 2  # number of (cos, sin) pairs
    X = torch.fft.rfft(t, norm="ortho")
    parts = [X[..., :1].real]
    if k > 0:
        pairs = torch.stack([X[..., 1 : k + 1].real, -X[..., 1 : k + 1].imag], dim=-1)
        parts.append(math.sqrt(2.0) * pairs.flatten(-2))
    if n % 2 == 0 and n > 1:
        parts.append(X[..., n // 2 : n // 2 + 1].real)
    c = torch.cat(parts, dim=-1)
    return c.numpy() if was_np else c


def from_fourier(c):
    """Real Fourier coefficients (..., N) -> path (..., N)."""
    t, was_np = _as_tensor(c, "c")
    _check(t, "c")
    n = t.shape[-1]
    k = (n - 1) // 2
    zero = torch.zeros_like(t[..., :1])
    re = [t[..., :1]]
    im = [zero]
    if k > 0:
        pairs = t[..., 1 : 2 * k + 1].unflatten(-1, (k, 2)) / math.sqrt(2.0)
        re.append(pairs[..., 0])
        im.append(-pairs[..., 1])
    if n % 2 == 0 and n > 1:
        re.append(t[..., n - 1 :])
        im.append(zero)
    X = torch.complex(torch.cat(re, dim=-1), torch.cat(im, dim=-1))
    x = torch.fft.irfft(X, n=n, norm="ortho")
    return x.numpy() if was_np else x


def frequencies(n: int) -> torch.Tensor:
    """Integer frequency k_j of each coefficient j = 0..n-1."""
    return (torch.arange(n) + 1) // 2


def laplacian_eigenvalues(n: int, dtype=torch.float64) -> torch.Tensor:
    """Eigenvalue 4 sin^2(pi k_j / n) of the periodic lattice Laplacian on coefficient j."""
    return 4 * torch.sin(math.pi * frequencies(n).to(dtype) / n) ** 2
