"""Integral kernels of the spectral inverse problem D(p) = int_0^inf K(p, w) rho(w) dw.

* Kallen-Lehmann: K(p, w) = w / (pi (w^2 + p^2)), for a propagator in Euclidean momentum p.
* Finite temperature, imaginary time: K(tau, w) = cosh(w (tau - 1/(2T))) / sinh(w / (2T)),
  for a correlator at Euclidean time 0 < tau < 1/T (the bosonic kernel lattice users need).
* Any user kernel: a callable K(p, w), called with the 1-d arrays p (n_p,) and w (n_w,) and
  returning the matrix K[i, j] = K(p_i, w_j) of shape (n_p, n_w) (an elementwise formula f(p, w)
  becomes ``lambda p, w: f(p[:, None], w[None, :])``), or a matrix (n_p, n_omega) that already
  holds the quadrature weights.

Normalisation: rho is what enters D = int_0^inf K rho dw with the kernel as written, with no
1/(2 pi). So the Kallen-Lehmann rho of a propagator and the finite-temperature rho of the same
physics differ by 2 pi: at T -> 0 the Fourier transform of G(tau) = int e^(-w |tau|) rho dw is
int 2 w / (w^2 + p^2) rho dw = 2 pi D(p). With the lattice convention
G(tau) = int_0^inf dw / (2 pi) K(tau, w) rho(w), the rho returned from G is rho / (2 pi):
multiply it (and its band) by 2 pi, or pass 2 pi G with 2 pi sigma.

A reconstruction works on a grid omega_j: rho is piecewise linear between the grid points
and the forward map integrates the kernel against each hat function accurately
(``quadrature='linear'``), or, as in the published approach, K_ij = K(p_i, omega_j) dw_j
(``quadrature='riemann'``). Its singular values decay exponentially: that is the
ill-posedness, and :func:`singular_values` / :func:`plot_singular_values` show it.

rho is zero outside the grid. Continuing it there was tried and not adopted: linearly down to
rho(0) = 0 below omega_0 and as a tail rho_N (omega_N / omega)^3 above omega_N, folded into the
first and last columns. It removes most of the truth's own misfit on the benchmark grid
linspace(0.04, 20, 500) (BW(1, 2, 0.5), chi^2/N_p of the exact spectrum against its exact
data: N_p = 25, eps = 1e-3, 8.7e5 -> 63; N_p = 100, 5.3 -> 0.023), but the reconstructions
absorb the missing ends anyway (MEM fits BW at eps = 1e-5 to chi^2/N_p 1.03 on the bare grid),
and over 11 cells x 4 methods (seed 0) the errors moved both ways: two Gaussians N_p = 100
exact, MEM 0.046 -> 1.02 and nn-log 1.36 -> 0.39; narrow BW exact, p2p 14.5 -> 20.5; BW
eps = 1e-5, nn 0.53 -> 0.83, nn-log 1.10 -> 0.72; p2p still stalls at small eps (BW eps = 1e-5,
chi^2/N_p 1.3e4 -> 1.1e4).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["kallen_lehmann", "finite_temperature", "Kernel", "forward_matrix", "singular_values",
           "plot_singular_values", "grid_weights"]


def kallen_lehmann(p, omega):
    """K(p, w) = w / (pi (w^2 + p^2))."""
    p = np.asarray(p, dtype=np.float64)[..., None]
    w = np.asarray(omega, dtype=np.float64)
    return w / (np.pi * (w * w + p * p))


kallen_lehmann.builtin = True  # (its errors need no hint on the callable contract)


def finite_temperature(T: float) -> Callable:
    """The kernel K(tau, w) = cosh(w (tau - 1/(2T))) / sinh(w / (2T)) at temperature T.

    Written as [exp(-w tau) + exp(-w (1/T - tau))] / (1 - exp(-w / T)), which does not
    overflow at large w. Its rho is that of the convention with dw / (2 pi) divided by 2 pi
    (module docstring). Defined for w > 0 (the bosonic rho is odd, rho(-w) = -rho(w), which folds the
    negative frequencies into it): a grid with w < 0 is refused.

    At w -> 0 it diverges like 2T/w, so the grid must start above 0, and rho below the grid's
    first point w_0 is taken as 0: the part missed is about 2 T w_0 (rho / w)(0) at every tau, a
    constant. Where rho / w does not vanish at 0 (a transport peak) that constant matters: start
    the grid far below the lowest structure, e.g. geomspace(1e-4, w_max, n). (On N_t = 16 data,
    eps = 1e-3, with a transport peak of width 0.1, the exact rho had chi^2/N_p = 433 on a grid
    from 0.01, 5.8 from 0.001, and 0.03 on geomspace(1e-4, 20, 600).)
    """
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"T must be finite and > 0, got {T}")
    beta = 1.0 / T

    def K(tau, omega):
        tau = np.asarray(tau, dtype=np.float64)[..., None]
        w = np.asarray(omega, dtype=np.float64)
        if np.any(w < 0):
            raise ValueError(f"omega must be >= 0 for the finite-temperature kernel (rho(-w) = -rho(w) folds the "
                             f"negative frequencies into w > 0), got omega = {w.min():g}")
        # a few ulp of slack: tau = N_t a on a lattice of T = 1 / (N_t a) rounds either side of 1/T
        slack = 1e-12 * beta
        if np.any(~np.isfinite(tau) | (tau < -slack) | (tau > beta + slack)):
            raise ValueError(f"tau must lie in [0, 1/T] = [0, {beta}]")
        tau = np.clip(tau, 0.0, beta)
        return (np.exp(-w * tau) + np.exp(-w * (beta - tau))) / -np.expm1(-w * beta)

    K.__name__ = f"finite_temperature(T={T})"
    K.variable = "tau"  # what the data's abscissa is, for messages
    K.omega_min = 0.0  # where its grid may start (checked on the grid, before the quadrature's nodes)
    K.builtin = True
    return K


def grid_weights(omega) -> np.ndarray:
    """Quadrature weights of a grid: the spacing for a uniform grid (the Riemann sum used by
    the published approach), trapezoid weights otherwise."""
    w = np.asarray(omega, dtype=np.float64)
    if w.ndim != 1 or len(w) < 2:
        raise ValueError(f"omega must be a 1D grid of >= 2 points, got shape {w.shape}")
    if not np.all(np.diff(w) > 0):
        raise ValueError("omega must be strictly increasing")
    d = np.diff(w)
    if np.allclose(d, d[0], rtol=1e-9, atol=0):
        return np.full(len(w), d[0])
    out = np.zeros(len(w))
    out[:-1] += d / 2
    out[1:] += d / 2
    return out


class Kernel:
    """A kernel given by name ('kallen-lehmann'), a callable K(p, w), or a fixed matrix
    (n_p, n_omega) that already includes the quadrature weights."""

    def __init__(self, kernel="kallen-lehmann"):
        if isinstance(kernel, Kernel):
            self.fn, self.matrix_ = kernel.fn, kernel.matrix_
        elif isinstance(kernel, str):
            if kernel != "kallen-lehmann":
                hint = " (the finite-temperature kernel is finite_temperature(T))" if "temp" in kernel.lower() else ""
                raise ValueError(f"kernel must be 'kallen-lehmann', a callable or a matrix, got {kernel!r}{hint}")
            self.fn, self.matrix_ = kallen_lehmann, None
        elif kernel is finite_temperature:
            raise TypeError("kernel=finite_temperature needs its temperature: pass finite_temperature(T)")
        elif callable(kernel):
            self.fn, self.matrix_ = kernel, None
        else:
            m = np.asarray(kernel, dtype=np.float64)
            if m.ndim != 2 or not np.all(np.isfinite(m)):
                raise ValueError("a kernel matrix must be a finite 2D array (n_p, n_omega)")
            self.fn, self.matrix_ = None, m

    def __call__(self, p, omega):
        if self.fn is None:
            raise ValueError("a matrix kernel cannot be evaluated at arbitrary points")
        return self.fn(p, omega)

    @property
    def variable(self) -> str:
        """The name of the data's abscissa (p, or tau for finite_temperature), for messages."""
        return getattr(self.fn, "variable", "p")

    def _evaluate(self, p, omega) -> np.ndarray:
        """fn(p, omega) as a float64 matrix (n_p, n_omega); a user callable that fails or returns
        another shape is told the contract."""
        v = self.variable
        contract = (f"a callable kernel is called with the 1-d arrays {v} ({len(p)},) and omega ({len(omega)},) "
                    f"and must return the ({len(p)}, {len(omega)}) matrix K[i, j] = K({v}_i, omega_j): for an "
                    f"elementwise formula f, lambda p, w: f(p[:, None], w[None, :])")
        if getattr(self.fn, "builtin", False):
            K = self.fn(p, omega)
        else:
            try:
                K = self.fn(p, omega)
            except (ValueError, TypeError, IndexError) as err:
                raise ValueError(f"the kernel raised {type(err).__name__}: {err}; {contract}") from err
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (len(p), len(omega)):
            raise ValueError(f"the kernel returned shape {K.shape}; {contract}")
        return K

    def matrix(self, p, omega, quadrature: str = "linear") -> np.ndarray:
        """The discretised forward map, D_i = sum_j K_ij rho_j.

        'linear': rho is piecewise linear between the grid points (zero outside the grid)
        and K_ij = int K(p_i, w) phi_j(w) dw for the hat function phi_j, by 8-point
        Gauss-Legendre in every cell: accurate, so the map does not add its own
        discretisation error to the data's noise. 'riemann': K(p_i, omega_j) dw_j, the
        published approach's sum (its error at small p exceeds small noise levels)."""
        if quadrature not in ("linear", "riemann"):
            raise ValueError(f"quadrature must be 'linear' or 'riemann', got {quadrature!r}")
        if self.matrix_ is not None and quadrature != "linear":
            raise ValueError(f"quadrature={quadrature!r} does not apply to a kernel matrix, which holds its own "
                             f"quadrature weights")
        if self.matrix_ is not None:
            if self.matrix_.shape != (len(p), len(omega)):
                raise ValueError(f"the kernel matrix has shape {self.matrix_.shape}, the data need "
                                 f"({len(p)}, {len(omega)})")
            return self.matrix_
        p = np.asarray(p, np.float64)
        omega = np.asarray(omega, np.float64)
        weights = grid_weights(omega)
        low = getattr(self.fn, "omega_min", None)
        if low is not None and omega[0] < low:
            raise ValueError(f"omega must be >= {low:g} for {self.fn.__name__} (rho(-w) = -rho(w) folds the negative "
                             f"frequencies into w > 0), got omega[0] = {omega[0]:g}")
        if quadrature == "riemann":
            K = self._evaluate(p, omega)
            if not np.all(np.isfinite(K)):
                raise ValueError("the kernel must be finite on the grid")
            return K * weights[None, :]
        if omega[0] == 0:
            # A kernel finite at w = 0 can still peak inside the first cell (Kallen-Lehmann at
            # p << dw peaks at w = p): that cell takes the graded rule below. One that diverges
            # there (finite T: 2T/w; Kallen-Lehmann at p = 0: 1/(pi w)) makes the hat at 0
            # log-divergent, which Gauss-Legendre would turn into an arbitrary finite number.
            with np.errstate(divide="ignore", invalid="ignore"):
                K0 = self._evaluate(p, np.zeros(1))
            if not np.all(np.isfinite(K0)):
                bad = p[np.flatnonzero(~np.all(np.isfinite(K0.reshape(len(p), -1)), axis=1))[0]]
                raise ValueError(f"the kernel diverges at omega = 0 ({self.variable} = {bad:g}), where the grid "
                                 f"starts: start it above 0")
        x, w = np.polynomial.legendre.leggauss(8)
        # the pieces [a, b) of cell `cell` to integrate: each cell whole, but the first one, where
        # omega_0 = 0, split geometrically at h 2^-k (k = 1..40) to resolve structure at any scale
        # above 1e-12 h
        lo = omega[:-1]
        a, b, cell = lo, omega[1:], np.arange(len(lo))
        if omega[0] == 0:
            cuts = omega[1] * 2.0 ** -np.arange(40.0, -1.0, -1.0)              # h 2^-40 .. h
            a = np.concatenate([[0.0], cuts[:-1], a[1:]])
            b = np.concatenate([cuts, b[1:]])
            cell = np.concatenate([np.zeros(len(cuts), dtype=np.int64), cell[1:]])
        nodes = a[:, None] + 0.5 * (b - a)[:, None] * (x[None, :] + 1)      # (pieces, 8)
        gw = 0.5 * (b - a)[:, None] * w[None, :]
        Kn = self._evaluate(p, nodes.ravel()).reshape(len(p), *nodes.shape)
        if not np.all(np.isfinite(Kn)):
            raise ValueError("the kernel must be finite on the grid")
        h = np.diff(omega)[cell]
        t = (nodes - lo[cell][:, None]) / h[:, None]                        # position in the cell
        left = (Kn * (gw * (1 - t))[None]).sum(2)                           # weight on omega_c
        right = (Kn * (gw * t)[None]).sum(2)                                # weight on omega_{c+1}
        M = np.zeros((len(p), len(omega)))
        np.add.at(M.T, cell, left.T)
        np.add.at(M.T, cell + 1, right.T)
        return M


def forward_matrix(p, omega, kernel="kallen-lehmann", quadrature: str = "linear") -> np.ndarray:
    return Kernel(kernel).matrix(p, omega, quadrature)


def singular_values(p, omega, kernel="kallen-lehmann", sigma=None) -> np.ndarray:
    """Singular values of the (noise-weighted, when sigma is given) discretised kernel."""
    K = forward_matrix(p, omega, kernel)
    if sigma is not None:
        K = K / np.asarray(sigma, dtype=np.float64)[:, None]
    return np.linalg.svd(K, compute_uv=False)


def plot_singular_values(p, omega, kernel="kallen-lehmann", path=None, ax=None):
    """Semi-log plot of the singular values: the ill-posedness at a glance."""
    import matplotlib
    if ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = singular_values(p, omega, kernel)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(np.arange(1, len(s) + 1), s / s[0], "o-", ms=3)
    ax.axhline(np.finfo(float).eps, color="gray", ls=":", label="float64 eps")
    ax.set_xlabel("index k")
    ax.set_ylabel("s_k / s_1")
    ax.set_title("singular values of the discretised kernel")
    ax.legend()
    if own and path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return s
