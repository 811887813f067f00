"""Classical baselines: truncated SVD and Tikhonov regularisation.

Both act on the whitened problem A rho ~ b (see problem.py), chi^2 = ||A rho - b||^2.

TSVD keeps the k largest singular components, rho_k = sum_{i<k} (u_i.b / s_i) v_i, with the
smallest k whose chi^2 reaches the discrepancy target. The target is N_p + 2 sqrt(2 N_p) by
default: chi^2 of the true rho scatters around N_p with width sqrt(2 N_p), and a realisation
above N_p would otherwise force the fit into the noise (measured: single noise seeds then
give sum (Delta rho)^2 ~ 1e12 on the Gaussian spectra); ``tau`` sets the target tau N_p
instead. Its band is the propagated noise, cov(rho_k) = V_k S_k^-2 V_k^T.

Tikhonov minimises chi^2 + lambda ||L rho||^2 with L = 1 ('identity') or the second
difference ('second-derivative', rows rho_{j-1} - 2 rho_j + rho_{j+1}, plus rows pinning
rho at both ends of the grid, which makes L invertible: spectral functions vanish at
omega -> 0 and at the top of a wide grid). lambda is chosen so that chi^2 meets the
discrepancy target ('discrepancy', as for TSVD) or by minimising generalised cross-validation
('gcv').
Unconstrained solutions come from the SVD of A L^-1 (standard form), so every lambda is
cheap and the band is the propagated noise. With ``positive=True`` (the default) the solution
is the non-negative least-squares solution of the stacked system [A; sqrt(lambda) L] rho =
[b; 0] (scipy's NNLS), and there is no linear band. lambda then follows the discrepancy
principle by bisection over the eight decades below the unconstrained choice (at fixed
lambda the constraint raises chi^2 + lambda ||L rho||^2, and usually chi^2, so the positive
solution usually needs a smaller lambda to reach the target; where chi^2 is still below the
target at the unconstrained lambda, the bracket moves up a decade at a time); with 'gcv' it
is the unconstrained problem's GCV choice (GCV is not defined for the constrained solution). ``effective_dof``
in the diagnostics is the unconstrained problem's at the final lambda.

The bands of TSVD and of unconstrained Tikhonov are the noise propagated at the chosen k or
lambda: at a fixed k or lambda they matched the spread of rho over 200 noise seeds to 0.97-1.03
(BW and Gaussian at N_p = 25, two BW at N_p = 100). They leave out the choice of k or lambda
from the same data (two BW: rank 8 or 9 about evenly, and the band was 0.18 of the spread;
lambda moving by ~30 %: 0.4-0.76) and the regularisation's bias, which on these cells is 5-18
times the spread, so they rarely cover the truth (2-16 % of grid points).

Defaults, measured on benchmarks/bench_spectral.py (3 noise seeds, sum (Delta rho)^2 over the
18 cells of BW, two BW and narrow BW): second derivative with positivity is the best of the
three variants on 14 cells, identity (unconstrained) on 4, the unconstrained second
derivative on none (BW, N_p = 100 noisy: 1.10 positive, 1.63 identity, 5.08 unconstrained).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .problem import Problem, Reconstruction

__all__ = ["tsvd", "tikhonov", "regulariser_matrix"]


def discrepancy_target(n: int, tau: float | None) -> float:
    """chi^2 the discrepancy principle aims at: tau n, or n + 2 sqrt(2 n) when tau is None."""
    if tau is None:
        return n + 2.0 * np.sqrt(2.0 * n)
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be finite and > 0, got {tau}")
    return tau * n


def tsvd(prob: Problem, *, tau: float | None = None) -> Reconstruction:
    U, s, Vt = np.linalg.svd(prob.A, full_matrices=False)
    beta = U.T @ prob.b
    outside = float(prob.b @ prob.b - beta @ beta)  # part of b no component can fit
    tail = np.concatenate([np.cumsum((beta**2)[::-1])[::-1], [0.0]])  # chi2 if k components kept
    chi2_k = tail + max(outside, 0.0)
    target = discrepancy_target(prob.n, tau)
    ok = np.nonzero(chi2_k <= target)[0]
    k = int(ok[0]) if len(ok) else len(s)
    coef = beta[:k] / s[:k]
    rho = Vt[:k].T @ coef
    band = np.sqrt(((Vt[:k].T / s[:k]) ** 2).sum(1))
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "tsvd", band,
                          {"rank": k, "singular_values": s, "chi2_by_rank": chi2_k, "chi2_target": target})


def regulariser_matrix(n: int, kind: str) -> np.ndarray:
    if kind == "identity":
        return np.eye(n)
    if kind == "second-derivative":
        L = np.zeros((n, n))
        L[0, 0] = L[-1, -1] = 1.0
        i = np.arange(1, n - 1)
        L[i, i - 1], L[i, i], L[i, i + 1] = 1.0, -2.0, 1.0
        return L
    raise ValueError(f"regulariser must be 'identity' or 'second-derivative', got {kind!r}")


def _bisect_log(f, lo, hi, n_iter=60):
    """Root of the increasing function f(log10 lam) on [lo, hi] by bisection."""
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def tikhonov(prob: Problem, *, regulariser: str = "second-derivative", positive: bool = True,
             choose: str = "discrepancy", lam: float | None = None, tau: float | None = None) -> Reconstruction:
    if choose not in ("discrepancy", "gcv"):
        raise ValueError(f"choose must be 'discrepancy' or 'gcv', got {choose!r}")
    target = discrepancy_target(prob.n, tau)
    L = regulariser_matrix(len(prob.omega), regulariser)
    Linv = np.linalg.inv(L)
    U, s, Vt = np.linalg.svd(prob.A @ Linv, full_matrices=False)
    beta = U.T @ prob.b
    outside = max(float(prob.b @ prob.b - beta @ beta), 0.0)

    def chi2_of(log_lam):  # chi^2 of the unconstrained solution, increasing in lambda
        lm = 10.0**log_lam
        return float(((lm / (s**2 + lm)) * beta) @ ((lm / (s**2 + lm)) * beta)) + outside

    def gcv(log_lam):
        lm = 10.0**log_lam
        return chi2_of(log_lam) / (prob.n - float((s**2 / (s**2 + lm)).sum())) ** 2

    lo, hi = np.log10(s[-1] ** 2 + 1e-300) - 2, np.log10(s[0] ** 2) + 4
    if lam is None:
        if choose == "gcv":
            grid = np.linspace(lo, hi, 400)
            g = [gcv(x) for x in grid]
            j = int(np.argmin(g))
            res = optimize.minimize_scalar(gcv, bounds=(grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]),
                                           method="bounded")
            log_lam = float(res.x)
        elif chi2_of(lo) > target:
            log_lam = lo  # even the least regularised fit misses the discrepancy target
        else:
            log_lam = _bisect_log(lambda x: chi2_of(x) - target, lo, hi)
    else:
        if not (np.isfinite(lam) and lam > 0):
            raise ValueError(f"lam must be finite and > 0, got {lam}")
        log_lam = float(np.log10(lam))
    lm = 10.0**log_lam
    f = s / (s**2 + lm)
    R = Linv @ (Vt.T * f) @ U.T  # rho = R b (unconstrained)
    diag = {"lambda": lm, "regulariser": regulariser, "choose": choose, "positive": positive, "chi2_target": target,
            "effective_dof": float((s**2 / (s**2 + lm)).sum())}
    if not positive:
        rho = R @ prob.b
        band = np.sqrt((R**2).sum(1))
        return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "tikhonov", band, diag)

    def solve(log_l):
        stacked = np.vstack([prob.A, np.sqrt(10.0**log_l) * L])
        rhs = np.concatenate([prob.b, np.zeros(len(L))])
        return optimize.nnls(stacked, rhs, maxiter=50 * len(L))[0]

    if lam is None and choose == "discrepancy":
        # Positivity usually raises chi^2 at fixed lambda, so the search starts below the
        # unconstrained lambda; where the non-negative fit is the closer one (chi^2 still under
        # the target there: audited at N_p = 12 and 25, eps 1e-3) the bracket's top moves up.
        def excess(x):
            return prob.chi2(solve(x)) - target
        a, b = log_lam - 8, log_lam
        while excess(b) < 0 and b < hi:
            a, b = b, min(b + 1.0, hi)
        if excess(a) > 0:
            log_lam = a
        else:
            log_lam = _bisect_log(excess, a, b, n_iter=25)
        diag["lambda"] = 10.0**log_lam
        diag["effective_dof"] = float((s**2 / (s**2 + 10.0**log_lam)).sum())
    rho = solve(log_lam)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "tikhonov", None, diag)
