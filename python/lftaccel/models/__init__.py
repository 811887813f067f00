"""Generative samplers trained with PyTorch on the kernels (flows; autoregressive and
diffusion models to follow). Every one gives (samples, log q) for lftaccel.mcmc.nmcmc."""
