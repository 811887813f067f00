"""Score-based diffusion models for lattice fields: forward SDEs (VE, VP) with their closed-form
perturbation kernels and reverse-time sampling through the fused Euler-Maruyama kernel."""

from .sde import VESDE, VPSDE, make_sde, reverse_sample

__all__ = ["VESDE", "VPSDE", "make_sde", "reverse_sample"]
