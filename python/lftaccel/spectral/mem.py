"""Maximum entropy: Bryan's method, the maximum of Q found on the dual.

Q(rho) = alpha S(rho) - chi^2 / 2 with the Shannon-Jaynes entropy relative to a default
model m, S = sum_j dw_j [rho_j - m_j - rho_j ln(rho_j / m_j)], chi^2 = |A rho - b|^2 in
whitened form. At the maximum, ln(rho / m) = -A^T lam / (alpha dw) with lam = A rho - b:
ln(rho / m) lies in the span of D^-1 V, V the right singular vectors of A (D = diag(dw)),
the N_p-dimensional space Bryan's algorithm works in. Positivity is built in.

Solver. lam maximises the concave dual g(lam) = sum alpha dw (m - rho(lam)) - |lam|^2 / 2
- lam.b; Newton's method on it with a backtracking line search ascends from any start (see
_solve). Bryan's Newton iteration on the singular-space coefficients u of ln(rho / m), with
his step control (Levenberg-Marquardt damping until the step is short in the entropy
metric), was used before and stalled: a Newton step well inside the length limit raised -Q
by 3e8 (the quadratic model of Q in u is poor far from rho = m), the damping grew until the
steps were ~1e-4 of the limit, and 300 iterations moved -Q in its fourth digit. On the
Lorentzian at N_p = 25, eps = 1e-3, 7 of 39 alphas converged; at eps = 1e-5 none did, the
marginal average had chi^2/N 13 and sum (Delta rho)^2 2.9, where the converged one has
chi^2/N 0.55 and 0.68. On the dual every alpha converges in 5-30 Newton steps, a MEM fit
takes ~2 s, and where the old iteration did converge (exact data) the results agree.

alpha:
  * 'marginal' (Bryan): solve on a log grid of alpha, weight each solution by the posterior
    P(alpha | D) ~ exp(Q) prod_i sqrt(alpha / (alpha + lambda_i)) / alpha (Jeffreys prior;
    lambda_i the eigenvalues of sqrt(rho/dw) A^T A sqrt(rho/dw)), and average. The scan runs
    down from alpha_range's top and stops once the posterior has fallen e^-30 below its
    maximum; it continues up to 8 decades below alpha_range when it has not, and warns if
    even that does not suffice, or if the posterior is still high at the range's top;
  * 'chi2-kink' (default): fit log10 chi^2 against log10 alpha with a logistic curve a + b / (1 +
    exp(-c (x - d))) and take x = d - 2.5 / c, where chi^2 leaves its noise plateau (the
    choice of ana-cont). The fit is bounded to a rising step (b, c > 0) centred (d) inside
    the scanned range: a free fit to the stalled solver's chi^2 curve, which had no plateau,
    put the kink at alpha = 1e45, i.e. the default model (Lorentzian, N_p = 25, eps = 1e-5:
    chi^2/N 3.5e7). If no logistic fits at all, the kink is the point of largest curvature
    of log chi^2;
  * a positive number: that alpha (reached along the same path of alphas from the top).
An alpha whose solve does not converge is left out of the posterior and the kink fit (unless
fewer than 4 converged) and does not start the next alpha: carried on, its residual drove
rho = m exp(-A^T lam / (alpha dw)) to overflow a few alphas later (fixed alpha = 1e-10, or
n_alpha = 8-10: "SVD did not converge").
The default is the one that works best on benchmarks/bench_spectral.py (20 noise seeds, 36
spectrum x protocol cells): the kink has the smaller mean sum (Delta rho)^2 on 20 cells, the
marginal average on 16 (the narrow BW, and multi-peak or Lorentzian spectra with noise);
the marginal's error is 2.0x the kink's in geometric mean over cells, and its spread over
noise seeds 13x larger in median (Gaussian, N_p = 25, eps = 1e-2: 8.8 +- 17.5 against
2.9 +- 1.0): its posterior reaches into small alphas whose solutions fit the noise (BW,
N_p = 25, eps = 1e-3, seed 0: weights 1e-3 to 1e-2 on alphas whose own sum (Delta rho)^2 is
30 to 100).
The band is the data's noise propagated to rho at the alpha used (the linear response of the
maximum, see _response; for 'marginal' that of the weighted mean at fixed weights): the
spread of rho over noise realisations, like TSVD's and Tikhonov's bands. It
leaves out the choice of alpha from the same data and the entropy's bias toward m, which
is most of the error at these noise levels. It is not the posterior's pointwise width
sqrt(diag (alpha D/rho + A^T A)^-1), the band before: that is set by the entropy's prior
variance rho / (alpha dw), grows as the grid is refined (250 / 500 / 1000 points at fixed
alpha: 0.21 / 0.31 / 0.44 over the BW peak) and was 15-26x the actual spread of rho over 20
noise seeds on three benchmark cells (BW and Gaussian at N_p = 25, two BW at N_p = 100),
where the propagated noise is 0.85-1.24x (fixed alpha).
Default model: flat, at the level whose propagator matches the data at the smallest p, or
the user's array.
The chi^2 of each alpha in the posterior and the kink is |lam|^2, the residual at the exact
maximum, which rounding in rho does not blur at small alpha (see _solve).
Diagnostics: the alphas scanned with chi^2, log posterior and convergence of each; the alpha
used (the posterior mean of ln alpha for 'marginal'); 'converged' (every solution with weight
> 1e-4, or the one used); and for a single alpha 'lam', the dual solution: rho =
m exp(-A^T lam / (alpha dw)).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize

from .._kernels import check_int
from .kernels import grid_weights
from .problem import Problem, Reconstruction, check_positive

__all__ = ["maxent"]


def _h(x):
    """e^-x - 1 + x >= 0, without the cancellation of the direct formula at small x."""
    with np.errstate(over="ignore"):  # +inf for x < -709: the step is rejected
        return np.where(np.abs(x) < 1e-3, x * x * (0.5 - x / 6 + x * x / 24), np.expm1(-x) + x)


def _solve(prob, m, dw, alpha, lam0, max_iter=100, polish=4):
    """The maximum of Q at one alpha, by Newton's method on the dual. Returns (lam, rho,
    converged, svals) with svals the singular values of A sqrt(rho / (alpha dw)) at lam.

    Q's maximum has ln(rho / m) = -A^T lam / (alpha dw) with lam = A rho - b, the whitened
    residual (the stationarity condition). lam maximises the concave dual
    g(lam) = sum alpha dw (m - rho(lam)) - |lam|^2 / 2 - lam.b, gradient A rho - b - lam and
    Hessian -(1 + B B^T), B = A diag(sqrt(rho / (alpha dw))). The Newton step comes from the
    SVD of B (forming 1 + B B^T loses the 1 when alpha is small); a backtracking line search
    on g, whose change along the step is evaluated without the cancellation of its large
    terms (b is ~1e9 on precise data), keeps every iterate finite and ascending.

    Converged: the Newton decrement grad.H^-1.grad (twice the predicted gain) is below
    1e-16 N_p. Then lam is settled, but the residual A rho - b is not: rounding in rho =
    m exp(-A^T lam / (alpha dw)) leaves |grad| = |A rho - b - lam| at a floor that grows as
    alpha falls (Lorentzian, N_p = 25, eps = 1e-5: ~1e-4 at alpha = 0.5, ~1e-2 at 0.01, ~1 at
    1e-4, where chi^2(rho) / N_p scatters 0.53-0.67 about |lam|^2 / N_p = 0.527). ``polish``
    more Newton steps follow and the iterate with the smallest |grad| is kept."""
    c = alpha * dw
    lam = lam0.copy()
    n = len(lam)
    best, settled = None, None
    with np.errstate(over="ignore"):
        if not np.all(np.isfinite(m * np.exp(-(prob.A.T @ lam) / c))):
            # a start that overflows rho (a residual carried from a much larger alpha): rho = m
            lam = np.zeros(n)

    def state(lam):
        with np.errstate(over="ignore"):
            rho = m * np.exp(-(prob.A.T @ lam) / c)
        grad = prob.A @ rho - prob.b - lam
        # U must span all N_p data directions; V (N_omega x N_omega) is never needed
        U, sb, _ = np.linalg.svd(prob.A * np.sqrt(rho / c), full_matrices=n > len(rho))
        return rho, grad, U, sb

    for it in range(max_iter + polish):
        rho, grad, U, sb = state(lam)
        s2 = np.zeros(n)
        s2[: len(sb)] = sb**2
        with np.errstate(over="ignore", invalid="ignore"):  # a runaway start: no ascent, left below
            step = U @ ((U.T @ grad) / (1.0 + s2))
            dec = float(grad @ step)
        if settled is None and dec <= 1e-16 * n:
            settled = it
        if settled is not None:  # polishing: keep the iterate with the smallest residual mismatch
            norm = float(np.linalg.norm(grad))
            if best is None or norm < best[0]:
                best = (norm, lam, rho, sb)
            if it >= settled + polish:
                break
        elif it >= max_iter:
            return lam, rho, False, sb
        a = prob.A.T @ step
        t = 1.0
        while True:
            with np.errstate(over="ignore", invalid="ignore"):
                gain = t * dec - 0.5 * t * t * float(step @ step) - float(np.sum(rho * c * _h(t * a / c)))
            if np.isfinite(gain) and gain >= 0.25 * t * dec:
                break
            t *= 0.5
            if t < 1e-10:  # no ascent left: at the maximum to rounding, or stuck
                if best is not None:
                    return best[1], best[2], True, best[3]
                return lam, rho, dec <= 1e-12 * n, sb
        lam = lam + t * step
    _, lam, rho, sb = best
    return lam, rho, True, sb


def _kink(x, y):
    """The chi^2 kink on the curve y = log10 chi^2 against x = log10 alpha (x running large
    -> small): (x_kink, fallback). A logistic a + b / (1 + exp(-c (x - d))) bounded to a
    rising step (b, c > 0) centred inside the scanned range, x_kink = d - 2.5 / c; else the
    point of largest curvature; clipped to the scanned range."""

    def logistic(x, a, b, c, d):
        return a + b / (1 + np.exp(-c * (x - d)))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", optimize.OptimizeWarning)  # no covariance: no logistic fit
            (_, _, c0, d0), _ = optimize.curve_fit(
                logistic, x, y, p0=(y.min(), max(y.max() - y.min(), 1e-3), 1.0, x.mean()),
                bounds=([-np.inf, 0.0, 0.0, x.min()], [np.inf, np.inf, np.inf, x.max()]), max_nfev=20000)
        x_kink, fallback = d0 - 2.5 / c0, False
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        x_kink, fallback = x[1:-1][np.argmax(np.diff(y, 2))], True
    # Below the scanned range when chi^2 has not reached its plateau there: the smallest alpha.
    return float(np.clip(x_kink, x.min(), x.max())), fallback


EXTEND_DECADES = 8  # how far the marginal scan may continue below alpha_range


def _response(prob, dw, rho, alpha):
    """J^T, (N_p, N_omega), with J = d rho / d b the linear response of the maximum at this
    alpha to the whitened data (unit covariance). From the dual, rho = m exp(-A^T lam /
    (alpha dw)) with lam = A rho - b, so d rho = -R A^T (A d rho - d b), R = diag(rho / (alpha
    dw)), and J = (1 + R A^T A)^-1 R A^T = R A^T (1 + A R A^T)^-1: an N_p x N_p solve that stays
    finite where rho underflows to 0. The band, the data's noise propagated to rho, is
    sqrt(diag J J^T)."""
    AR = prob.A * (rho / (alpha * dw))
    return np.linalg.solve(np.eye(prob.n) + AR @ prob.A.T, AR)  # the matrix is symmetric


def _band(prob, dw, rho, alpha):
    return np.sqrt(np.sum(_response(prob, dw, rho, alpha) ** 2, axis=0))


def maxent(prob: Problem, *, alpha: str | float = "chi2-kink", default_model=None, n_alpha: int = 40,
           alpha_range=(1e-4, 1e6)) -> Reconstruction:
    fixed = not isinstance(alpha, str)
    if fixed:
        alpha = check_positive(alpha, "alpha")
    elif alpha not in ("marginal", "chi2-kink"):
        raise ValueError(f"alpha must be 'marginal', 'chi2-kink' or a positive number, got {alpha!r}")
    check_int(n_alpha, "n_alpha", low=8)  # the chi^2-kink fit has 4 parameters
    try:
        lo, hi = (float(v) for v in alpha_range)
    except (TypeError, ValueError, OverflowError):
        lo = hi = float("nan")
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
    lam = np.zeros(prob.n)
    # Large -> small alpha, from the default model down: each solution starts the next (the
    # residual lam changes little from one alpha to the next).
    top, bottom = (max(hi, float(alpha)), float(alpha)) if fixed else (hi, lo)
    alphas = np.logspace(np.log10(top), np.log10(bottom), n_alpha) if top > bottom else np.array([bottom])
    if alpha == "marginal":  # the posterior must be covered: continue below the range if it has not fallen off
        step = np.log10(hi / lo) / (n_alpha - 1)
        alphas = np.concatenate([alphas, lo * 10.0 ** (-step * np.arange(1, int(EXTEND_DECADES / step) + 1))])
    sols = []
    for a in alphas:
        start = lam
        lam, rho, ok, sb = _solve(prob, m, dw, a, start)
        chi2 = float(lam @ lam)  # the residual at the exact maximum; chi^2(rho) carries rounding (see _solve)
        with np.errstate(divide="ignore", invalid="ignore"):  # rho underflows to 0 far in a tail: 0 ln 0 = 0
            S = float(np.sum(dw * (rho - m - np.where(rho > 0, rho * np.log(rho / m), 0.0))))
        ev = a * sb**2  # the eigenvalues of sqrt(rho/dw) A^T A sqrt(rho/dw)
        log_post = a * S - chi2 / 2 + 0.5 * np.sum(np.log(a / (a + ev))) - np.log(a)
        sols.append({"alpha": a, "lam": lam, "rho": rho, "chi2": chi2, "entropy": S, "log_posterior": log_post,
                     "converged": ok})
        if not ok:  # the next alpha starts from the last converged residual, not from this one
            lam = start
        # Smaller alphas only cost time once they cannot matter: for 'marginal' when the
        # posterior has fallen far below its maximum, for 'chi2-kink' when chi^2 has reached
        # its noise plateau (changes of < 1% over four alphas).
        lp = [x["log_posterior"] + np.log(x["alpha"]) for x in sols]  # the weight on the log-alpha grid
        if alpha == "marginal" and len(lp) > 3 and lp[-1] < max(lp) - 30 and lp[-1] < lp[-2]:
            break
        c = [x["chi2"] for x in sols]
        if alpha == "chi2-kink" and len(c) > 8 and all(abs(c[-k] / c[-k - 1] - 1) < 0.01 for k in range(1, 5)):
            break
    cut = len(sols) < len(alphas)  # the scan stopped early: what lies below cannot matter
    alphas = alphas[: len(sols)]
    logp = np.array([x["log_posterior"] for x in sols])
    chi2s = np.array([x["chi2"] for x in sols])
    diag = {"alphas": alphas, "chi2": chi2s, "log_posterior": logp, "default_level": float(m.mean()),
            "converged_alphas": np.array([x["converged"] for x in sols])}

    # The posterior and the kink are read from the converged solutions (an unconverged one's chi^2
    # can be 1e12: it moved the kink to alpha = 6e4, chi^2/N 2000, with n_alpha = 10), unless
    # fewer than 4 converged, when all are used and 'converged' says so.
    use = np.flatnonzero(diag["converged_alphas"])
    if len(use) < 4:
        use = np.arange(len(sols))
    if fixed:
        rho = sols[-1]["rho"]
        band = _band(prob, dw, rho, float(alpha))
        diag.update(alpha=float(alpha), converged=sols[-1]["converged"], lam=sols[-1]["lam"])
    elif alpha == "marginal":
        # P(alpha) on the log grid: d alpha / alpha, so the weights are P(alpha) alpha.
        lw = np.full(len(sols), -np.inf)
        lw[use] = logp[use] + np.log(alphas[use])
        w = np.exp(lw - np.max(lw))
        w /= w.sum()
        for edge, name, open_ in ((-1, "smallest", not cut), (0, "largest", True)):
            if open_ and w[edge] > 1e-3 * w.max():  # a tail beyond the scan that still carries weight
                warnings.warn(f"maxent: the alpha posterior has not fallen off at the {name} alpha scanned "
                              f"({alphas[edge]:.3g}): widen alpha_range", RuntimeWarning, stacklevel=3)
        rho = sum(w[i] * sols[i]["rho"] for i in use)
        keep = w > 1e-4
        # rho is the weighted mean of the solutions: at fixed weights its response is the weighted
        # mean of theirs (an RMS of their bands would be the spread of one solution drawn from
        # the mixture: 1.15-1.33x larger on average over the grid for BW at N_p = 25)
        J = sum(wi * _response(prob, dw, x["rho"], x["alpha"]) for wi, x, k in zip(w, sols, keep) if k)
        band = np.sqrt(np.sum(J ** 2, axis=0)) / w[keep].sum()
        diag.update(weights=w, alpha=float(np.exp(np.sum(w * np.log(alphas)))),
                    converged=all(x["converged"] for x, k in zip(sols, keep) if k))
    else:
        x = np.log10(alphas[use])
        x_kink, fallback = _kink(x, np.log10(chi2s[use]))
        if fallback:
            diag.update(kink_fallback=True)
        j = int(np.argmin(np.abs(x - x_kink)))
        j = max(j - 1, 0) if x[j] < x_kink else j  # start from the grid's solution just above the kink
        lam, rho, ok, _ = _solve(prob, m, dw, 10.0**x_kink, sols[use[j]]["lam"])
        band = _band(prob, dw, rho, 10.0**x_kink)
        diag.update(alpha=float(10.0**x_kink), converged=ok, lam=lam)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "mem", band, diag)
