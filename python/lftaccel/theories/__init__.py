"""Lattice theories: parameters, conventions, action and gradient kernels."""

from .oscillator import Oscillator
from .phi4 import Phi4
from .xy import XY

__all__ = ["Phi4", "XY", "Oscillator"]
