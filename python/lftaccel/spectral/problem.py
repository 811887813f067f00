"""The inverse problem as the methods see it, and the result they return.

Data: momenta p_i, propagator values D_i and their errors sigma_i (or a full covariance
C). Whitening: with C = L L^T (Cholesky; L = diag(sigma) for independent errors), the
problem becomes || L^-1 (K rho - D) ||^2 = chi^2, so every method works with
A = L^-1 K and b = L^-1 D, and chi^2 is the sum of squared whitened residuals. For
data consistent with the truth, E[chi^2] = N_p: "chi^2/N_p ~ 1" is the fit the noise
allows, and the discrepancy principle chooses regularisation so that chi^2 meets a target a
little above it, N_p + 2 sqrt(2 N_p) by default (classical.discrepancy_target).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._kernels import check_param
from .kernels import Kernel, kallen_lehmann

__all__ = ["Problem", "Reconstruction", "check_data", "MisfitWarning", "CHI2_MISFIT"]

# chi^2/N_p above which reconstruct() warns that a result misses the data: for N_p >= 3 points
# that fit within known errors, chi^2/N_p exceeds 4 with probability below 0.008. Under a
# covariance estimated from few samples the tail is heavier: at the fewest allowed, N_p + 3,
# about 3 % of fits that are right draw the warning.
CHI2_MISFIT = 4.0


class MisfitWarning(RuntimeWarning):
    """A reconstruction whose chi^2/N_p exceeds CHI2_MISFIT: it does not reproduce the data."""


def check_real(value, name: str, **bounds) -> float:
    """A finite real number (a Python or numpy number or a 0-d array, not a bool), as a float,
    within check_param's ``bounds``; a ValueError naming it otherwise (the spectral methods' one
    error type for bad input)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    try:
        return check_param(value, name, **bounds)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def check_positive(value, name: str) -> float:
    """check_real, > 0."""
    return check_real(value, name, low=0.0, low_open=True)


def _real_array(x, name: str) -> np.ndarray:
    """x as a float64 array; complex values or strings are refused (numpy would drop an imaginary
    part with a warning, or parse strings of digits)."""
    raw = np.asarray(x)
    if raw.dtype.kind == "c":
        raise ValueError(f"{name} must be real, got complex values")
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be an array of real numbers, got dtype {raw.dtype}")
    return raw.astype(np.float64)


def _points(x, name: str) -> np.ndarray:
    """x as a 1-d float64 array of one value per data point (a row or column vector is one)."""
    a = _real_array(x, name)
    if sum(n > 1 for n in a.shape) > 1:
        hint = "; a covariance matrix goes in cov=" if name == "sigma" and a.ndim == 2 else ""
        raise ValueError(f"{name} must be 1-d, one value per data point, got shape {a.shape}{hint}")
    return a.ravel()


def check_data(p, D, sigma=None, cov=None):
    """Validated float64 arrays (p, D, sigma, cov); a ValueError names what is wrong. A single
    sigma (a scalar or one value) is every point's error."""
    p = _points(p, "p")
    D = _points(D, "D")
    if len(p) != len(D):
        raise ValueError(f"p and D have different lengths ({len(p)} and {len(D)})")
    if len(p) < 3:
        raise ValueError(f"need at least 3 data points, got {len(p)}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(D))):
        raise ValueError("p and D must be finite (found NaN or inf)")
    if (sigma is None) == (cov is None):
        raise ValueError("give exactly one of sigma and cov")
    if sigma is not None:
        sigma = np.full(len(p), _points(sigma, "sigma")[0]) if np.size(sigma) == 1 else _points(sigma, "sigma")
        if len(sigma) != len(p):
            raise ValueError(f"sigma has length {len(sigma)}, p has {len(p)}")
        if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            raise ValueError("sigma must be finite and > 0 (found a non-positive or NaN error)")
        return p, D, sigma, None
    cov = _real_array(cov, "cov")
    if cov.shape != (len(p), len(p)):
        raise ValueError(f"cov must be a ({len(p)}, {len(p)}) matrix, got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError("cov must be finite (found NaN or inf)")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=0):
        raise ValueError("cov must be symmetric")
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError("cov must be positive definite (too few samples for the number of points?)") from None
    return p, D, np.sqrt(np.diag(cov)), cov


@dataclasses.dataclass
class Problem:
    """Data, grid and kernel, with the whitened forward map."""

    p: np.ndarray
    D: np.ndarray
    sigma: np.ndarray
    omega: np.ndarray
    kernel: Kernel
    cov: np.ndarray | None = None

    @classmethod
    def build(cls, p, D, sigma=None, omega=None, kernel="kallen-lehmann", cov=None,
              quadrature: str = "linear") -> "Problem":
        p, D, sigma, cov = check_data(p, D, sigma, cov)
        if omega is None:
            omega = np.linspace(0.04, 20.0, 500)
        omega = np.asarray(omega, dtype=np.float64)
        if omega.ndim != 1 or len(omega) < 3 or not np.all(np.isfinite(omega)) or np.any(np.diff(omega) <= 0):
            raise ValueError("omega must be a finite, strictly increasing grid of >= 3 points")
        prob = cls(p, D, sigma, omega, Kernel(kernel), cov)
        if prob.kernel.fn is kallen_lehmann:
            # D(p) = int_0^inf K(p, w) rho(w) dw: the grid lies in w >= 0, the momenta p >= 0 (K is
            # even in p, but the flat MEM default takes its level at the smallest p)
            if omega[0] < 0:
                raise ValueError(f"omega must be >= 0 for the Kallen-Lehmann kernel, got omega[0] = {omega[0]}")
            if np.any(p < 0):
                raise ValueError(f"p must be >= 0 for the Kallen-Lehmann kernel, got p = {p.min()}")
            if max(omega[-1], p.max()) > 1e150:  # w^2 + p^2 would overflow
                raise ValueError("omega and p must be below 1e150 for the Kallen-Lehmann kernel")
        prob.K = prob.kernel.matrix(p, omega, quadrature)
        prob.L = np.linalg.cholesky(cov) if cov is not None else np.diag(sigma)  # cov = L L^T
        prob.Linv = np.linalg.inv(prob.L) if cov is not None else np.diag(1.0 / sigma)
        prob.A = prob.Linv @ prob.K
        prob.b = prob.Linv @ D
        return prob

    @property
    def n(self) -> int:
        return len(self.p)

    def chi2(self, rho) -> float:
        r = self.A @ np.asarray(rho, dtype=np.float64) - self.b
        return float(r @ r)


@dataclasses.dataclass
class Reconstruction:
    """rho on the grid, an uncertainty band where the method has one, chi^2 and diagnostics."""

    omega: np.ndarray
    rho: np.ndarray
    chi2: float
    n_data: int
    method: str
    band: np.ndarray | None = None
    diagnostics: dict = dataclasses.field(default_factory=dict)

    @property
    def chi2_per_point(self) -> float:
        return self.chi2 / self.n_data
