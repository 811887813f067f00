"""XY model with torch.roll."""

import torch


def xy_action(theta: torch.Tensor, beta: float) -> torch.Tensor:
    """S = -beta sum_x sum_mu cos(theta(x) - theta(x+mu)), per config."""
    dims = tuple(range(1, theta.dim()))
    links = sum(torch.cos(theta - torch.roll(theta, -1, d)) for d in dims)
    return -beta * links.sum(dim=dims)


def xy_grad(theta: torch.Tensor, beta: float) -> torch.Tensor:
    dims = tuple(range(1, theta.dim()))
    return beta * sum(
        torch.sin(theta - torch.roll(theta, -1, d)) + torch.sin(theta - torch.roll(theta, 1, d))
        for d in dims
    )
