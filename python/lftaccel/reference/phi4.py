"""phi^4 in the hopping and standard forms, with torch.roll.

Powers above the cube are products of squares: torch (2.13, CPU) evaluates phi**4 with a
scalar std::pow, 30x slower than phi**2 (1.5 ms against 0.05 ms on 64 x 64^2 float64,
one core), which made that one term 45 % of the twin's time and its benchmarks' baseline
slower than plain torch needs to be."""

import torch


def _lattice_dims(phi):
    return tuple(range(1, phi.dim()))


def phi4_action(phi: torch.Tensor, kappa: float, lam: float) -> torch.Tensor:
    """S = sum_x [-2 kappa sum_mu phi(x) phi(x+mu) + (1 - 2 lam) phi^2 + lam phi^4], per config."""
    dims = _lattice_dims(phi)
    hop = sum(torch.roll(phi, -1, d) for d in dims)
    phi2 = phi**2
    density = -2 * kappa * phi * hop + (1 - 2 * lam) * phi2 + lam * phi2**2
    return density.sum(dim=dims)


def phi4_grad(phi: torch.Tensor, kappa: float, lam: float) -> torch.Tensor:
    dims = _lattice_dims(phi)
    hop = sum(torch.roll(phi, -1, d) + torch.roll(phi, 1, d) for d in dims)
    return -2 * kappa * hop + 2 * (1 - 2 * lam) * phi + 4 * lam * phi**3


def phi4_action_and_grad(phi: torch.Tensor, kappa: float, lam: float):
    """(phi4_action, phi4_grad) in one pass, written for speed in plain torch: each neighbour
    roll taken once, and the action read off the gradient g as
    S = sum_x [phi g / 2 - lam phi^4] (phi g counts each link twice, since the periodic sum of
    phi(x) phi(x - mu) is that of phi(x) phi(x + mu), and holds 2 lam phi^4), which is the sum
    the compiled kernel takes too. The benchmarks time it beside the two plain twins above as
    a faster pure-torch baseline; it agrees with them to rounding."""
    dims = _lattice_dims(phi)
    hop = torch.roll(phi, -1, dims[0])
    for d in dims[1:]:
        hop += torch.roll(phi, -1, d)
    for d in dims:
        hop += torch.roll(phi, 1, d)
    phi2 = phi * phi
    grad = phi * (2 * (1 - 2 * lam) + 4 * lam * phi2)
    grad.add_(hop, alpha=-2 * kappa)
    action = 0.5 * (phi * grad).sum(dim=dims) - lam * (phi2 * phi2).sum(dim=dims)
    return action, grad


def phi4_standard_action(phi: torch.Tensor, m2: float, lam: float) -> torch.Tensor:
    """S = sum_x [sum_mu (phi(x+mu) - phi(x))^2 + m2 phi^2 + lam phi^4], per config."""
    dims = _lattice_dims(phi)
    kinetic = sum((torch.roll(phi, -1, d) - phi) ** 2 for d in dims)
    phi2 = phi**2
    return (kinetic + m2 * phi2 + lam * phi2**2).sum(dim=dims)
