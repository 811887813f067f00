"""Generative samplers trained with PyTorch on the kernels: normalizing flows (flows),
continuous autoregressive networks for XY (can), score-based diffusion models (diffusion).
Every one gives (samples, log q) for lftaccel.mcmc.nmcmc. The shared training loop is
_loop.optimise."""
