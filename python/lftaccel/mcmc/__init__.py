"""Monte Carlo on the fused kernels: HMC, local Metropolis and Langevin samplers,
and runs that checkpoint to (and resume from) their HDF5 ensemble file."""

from . import kernels
from .run import RunError, run
from .samplers import HMC, Langevin, Metropolis, Sampler, make_sampler

__all__ = ["kernels", "HMC", "Metropolis", "Langevin", "Sampler", "make_sampler", "run", "RunError"]
