"""Score-based diffusion models for lattice fields: forward SDEs (VE, VP) with their closed-form
perturbation kernels, a periodic U-Net score network with its denoising score-matching loss,
and reverse-time sampling through the fused Euler-Maruyama kernel."""

from .sde import VESDE, VPSDE, make_sde, reverse_sample
from .unet import ScoreUNet, dsm_loss

__all__ = ["VESDE", "VPSDE", "make_sde", "reverse_sample", "ScoreUNet", "dsm_loss"]
