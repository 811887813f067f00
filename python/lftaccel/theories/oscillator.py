"""Quantum-mechanical oscillator as a periodic Euclidean path of N time slices.

    S_E = a sum_n [ m (x_{n+1} - x_n)^2 / (2 a^2) + V(x_n) ],   a = beta / N,  hbar = 1,
    V(x) = c0 + c2 x^2 + c4 x^4.

``Oscillator(beta, m, lam, f)`` is the double well V = lam (x^2 - f^2)^2, i.e.
c4 = lam, c2 = -2 lam f^2, c0 = lam f^4; ``Oscillator.harmonic`` is c4 = 0,
c2 = m omega^2 / 2; ``Oscillator.quartic`` takes the coefficients directly.
Paths have shape (batch, N); N is read from the path, so one object serves every N.

The Matsubara form acts on the real orthonormal Fourier coefficients of the path
(:mod:`lftaccel.fourier`): the kinetic term is diagonal there,
m/(2a) sum_j 4 sin^2(pi k_j/N) c_j^2, and the potential is evaluated on the path.
``fourier_action(to_fourier(x)) == action(x)``.
"""

from __future__ import annotations

import numpy as np

from .. import _kernels, ops
from .._kernels import check_param, finite_result
from ..fourier import from_fourier, to_fourier
from ._base import LatticeTheory

__all__ = ["Oscillator"]


class Oscillator(LatticeTheory):
    """Double-well oscillator path at inverse temperature ``beta``."""

    kernel = "oscillator"
    max_dims = 1

    def __init__(self, beta: float, m: float = 0.5, lam: float = 1.0, f: float = 1.0):
        lam = check_param(lam, "lam")
        if lam <= 0.0:  # lam < 0: unbounded below; lam = 0: V = 0 (see _set)
            why = ("lam = 0 leaves V = 0, a free particle, whose path integral does not converge "
                   "(use Oscillator.harmonic for a confined quadratic V)" if lam == 0.0 else
                   f"got {lam}, a potential unbounded below")
            raise ValueError(f"lam must be > 0 for the double well: {why}")
        f = check_param(f, "f")
        try:
            c0 = finite_result(lam * f**4, "f")
        except OverflowError:
            raise ValueError("f is too large: lam * f**4 overflows") from None
        self._set(beta, m, c0=c0, c2=finite_result(-2.0 * lam * f**2, "f"), c4=lam)
        self.lam, self.f = lam, f

    def _set(self, beta, m, c0, c2, c4):
        self.beta = check_param(beta, "beta", low=0.0, low_open=True)
        self.m = check_param(m, "m", low=0.0, low_open=True)
        self.c0 = check_param(c0, "c0")
        self.c2 = check_param(c2, "c2")
        self.c4 = check_param(c4, "c4", low=0.0)
        if self.c4 == 0.0 and self.c2 < 0.0:
            raise ValueError(f"c2 must be > 0 when c4 == 0: got c2={self.c2}, a potential unbounded below")
        if self.c4 == 0.0 and self.c2 == 0.0:
            # exp(-S) is flat along the constant paths x_n = c: Z diverges, and a sampler's <x^2>
            # and "gaps" would be those of a random walk (the kernels still take it: S is finite)
            raise ValueError("c2 must be > 0 when c4 == 0: V = c0 is a free particle, whose path integral "
                             "does not converge")
        self.lam = self.f = None

    @classmethod
    def quartic(cls, beta: float, m: float = 0.5, c0: float = 0.0, c2: float = 0.0, c4: float = 0.0):
        """General quartic potential V = c0 + c2 x^2 + c4 x^4."""
        obj = cls.__new__(cls)
        obj._set(beta, m, c0, c2, c4)
        return obj

    @classmethod
    def harmonic(cls, beta: float, m: float = 0.5, omega: float = 1.0):
        """Harmonic oscillator V = m omega^2 x^2 / 2."""
        omega = check_param(omega, "omega", low=0.0, low_open=True)
        m = check_param(m, "m", low=0.0, low_open=True)
        try:
            c2 = finite_result(0.5 * m * omega**2, "omega")
        except OverflowError:
            raise ValueError("omega is too large: m * omega**2 overflows") from None
        return cls.quartic(beta, m, c2=c2)

    def _params(self) -> dict:
        return {"beta": self.beta, "m": self.m, "c0": self.c0, "c2": self.c2, "c4": self.c4}

    def spacing(self, n_slices: int) -> float:
        """Lattice spacing a = beta / N."""
        return self.beta / n_slices

    def potential(self, x):
        """V(x), elementwise."""
        x2 = x * x
        return self.c0 + x2 * (self.c2 + self.c4 * x2)

    to_fourier = staticmethod(to_fourier)
    from_fourier = staticmethod(from_fourier)

    def fourier_action(self, c):
        """Action as a function of the real Fourier coefficients c = to_fourier(x)."""
        self._check_fourier(c)
        if isinstance(c, np.ndarray):
            x = from_fourier(c)
            return _kernels.oscillator_fourier(c, x, self._params(), grad_coeffs=False, grad_path=False)[0]
        return ops.oscillator_fourier_action_op(c, list(self._params().values()))

    def fourier_grad(self, c):
        """dS/dc: the kinetic part from the kernel plus to_fourier of the potential force."""
        self._check_fourier(c)
        if isinstance(c, np.ndarray):
            x = from_fourier(c)
            _, gc, gx = _kernels.oscillator_fourier(c, x, self._params(), action=False)
            return gc + to_fourier(gx)
        return ops.oscillator_fourier_grad_op(c, list(self._params().values()))

    def _check_fourier(self, c):
        return _kernels.check_array(c, "c", min_dims=1, max_dims=1)

    def __repr__(self) -> str:
        if self.lam is not None:
            return f"Oscillator(beta={self.beta!r}, m={self.m!r}, lam={self.lam!r}, f={self.f!r})"
        return super().__repr__()
