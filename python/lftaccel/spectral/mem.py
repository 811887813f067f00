"""Maximum entropy with Bryan's algorithm.

Q(rho) = alpha S(rho) - chi^2 / 2 with the Shannon-Jaynes entropy relative to a default
model m, S = sum_j dw_j [rho_j - m_j - rho_j ln(rho_j / m_j)]. Stationarity,
-alpha D ln(rho / m) = A^T (A rho - b) with D = diag(dw), puts ln(rho / m) in the span of
D^-1 V, V the right singular vectors of the whitened kernel A = U Sigma V^T. Bryan's
algorithm keeps the s singular directions above a relative cutoff and solves for the s
coefficients u of ln(rho / m) = D^-1 V_s u, F(u) = alpha u + Sigma_s U_s^T (A rho - b) = 0,
by Newton steps with Bryan's step control (Levenberg-Marquardt damping until the step is
short in the entropy metric). Positivity is built in.

alpha:
  * 'marginal' (Bryan): solve on a log grid of alpha, weight each solution by the posterior
    P(alpha | D) ~ exp(Q) prod_i sqrt(alpha / (alpha + lambda_i)) / alpha (Jeffreys prior;
    lambda_i the eigenvalues of sqrt(rho/dw) A^T A sqrt(rho/dw)), and average;
  * 'chi2-kink': fit log10 chi^2 against log10 alpha with a logistic curve a + b / (1 +
    exp(-c (x - d))) and take x = d - 2.5 / c, where chi^2 leaves its noise plateau (the
    choice of ana-cont). The fit is bounded to a rising step (b, c > 0) centred (d) inside
    the scanned range: where chi^2 never reaches a plateau (data so precise that the
    truncated grid cannot fit them) a free fit put the kink at alpha = 1e45, i.e. at the
    largest alpha scanned, rho = the default model (Lorentzian, N_p = 25, eps = 1e-5:
    chi^2/N 3.5e7, sum (Delta rho)^2 11.8; bounded: alpha = 3, chi^2/N 11, 2.9). If no
    logistic fits at all, the kink is the point of largest curvature of log chi^2;
  * a positive number: that alpha.
The marginal posterior is only as good as its alpha grid: when its largest weight sits on the
grid's smallest alpha the maximum lies below it, and a warning says to widen alpha_range.
The band is the Gaussian width of the posterior at the solution, sqrt(diag (alpha D/rho +
A^T A)^-1) (averaged over alpha with the same weights for 'marginal').
Default model: flat, at the level whose propagator matches the data at the smallest p, or
the user's array.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize

from .kernels import grid_weights
from .problem import Problem, Reconstruction

__all__ = ["maxent"]


def _solve(prob, m, dw, Us, sv, Vs, alpha, u0, max_iter=300, tol=1e-9):
    """Bryan's Newton iteration for the maximum of Q at one alpha. Returns (u, rho, converged).

    The step solves ((alpha + mu) + M T) du = -g with M = Sigma^2 and T = V^T diag(rho/dw) V,
    and mu >= 0 is raised until the step's length in the entropy metric, du^T T du, is at
    most 0.2 sum(m dw) (Bryan's step control) and -Q does not increase."""
    W = Vs / dw[:, None]
    M = sv**2
    limit = 0.2 * float(np.sum(m * dw))
    eye = np.eye(len(u0))

    def state(u):
        with np.errstate(over="ignore", invalid="ignore"):  # a wild trial step: -Q is not finite, rejected
            rho = m * np.exp(np.clip(W @ u, -600, 600))
            r = prob.A @ rho - prob.b
            minus_q = -alpha * float(np.sum(dw * (rho - m - rho * (W @ u)))) + 0.5 * float(r @ r)
        return rho, r, minus_q

    u = u0.copy()
    rho, r, fq = state(u)
    for _ in range(max_iter):
        g = alpha * u + sv * (Us.T @ r)
        T = Vs.T @ (W * rho[:, None])
        mu = 0.0
        for _ in range(80):
            du = np.linalg.solve((alpha + mu) * eye + M[:, None] * T, -g)
            if du @ T @ du <= limit:
                rho_n, r_n, fq_n = state(u + du)
                if np.isfinite(fq_n) and fq_n <= fq + 1e-12 * abs(fq):
                    break
            mu = max(2 * mu, alpha * 1e-3, 1e-12) * 4
        else:  # no step lowers -Q: at the maximum to rounding, or stuck
            return u, rho, bool(np.sqrt(max(du @ T @ du, 0.0)) < 1e-6 * np.sqrt(limit))
        u, rho, r, fq = u + du, rho_n, r_n, fq_n
        if np.sqrt(max(du @ T @ du, 0.0)) < tol * np.sqrt(limit):  # rounding can make it -0
            return u, rho, True
    return u, rho, False


def _band(prob, dw, rho, alpha):
    """The Gaussian width of the posterior at rho: sqrt(diag (alpha D/rho + A^T A)^-1)."""
    H = np.diag(alpha * dw / rho) + prob.A.T @ prob.A
    return np.sqrt(np.clip(np.diag(np.linalg.inv(H)), 0, None))


def maxent(prob: Problem, *, alpha: str | float = "marginal", default_model=None, n_alpha: int = 40,
           alpha_range=(1e-4, 1e6), svd_cutoff: float = 1e-12) -> Reconstruction:
    fixed = not isinstance(alpha, str)
    if fixed:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not (
                np.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be 'marginal', 'chi2-kink' or a positive number, got {alpha!r}")
    elif alpha not in ("marginal", "chi2-kink"):
        raise ValueError(f"alpha must be 'marginal', 'chi2-kink' or a positive number, got {alpha!r}")
    if isinstance(n_alpha, bool) or not isinstance(n_alpha, (int, np.integer)) or n_alpha < 8:
        raise ValueError(f"n_alpha must be an integer >= 8 (the chi^2-kink fit has 4 parameters), got {n_alpha!r}")
    lo, hi = (float(v) for v in alpha_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"alpha_range must be (low, high) with 0 < low < high, got {alpha_range!r}")
    dw = grid_weights(prob.omega)
    if default_model is None:
        i = int(np.argmin(prob.p))
        level = prob.D[i] / prob.K[i].sum()
        if not level > 0:
            raise ValueError("a flat default model needs D > 0 at the smallest p; pass default_model")
        m = np.full(len(prob.omega), level)
    else:
        m = np.asarray(default_model, dtype=np.float64)
        if m.shape != prob.omega.shape or not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise ValueError("default_model must be finite, > 0 and shaped like omega")
    U, sv, Vt = np.linalg.svd(prob.A, full_matrices=False)
    s = int(np.sum(sv > svd_cutoff * sv[0]))
    Us, sv, Vs = U[:, :s], sv[:s], Vt[:s].T
    u = np.zeros(s)
    # Large -> small alpha, from the default model down: each solution starts the next. Newton
    # from the default model does not reach a small alpha's maximum within max_iter when the
    # data are precise (a cold start at alpha = 1 on the Lorentzian, N_p = 25, eps = 1e-5,
    # stopped at chi^2/N 1e7), so a fixed alpha is reached along the same path.
    top, bottom = (max(hi, float(alpha)), float(alpha)) if fixed else (hi, lo)
    alphas = np.logspace(np.log10(top), np.log10(bottom), n_alpha)
    sols = []
    for a in alphas:
        u, rho, ok = _solve(prob, m, dw, Us, sv, Vs, a, u)
        chi2 = prob.chi2(rho)
        S = float(np.sum(dw * (rho - m - rho * np.log(rho / m))))
        B = prob.A * np.sqrt(rho / dw)[None, :]
        lam = np.linalg.svd(B, compute_uv=False) ** 2
        log_post = a * S - chi2 / 2 + 0.5 * np.sum(np.log(a / (a + lam))) - np.log(a)
        sols.append({"alpha": a, "u": u, "rho": rho, "chi2": chi2, "entropy": S, "log_posterior": log_post,
                     "converged": ok})
        # Smaller alphas only cost time once they cannot matter: for 'marginal' when the
        # posterior has fallen far below its maximum, for 'chi2-kink' when chi^2 has reached
        # its noise plateau (changes of < 1% over four alphas).
        lp = [x["log_posterior"] for x in sols]
        if alpha == "marginal" and len(lp) > 3 and lp[-1] < max(lp) - 30 and lp[-1] < lp[-2]:
            break
        c = [x["chi2"] for x in sols]
        if alpha == "chi2-kink" and len(c) > 8 and all(abs(c[-k] / c[-k - 1] - 1) < 0.01 for k in range(1, 5)):
            break
    alphas = alphas[: len(sols)]
    logp = np.array([x["log_posterior"] for x in sols])
    chi2s = np.array([x["chi2"] for x in sols])
    diag = {"alphas": alphas, "chi2": chi2s, "log_posterior": logp, "n_singular": s,
            "converged": all(x["converged"] for x in sols), "default_level": float(m.mean())}

    if fixed:
        rho = sols[-1]["rho"]
        band = _band(prob, dw, rho, float(alpha))
        diag.update(alpha=float(alpha), converged=sols[-1]["converged"])
    elif alpha == "marginal":
        # P(alpha) on the log grid: d alpha / alpha, so the weights are P(alpha) alpha.
        w = np.exp(logp + np.log(alphas) - np.max(logp + np.log(alphas)))
        w /= w.sum()
        if np.argmax(w) == len(w) - 1 and len(sols) == n_alpha:
            warnings.warn(f"maxent: the alpha posterior peaks at the smallest alpha scanned ({alphas[-1]:.3g}); "
                          "its maximum lies below: widen alpha_range", RuntimeWarning, stacklevel=3)
        rho = sum(wi * x["rho"] for wi, x in zip(w, sols))
        keep = w > 1e-4
        band = np.sqrt(sum(wi * _band(prob, dw, x["rho"], x["alpha"]) ** 2 for wi, x, k in zip(w, sols, keep) if k)
                       / w[keep].sum())
        diag.update(weights=w, alpha=float(np.exp(np.sum(w * np.log(alphas)))))
    else:
        x, y = np.log10(alphas), np.log10(chi2s)

        def logistic(x, a, b, c, d):
            return a + b / (1 + np.exp(-c * (x - d)))

        try:  # a rising step (b, c > 0) centred inside the scanned range
            with warnings.catch_warnings():
                warnings.simplefilter("error", optimize.OptimizeWarning)  # no covariance: no logistic fit
                (a0, b0, c0, d0), _ = optimize.curve_fit(
                    logistic, x, y, p0=(y.min(), max(y.max() - y.min(), 1e-3), 1.0, x.mean()),
                    bounds=([-np.inf, 0.0, 0.0, x.min()], [np.inf, np.inf, np.inf, x.max()]), max_nfev=20000)
            x_kink = d0 - 2.5 / c0
        except (RuntimeError, ValueError, optimize.OptimizeWarning):
            # No logistic shape: the point of largest curvature of log chi^2 (x runs large -> small).
            x_kink = x[1:-1][np.argmax(np.diff(y, 2))]
            diag.update(kink_fallback=True)
        # Below the scanned range when chi^2 has not reached its plateau there: the smallest alpha.
        x_kink = float(np.clip(x_kink, x.min(), x.max()))
        j = int(np.argmin(np.abs(x - x_kink)))
        j = max(j - 1, 0) if x[j] < x_kink else j  # start from the grid's solution just above the kink
        u, rho, ok = _solve(prob, m, dw, Us, sv, Vs, 10.0**x_kink, sols[j]["u"])
        if not ok:
            rho = sols[int(np.argmin(np.abs(x - x_kink)))]["rho"]
        band = _band(prob, dw, rho, 10.0**x_kink)
        diag.update(alpha=float(10.0**x_kink))
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "mem", band, diag)
