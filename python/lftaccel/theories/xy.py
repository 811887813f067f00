"""The XY model, S = -beta sum_x sum_mu cos(theta(x) - theta(x+mu)), angles in radians.

Any lattice of 1..4 dimensions with periodic boundaries; the physics of interest
(the Kosterlitz-Thouless transition) is in 2D.
"""

from __future__ import annotations

from .._kernels import check_param
from ._base import LatticeTheory

__all__ = ["XY"]


class XY(LatticeTheory):
    """XY model at inverse temperature ``beta`` (J = 1): S = -beta sum_x sum_mu cos(theta_x -
    theta_{x+mu}), periodic, any rank 1..4 (``lftaccel.analysis`` measures it in 2D). beta < 0 is
    the antiferromagnet, accepted as such; its helicity modulus is not the ferromagnet's."""

    kernel = "xy"

    def __init__(self, beta: float):
        self.beta = check_param(beta, "beta")

    def _params(self) -> dict:
        return {"beta": self.beta}
