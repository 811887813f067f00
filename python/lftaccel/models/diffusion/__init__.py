"""Score-based diffusion models for lattice fields: forward SDEs (VE, VP) with their closed-form
perturbation kernels, a periodic U-Net score network with its denoising score-matching loss,
and reverse-time sampling through the fused Euler-Maruyama kernel; training on HDF5 ensembles
split by chain, with an EMA of the weights; the probability-flow ODE with log q; the learnt
score as a Langevin drift (stochastic quantization). ``train_from_ensemble``, ``load_model`` and
``generate`` are the commands ``lftaccel train diffusion`` and ``lftaccel generate`` from Python
(model_file.py)."""

from .flow_ode import ODESampler, probability_flow
from .model_file import generate, load_model, train_from_ensemble
from .quantization import learnt_langevin
from .sde import VESDE, VPSDE, make_sde, reverse_sample
from .train import FieldScale, split_by_chain, train
from .unet import ScoreUNet, dsm_loss

__all__ = ["VESDE", "VPSDE", "make_sde", "reverse_sample", "ScoreUNet", "dsm_loss", "FieldScale",
           "split_by_chain", "train", "probability_flow", "learnt_langevin",
           "ODESampler", "train_from_ensemble", "load_model", "generate"]
