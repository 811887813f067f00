"""Pure-torch twins of every lftaccel kernel.

Written the way a physicist writes them, with ``torch.roll``: they are the test
oracle for the compiled kernels and the baseline the benchmarks time them against. Each
theory also has ``<theory>_action_and_grad``, both outputs in one pass written for speed,
which the benchmarks time as a faster pure-torch baseline beside the plain pair.
They accept any float dtype and device and are differentiable by autograd.
"""

from .oscillator import (
    oscillator_action,
    oscillator_action_and_grad,
    oscillator_fourier_action,
    oscillator_fourier_grad,
    oscillator_grad,
    oscillator_matsubara_terms,
)
from .phi4 import phi4_action, phi4_action_and_grad, phi4_grad, phi4_standard_action
from .philox import philox4x32_10, philox_bits, philox_normal, philox_uniform
from . import mcmc
from .xy import xy_action, xy_action_and_grad, xy_grad

__all__ = [
    "mcmc",
    "phi4_action", "phi4_grad", "phi4_action_and_grad", "phi4_standard_action",
    "xy_action", "xy_grad", "xy_action_and_grad",
    "oscillator_action", "oscillator_grad", "oscillator_action_and_grad",
    "oscillator_fourier_action", "oscillator_fourier_grad", "oscillator_matsubara_terms",
    "philox4x32_10", "philox_bits", "philox_uniform", "philox_normal",
]
