"""Monte Carlo on the fused kernels: HMC, local Metropolis and Langevin samplers,
and runs that checkpoint to (and resume from) their HDF5 ensemble file."""

from . import kernels, nmcmc
from .samplers import HMC, Langevin, Metropolis, Sampler, default_thermalisation, instanton_action, make_sampler

__all__ = ["kernels", "nmcmc", "HMC", "Metropolis", "Langevin", "Sampler", "make_sampler", "run", "RunError",
           "DivergenceWarning", "default_thermalisation", "instanton_action"]


def __getattr__(name):
    # Runs need h5py and tqdm; the kernels and samplers do not (a bare GPU box may lack them).
    if name in ("run", "RunError", "DivergenceWarning"):
        from . import sampling

        return getattr(sampling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
