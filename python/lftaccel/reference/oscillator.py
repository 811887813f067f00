"""Oscillator path action, in time and in Matsubara (Fourier) space."""

import torch

from ..fourier import from_fourier, laplacian_eigenvalues, to_fourier


def _potential(x, c0, c2, c4):
    x2 = x**2  # x2**2, not x**4: see reference/phi4.py
    return c0 + c2 * x2 + c4 * x2**2


def _potential_force(x, c2, c4):
    return 2 * c2 * x + 4 * c4 * x**3


def oscillator_action(x, beta, m, c0, c2, c4):
    """S_E = a sum_n [m (x_{n+1} - x_n)^2 / (2 a^2) + V(x_n)], a = beta / N; x is (batch, N)."""
    a = beta / x.shape[-1]
    kinetic = m * (torch.roll(x, -1, -1) - x) ** 2 / (2 * a**2)
    return a * (kinetic + _potential(x, c0, c2, c4)).sum(-1)


def oscillator_grad(x, beta, m, c0, c2, c4):
    a = beta / x.shape[-1]
    laplacian = 2 * x - torch.roll(x, -1, -1) - torch.roll(x, 1, -1)
    return m * laplacian / a + a * _potential_force(x, c2, c4)


def oscillator_action_and_grad(x, beta, m, c0, c2, c4):
    """(oscillator_action, oscillator_grad) in one pass: the forward differences d_n = x_{n+1} - x_n
    taken once, for the kinetic term and for its gradient m (d_{n-1} - d_n) / a (the benchmarks'
    one-pass pure-torch baseline, beside the two plain twins)."""
    a = beta / x.shape[-1]
    d = torch.roll(x, -1, -1) - x
    x2 = x * x
    action = (m / (2 * a)) * (d * d).sum(-1) + a * (c0 + c2 * x2 + c4 * x2 * x2).sum(-1)
    grad = (m / a) * (torch.roll(d, 1, -1) - d) + a * x * (2 * c2 + 4 * c4 * x2)
    return action, grad


def oscillator_fourier_action(c, beta, m, c0, c2, c4):
    """The same action, as a function of the real Fourier coefficients c of the path."""
    return oscillator_action(from_fourier(c), beta, m, c0, c2, c4)


def oscillator_fourier_grad(c, beta, m, c0, c2, c4):
    """dS/dc = F dS/dx (the basis is orthonormal)."""
    return to_fourier(oscillator_grad(from_fourier(c), beta, m, c0, c2, c4))


def oscillator_matsubara_terms(c, path, beta, m, c0, c2, c4):
    """The elementwise Matsubara kernel's three outputs, given c and its path x = from_fourier(c):
    the action sum_j m l_j c_j^2 / (2 a) + a sum_n V(x_n), the kinetic gradient m l_j c_j / a
    in c-space and the potential gradient a V'(x_n) in x-space (dS/dc is the first plus
    to_fourier of the second)."""
    a = beta / c.shape[-1]
    lap = laplacian_eigenvalues(c.shape[-1], c.dtype).to(c.device)
    action = (m / (2 * a)) * (lap * c**2).sum(-1) + a * _potential(path, c0, c2, c4).sum(-1)
    return action, (m / a) * lap * c, a * _potential_force(path, c2, c4)
