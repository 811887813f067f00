"""Continuous autoregressive networks (CANs) for the 2D XY model: a masked PixelCNN on the
periodic lattice whose conditionals are Beta or von Mises mixtures on the circle, trained by
the variational free energy with the score-function gradient, made exact by
lftaccel.mcmc.nmcmc."""

from .circular import BetaMixture, VonMisesMixture, make_conditional
from .masked import PeriodicMaskedConv
from .network import CAN
from .train import energy, fit, free_energy_loss, train

__all__ = ["CAN", "train", "fit", "energy", "free_energy_loss", "BetaMixture", "VonMisesMixture", "make_conditional",
           "PeriodicMaskedConv"]
