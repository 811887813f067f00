"""XY model with torch.roll."""

import torch


def xy_action(theta: torch.Tensor, beta: float) -> torch.Tensor:
    """S = -beta sum_x sum_mu cos(theta(x) - theta(x+mu)), per config."""
    dims = tuple(range(1, theta.dim()))
    links = sum(torch.cos(theta - torch.roll(theta, -1, d)) for d in dims)
    return -beta * links.sum(dim=dims)


def xy_grad(theta: torch.Tensor, beta: float) -> torch.Tensor:
    """beta sum_mu [sin(theta(x) - theta(x+mu)) + sin(theta(x) - theta(x-mu))]: the second
    term is minus the first at x - mu, so each link's sine is taken once."""
    dims = tuple(range(1, theta.dim()))
    grad = torch.zeros_like(theta)
    for d in dims:
        s = torch.sin(theta - torch.roll(theta, -1, d))
        grad += s - torch.roll(s, 1, d)
    return beta * grad


def xy_action_and_grad(theta: torch.Tensor, beta: float):
    """(xy_action, xy_grad) in one pass: each link's angle difference taken once for its cosine
    and its sine (the benchmarks' one-pass pure-torch baseline, beside the two plain twins)."""
    dims = tuple(range(1, theta.dim()))
    links = theta.new_zeros(theta.shape[:1])
    grad = torch.zeros_like(theta)
    for d in dims:
        diff = theta - torch.roll(theta, -1, d)
        links += torch.cos(diff).sum(dim=dims)
        s = torch.sin(diff)
        grad += s
        grad -= torch.roll(s, 1, d)
    return -beta * links, beta * grad
