"""Oscillator path action, in time and in Matsubara (Fourier) space."""

import torch

from ..fourier import from_fourier, to_fourier


def _potential(x, c0, c2, c4):
    return c0 + c2 * x**2 + c4 * x**4


def oscillator_action(x, beta, m, c0, c2, c4):
    """S_E = a sum_n [m (x_{n+1} - x_n)^2 / (2 a^2) + V(x_n)], a = beta / N; x is (batch, N)."""
    a = beta / x.shape[-1]
    kinetic = m * (torch.roll(x, -1, -1) - x) ** 2 / (2 * a**2)
    return a * (kinetic + _potential(x, c0, c2, c4)).sum(-1)


def oscillator_grad(x, beta, m, c0, c2, c4):
    a = beta / x.shape[-1]
    laplacian = 2 * x - torch.roll(x, -1, -1) - torch.roll(x, 1, -1)
    return m * laplacian / a + a * (2 * c2 * x + 4 * c4 * x**3)


def oscillator_fourier_action(c, beta, m, c0, c2, c4):
    """The same action, as a function of the real Fourier coefficients c of the path."""
    return oscillator_action(from_fourier(c), beta, m, c0, c2, c4)


def oscillator_fourier_grad(c, beta, m, c0, c2, c4):
    """dS/dc = F dS/dx (the basis is orthonormal)."""
    return to_fourier(oscillator_grad(from_fourier(c), beta, m, c0, c2, c4))
