"""Neural-network representations of rho, optimised by automatic differentiation (torch, float64).

  * 'nn':  rho_a = omega_a softplus(f_a), f the output (one value per grid point) of a
    network fed a constant input, with ``depth`` hidden layers of width 64 (``activation``
    'linear', i.e. none, or 'elu'). Depth 0 is the "list" representation: f is a free vector.
  * 'p2p': rho(omega) = omega softplus(net(omega)), a point-to-point network (ELU layers).
rho >= 0 and rho(0) = 0 hold by construction.

Loss: chi^2 (whitened; the full covariance when given) + smooth sum_a (rho_{a+1} - rho_a)^2
+ l2(t) ||weights||^2, with the L2 weight annealed to zero over the stages of the fit; the
last stage (l2 = 0) is the fine-tuning phase. A stage stops early once chi^2 <= N_p.

Optimiser. 'lbfgs' (default): the whitened chi^2 is extremely stiff (the kernel's singular
values span ~15 decades), and measured on the two-BW benchmark case Adam had not brought
chi^2/N below 1e6 after 8000 steps while L-BFGS with a strong-Wolfe line search fits in a
few thousand iterations. 'adam': Adam with the same loss, ``steps`` per stage, learning
rate ``lr`` (10x smaller in the fine-tuning stage), as in the published approach.

Band: an ensemble of ``n_ensemble`` fits, each on the data resampled within its errors
(b + z in whitened form) and from its own initialisation; rho is the ensemble mean, the
band its standard deviation (no band for n_ensemble = 1).
"""

from __future__ import annotations

import numpy as np
import torch

from .problem import Problem, Reconstruction

__all__ = ["nn", "p2p"]


class ListNet(torch.nn.Module):
    """f from a constant input through ``depth`` hidden layers (depth 0: f is the parameter)."""

    def __init__(self, n_out: int, depth: int, width: int, activation: str):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 3:
            raise ValueError(f"depth must be an integer in 0..3, got {depth!r}")
        if activation not in ("linear", "elu"):
            raise ValueError(f"activation must be 'linear' or 'elu', got {activation!r}")
        if depth == 0:
            self.f = torch.nn.Parameter(torch.zeros(n_out, dtype=torch.float64))
            self.net = None
        else:
            layers, d_in = [], 1
            for _ in range(depth):
                layers.append(torch.nn.Linear(d_in, width, dtype=torch.float64))
                if activation == "elu":
                    layers.append(torch.nn.ELU())
                d_in = width
            layers.append(torch.nn.Linear(d_in, n_out, dtype=torch.float64))
            self.net = torch.nn.Sequential(*layers)
        self.register_buffer("one", torch.ones(1, 1, dtype=torch.float64))

    def forward(self, omega):
        f = self.f if self.net is None else self.net(self.one)[0]
        return omega * torch.nn.functional.softplus(f)


class PointNet(torch.nn.Module):
    def __init__(self, depth: int, width: int, scale: float):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 4:
            raise ValueError(f"depth must be an integer in 1..4 for p2p, got {depth!r}")
        layers, d_in = [], 1
        for _ in range(depth):
            layers += [torch.nn.Linear(d_in, width, dtype=torch.float64), torch.nn.ELU()]
            d_in = width
        layers.append(torch.nn.Linear(d_in, 1, dtype=torch.float64))
        self.net = torch.nn.Sequential(*layers)
        self.scale = scale  # inputs omega / omega_max in [0, 1]

    def forward(self, omega):
        return omega * torch.nn.functional.softplus(self.net(omega[:, None] / self.scale)[:, 0])


def _fit(model, prob: Problem, b, omega, *, optimizer, l2, smooth, stages, iters, lr):
    A = torch.as_tensor(prob.A)
    bt = torch.as_tensor(b)
    weights = [p for n, p in model.named_parameters() if "bias" not in n and n != "f"]
    history = []

    def terms(l2_now):
        rho = model(omega)
        r = A @ rho - bt
        chi2 = r @ r
        loss = chi2 + smooth * ((rho[1:] - rho[:-1]) ** 2).sum()
        if l2_now > 0 and weights:
            loss = loss + l2_now * sum((w * w).sum() for w in weights)
        return loss, chi2

    # Annealed L2: l2, l2/10, ..., then 0 (the fine-tuning stage).
    schedule = [l2 * 10.0 ** (-k) for k in range(stages - 1)] + [0.0] if l2 > 0 else [0.0]
    for s, l2_now in enumerate(schedule):
        last = s == len(schedule) - 1
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=iters, history_size=50,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)

            def closure(opt=opt, l2_now=l2_now):
                opt.zero_grad()
                loss, _ = terms(l2_now)
                loss.backward()
                return loss

            opt.step(closure)
            with torch.no_grad():
                history.append(float(terms(l2_now)[1]))
        else:
            opt = torch.optim.Adam(model.parameters(), lr=lr / 10 if last else lr)
            for t in range(iters):
                opt.zero_grad()
                loss, chi2 = terms(l2_now)
                loss.backward()
                opt.step()
                if t % 100 == 0:
                    history.append(float(chi2.detach()))
                if last and float(chi2.detach()) <= prob.n:
                    break
        if history[-1] <= prob.n and not last:
            continue  # the data are fitted: the remaining stages only relax the L2 weight
    with torch.no_grad():
        rho = model(omega)
    return rho.numpy().copy(), history


def _ensemble(make, prob: Problem, *, n_ensemble, seed, resample, **fit):
    if isinstance(n_ensemble, bool) or not isinstance(n_ensemble, int) or n_ensemble < 1:
        raise ValueError(f"n_ensemble must be a positive integer, got {n_ensemble!r}")
    if fit["optimizer"] not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {fit['optimizer']!r}")
    omega = torch.as_tensor(prob.omega)
    rng = np.random.default_rng(seed)
    rhos, histories = [], []
    for k in range(n_ensemble):
        b = prob.b + (rng.standard_normal(prob.n) if (resample and n_ensemble > 1) else 0.0)
        torch.manual_seed(seed + k)
        rho, hist = _fit(make(), prob, b, omega, **fit)
        rhos.append(rho)
        histories.append(hist)
    rhos = np.array(rhos)
    band = rhos.std(0, ddof=1) if len(rhos) > 1 else None
    return rhos.mean(0), band, {"members": rhos, "chi2_history": histories}


def nn(prob: Problem, *, depth: int = 0, width: int = 64, activation: str = "elu", optimizer: str = "lbfgs",
       smooth: float = 100.0, l2: float = 1e-2, stages: int = 3, iters: int = 3000, lr: float = 1e-3,
       n_ensemble: int = 2, resample: bool = True, seed: int = 0) -> Reconstruction:
    """The 'NN' representation rho_a = omega_a softplus(net(const)_a); defaults measured on the
    two-BW benchmark case (see the module docstring)."""
    n = len(prob.omega)
    rho, band, diag = _ensemble(lambda: ListNet(n, depth, width, activation), prob, n_ensemble=n_ensemble,
                                seed=seed, resample=resample, optimizer=optimizer, l2=l2, smooth=smooth,
                                stages=stages, iters=iters, lr=lr)
    diag.update(depth=depth, activation=activation, optimizer=optimizer, n_ensemble=n_ensemble)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "nn", band, diag)


def p2p(prob: Problem, *, depth: int = 3, width: int = 64, optimizer: str = "lbfgs", smooth: float = 100.0,
        l2: float = 1e-3, stages: int = 3, iters: int = 3000, lr: float = 1e-3, n_ensemble: int = 2,
        resample: bool = True, seed: int = 0) -> Reconstruction:
    """The 'NN-P2P' representation rho(omega) = omega softplus(net(omega))."""
    scale = float(prob.omega.max())
    rho, band, diag = _ensemble(lambda: PointNet(depth, width, scale), prob, n_ensemble=n_ensemble, seed=seed,
                                resample=resample, optimizer=optimizer, l2=l2, smooth=smooth, stages=stages,
                                iters=iters, lr=lr)
    diag.update(depth=depth, optimizer=optimizer, n_ensemble=n_ensemble)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "p2p", band, diag)
