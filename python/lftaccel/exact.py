"""Exact results the samplers are validated against.

* The free lattice field (phi^4 at lambda = 0, kappa < 1/(2d)): S = phi^T A phi / 2 with
  A(p) = 2 (1 - 2 kappa sum_mu cos p_mu), so <phi^2> = (1/V) sum_p 1/A(p) and
  chi2 = V <M^2> = 1/A(0) = 1 / (2 (1 - 2 d kappa)).
* The harmonic path on the discrete lattice: S = x^T A x / 2 with eigenvalues
  (m/a) 4 sin^2(pi k/N) + 2 a c2, so <x^2> = (1/N) sum_k 1/lambda_k.
* Any quartic oscillator path, from the transfer matrix of the same discretised action
  on a fine x-grid: K(x, y) = sqrt(m / (2 pi a)) exp(-m (x - y)^2 / (2 a) - a (V(x) + V(y)) / 2),
  so that Z = Tr K^N. Its eigenvalues give the lattice energies E_k = -ln(lambda_k) / a;
  traces give <x^2>, <x^4> and the correlators at the finite N of the simulation.
* The continuum spectrum of H = p^2 / (2m) + V(x), by finite differences on a fine grid.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["free_field", "harmonic_path_x2", "TransferMatrix", "continuum_spectrum"]


def free_field(kappa: float, shape) -> dict:
    """<phi^2> and chi2 of the free hopping-form field on a periodic lattice."""
    d = len(shape)
    if not 0 <= kappa < 1 / (2 * d):
        raise ValueError(f"the free field needs 0 <= kappa < 1/(2d) = {1 / (2 * d)}, got {kappa}")
    cos_sum = sum(np.meshgrid(*[np.cos(2 * np.pi * np.arange(L) / L) for L in shape], indexing="ij"))
    A = 2 * (1 - 2 * kappa * cos_sum)
    V = math.prod(shape)
    return {"phi2": float((1 / A).sum() / V), "chi2": float(1 / A.flat[0])}


def harmonic_path_x2(beta: float, n: int, m: float, c2: float) -> float:
    """<x^2> of the periodic path of n slices with V = c2 x^2, a = beta / n."""
    a = beta / n
    k = np.arange(n)
    lam = (m / a) * 4 * np.sin(np.pi * k / n) ** 2 + 2 * a * c2
    return float((1 / lam).sum() / n)


class TransferMatrix:
    """The transfer matrix of the discretised path integral of V(x) = c0 + c2 x^2 + c4 x^4."""

    def __init__(self, theory, n_slices: int, *, x_max: float | None = None, n_grid: int = 801):
        self.theory = theory
        self.a = theory.spacing(n_slices)
        self.n = n_slices
        auto = x_max is None
        if auto:
            # The old reach (set for the tests' double wells), or 10 thermal widths beyond the
            # minimum where the potential is soft or the particle light, whichever is further.
            f2 = _well_position2(theory)
            x_max = max(math.sqrt(f2) + 6.0 / max(theory.m * 0.5, 0.2) ** 0.5,
                        math.sqrt(f2) + 10.0 * _thermal_width(theory))
        for _ in range(4):
            self._build(x_max, n_grid)
            rho = (self.U**2 * self._weights()[None, :]).sum(1)  # the path's marginal density of x
            if max(rho[0], rho[-1]) < 1e-14 * rho.max():
                break
            if not auto:
                raise ValueError(f"x_max = {x_max} cuts the density off: at the edges it is "
                                 f"{max(rho[0], rho[-1]) / rho.max():.1e} of its peak; widen it")
            # widen at the same spacing
            x_max, n_grid = 1.5 * x_max, int(1.5 * (n_grid - 1)) + 1
        else:
            raise ValueError("could not find an x-grid wide enough for this theory; pass x_max and n_grid")

    def _build(self, x_max, n_grid):
        theory = self.theory
        x = np.linspace(-x_max, x_max, n_grid)
        h = x[1] - x[0]
        V = theory.c0 + theory.c2 * x**2 + theory.c4 * x**4
        m, a = theory.m, self.a
        K = np.sqrt(m / (2 * np.pi * a)) * np.exp(-m * (x[:, None] - x[None, :]) ** 2 / (2 * a)
                                                  - a * (V[:, None] + V[None, :]) / 2) * h
        w, U = np.linalg.eigh(K)
        order = np.argsort(w)[::-1]
        self.w, self.U, self.x = w[order], U[:, order], x
        self.energies = -np.log(self.w[self.w > 0]) / a

    def _weights(self):
        return (self.w / self.w[0]) ** self.n

    def expect(self, fn) -> float:
        """<fn(x_n)> on the periodic path of n slices."""
        X = (self.U * fn(self.x)[:, None]).T @ self.U          # <k| f |l>
        wts = self._weights()
        return float((np.diag(X) * wts).sum() / wts.sum())

    def correlator(self, fn, tau: int) -> float:
        """<fn(x_0) fn(x_tau)> = Tr(F K^tau F K^(n - tau)) / Tr K^n."""
        F = (self.U * fn(self.x)[:, None]).T @ self.U
        r = self.w / self.w[0]
        M = F * (r**tau)[None, :] @ (F * (r ** (self.n - tau))[None, :])
        return float(np.trace(M) / (r**self.n).sum())

    def virial_e0(self) -> float:
        """Exact expectation, at this N, of the virial estimator E0 = <V> + <x V'(x)>/2 =
        c0 + 2 c2 <x^2> + 3 c4 <x^4> that lftaccel.analysis measures."""
        th = self.theory
        return th.c0 + 2 * th.c2 * self.expect(lambda x: x**2) + 3 * th.c4 * self.expect(lambda x: x**4)

    def cosh_mass(self, t: int, fn=None) -> float:
        """Exact cosh effective mass of G(t) = <fn(x_0) fn(x_t)> - <fn>^2 (fn = x by default, where
        <x> = 0) between slices t and t + 1 (physical units), the quantity lftaccel.analysis
        estimates: the root m of G(t+1)/G(t) = cosh(m a (t + 1 - N/2)) / cosh(m a (t - N/2)).
        fn = x^2 gives the E2 - E0 channel."""
        from scipy.optimize import brentq

        if not 0 <= t < self.n // 2:
            raise ValueError(f"t must be in [0, N/2), got {t}")
        fn = fn or (lambda x: x)
        mean = self.expect(fn)
        half = self.n / 2  # as pyerrors' cosh mass (odd N too): the cosh centred on N/2
        r = (self.correlator(fn, t + 1) - mean**2) / (self.correlator(fn, t) - mean**2)

        def f(m):  # cosh(a) / cosh(b) - r, in a form that cannot overflow
            a, b = abs(m * (t + 1 - half)), abs(m * (t - half))
            return np.exp(a - b) * (1 + np.exp(-2 * a)) / (1 + np.exp(-2 * b)) - r

        return brentq(f, 1e-12, 50.0, xtol=1e-15) / self.a

    def gap(self, k: int = 1) -> float:
        return float(self.energies[k] - self.energies[0])


def continuum_spectrum(theory, *, n_levels: int = 4, x_max: float | None = None, n_grid: int = 4001) -> np.ndarray:
    """Lowest eigenvalues of H = p^2/(2m) + V(x) (Dirichlet walls at +-x_max, second-order
    finite differences). By default the walls start beyond the n_levels-th level's turning
    points and move out until its wave function is negligible there."""
    from scipy.linalg import eigh_tridiagonal

    auto = x_max is None
    if auto:
        f2 = _well_position2(theory)
        omega = _omega(theory)
        width = math.sqrt((2 * n_levels + 1) / (theory.m * omega))  # the harmonic turning point
        x_max = max(6.0, math.sqrt(f2) + 3.0 * width)
        n_grid = max(n_grid, int(round(x_max / 6.0 * (n_grid - 1))) + 1)  # the spacing of walls at +-6
    for _ in range(6):
        x = np.linspace(-x_max, x_max, n_grid)
        h = x[1] - x[0]
        V = theory.c0 + theory.c2 * x**2 + theory.c4 * x**4
        diag = 1 / (theory.m * h * h) + V
        off = -np.ones(n_grid - 1) / (2 * theory.m * h * h)
        E, psi = eigh_tridiagonal(diag, off, select="i", select_range=(0, n_levels - 1))
        edge = np.abs(psi[[1, -2]]).max(0) / np.abs(psi).max(0)  # next to the walls
        if edge.max() < 1e-7:
            return E
        if not auto:
            raise ValueError(f"x_max = {x_max} cuts the wave functions off ({edge.max():.1e} of their peak "
                             f"next to the walls); widen it")
        x_max, n_grid = 1.5 * x_max, int(1.5 * (n_grid - 1)) + 1
    raise ValueError("could not find walls far enough for this theory; pass x_max and n_grid")


def _well_position2(theory) -> float:
    """x^2 at the minimum of V (0 for a single well)."""
    return max(-theory.c2 / (2 * theory.c4), 0.0) if theory.c4 > 0 else 0.0


def _omega(theory) -> float:
    """The harmonic frequency at the minimum of V, or the quartic's ground-state scale
    (m c4)^(1/3) / m where the curvature vanishes."""
    curvature = 2 * theory.c2 + 12 * theory.c4 * _well_position2(theory)
    if curvature > 0:
        return math.sqrt(curvature / theory.m)
    return (theory.m * theory.c4) ** (1 / 3) / theory.m


def _thermal_width(theory) -> float:
    """sqrt(<(x - x_min)^2>) of the harmonic approximation at the minimum, at beta."""
    omega = _omega(theory)
    return math.sqrt(1 / (math.tanh(theory.beta * omega / 2) * 2 * theory.m * omega))
