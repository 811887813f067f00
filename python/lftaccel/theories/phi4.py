"""Scalar phi^4 theory in the hopping form, in 1..4 dimensions.

    S = sum_x [ -2 kappa sum_mu phi(x) phi(x+mu) + (1 - 2 lambda) phi(x)^2 + lambda phi(x)^4 ]

The "standard" form S = sum_x [ sum_mu (phi(x+mu) - phi(x))^2 + m2 phi^2 + lam phi^4 ] in d
dimensions maps onto it with phi_std = sqrt(kappa) phi_hop, where (matching the three terms)

    kappa = [ -(2d + m2) + sqrt((2d + m2)^2 + 8 lam) ] / (4 lam),   lambda = lam kappa^2,

and kappa = 1 / (2d + m2) at lam = 0. In 2D, m2 = -4, lam = 8 gives kappa = 0.25, lambda = 0.5.
"""

from __future__ import annotations

import math

from .._kernels import check_param
from ._base import LatticeTheory

__all__ = ["Phi4"]


def _check_ndim(ndim) -> int:
    if isinstance(ndim, bool) or not isinstance(ndim, int) or not 1 <= ndim <= 4:
        raise ValueError(f"ndim must be an integer in 1..4, got {ndim!r}")
    return ndim


class Phi4(LatticeTheory):
    """phi^4 with hopping parameter ``kappa`` and quartic coupling ``lam`` (lambda >= 0)."""

    kernel = "phi4"

    def __init__(self, kappa: float, lam: float):
        self.kappa = check_param(kappa, "kappa")
        self.lam = check_param(lam, "lam", low=0.0)
        # the dimension a from_standard theory was converted for (None: built in the hopping form);
        # the samplers refuse a lattice of another one, on which it is another standard theory
        self.standard_ndim = None

    def _params(self) -> dict:
        return {"kappa": self.kappa, "lam": self.lam}

    @classmethod
    def from_standard(cls, m2: float, lam: float, ndim: int = 2) -> "Phi4":
        """The hopping-form theory equal to the standard form (m2, lam) in ``ndim`` dimensions.

        The hopping form's action takes fields of any rank: on a field of another rank it is the
        standard theory of other (m2, lam) (``to_standard(ndim)``). So the result remembers
        ``ndim`` (``standard_ndim``), and the samplers refuse a lattice of another dimension (a
        helper's ``from_standard(-4, 8)`` on a 3D lattice was silently m2 = -6)."""
        m2 = check_param(m2, "m2")
        lam = check_param(lam, "lam", low=0.0)
        b = 2 * _check_ndim(ndim) + m2
        if lam == 0.0:
            if b <= 0:
                raise ValueError(f"the free theory needs m2 > -2*ndim, got m2={m2} in {ndim}D")
            kappa = 1.0 / b
        else:
            # Stable form of the positive root of 2 lam k^2 + b k - 1 = 0. b^2 overflows for |m2|
            # above ~1e154 (kappa came out 0): hypot there, and the plain sum, rounded as it
            # always was, elsewhere.
            disc = math.sqrt(b * b + 8.0 * lam) if abs(b) < 1e150 else math.hypot(b, math.sqrt(8.0 * lam))
            kappa = 2.0 / (b + disc) if b >= 0 else (disc - b) / (4.0 * lam)
        lam_hop = lam * kappa * kappa
        if not (0.0 < kappa < math.inf) or (lam > 0 and lam_hop == 0.0) or not math.isfinite(lam_hop):
            raise ValueError(f"m2={m2}, lam={lam} in {ndim}D has no hopping form in double precision "
                             f"(kappa = {kappa}, lambda = {lam_hop})")
        theory = cls(kappa, lam_hop)
        theory.standard_ndim = ndim
        return theory

    def to_standard(self, ndim: int | None = None) -> tuple:
        """(m2, lam) of the standard form in ``ndim`` dimensions (needs kappa > 0); ndim=None:
        ``standard_ndim`` for a theory made by from_standard, else 2."""
        if self.kappa <= 0:
            raise ValueError(f"the standard form needs kappa > 0, got kappa={self.kappa}")
        if ndim is None:
            ndim = self.standard_ndim or 2
        lam_std = self.lam / self.kappa**2
        m2 = (1.0 - 2.0 * self.lam) / self.kappa - 2 * _check_ndim(ndim)
        return m2, lam_std

    def field_to_standard(self, phi):
        """phi_std = sqrt(kappa) phi_hop."""
        if self.kappa <= 0:
            raise ValueError(f"the standard form needs kappa > 0, got kappa={self.kappa}")
        return phi * math.sqrt(self.kappa)

    def field_from_standard(self, phi_std):
        """phi_hop = phi_std / sqrt(kappa)."""
        if self.kappa <= 0:
            raise ValueError(f"the standard form needs kappa > 0, got kappa={self.kappa}")
        return phi_std / math.sqrt(self.kappa)
