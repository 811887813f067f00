"""Monte Carlo samplers on the fused kernels: HMC, local Metropolis and Langevin."""

from . import kernels

__all__ = ["kernels"]
