"""Normalizing flows: checkerboard affine coupling flows for phi^4 on 2D lattices and the
Fourier-flow (with its real-space counterpart) for the oscillator path, trained by reverse
KL through the action kernels' custom ops, made exact by lftaccel.mcmc.nmcmc."""

from .coupling import AffineCoupling, CouplingFlow, DoubleWellZeroModePrior, GaussianPrior
from .lattice import ConvConditioner, checkerboard, lattice_flow
from .kink_prior import KinkGasPrior
from .path import MLPConditioner, PathFlow, mode_scales, path_flow
from .train import TrainResult, detached_copy, reverse_kl_loss, train

__all__ = ["AffineCoupling", "CouplingFlow", "GaussianPrior", "DoubleWellZeroModePrior", "ConvConditioner",
           "checkerboard", "lattice_flow",
           "MLPConditioner", "PathFlow", "mode_scales", "path_flow", "KinkGasPrior", "TrainResult", "train",
           "reverse_kl_loss", "detached_copy"]
