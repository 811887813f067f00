"""torch custom ops over the compiled kernels, differentiable and torch.compile-safe.

The ``*_op`` objects are the registered ops (``torch.ops.lftaccel.*``); the plain
functions validate their arguments first and are what callers should use.
``lftaccel::lattice_action(x, kernel, params)`` returns the action per configuration;
its backward calls the gradient kernel ``lftaccel::lattice_grad``. The Matsubara
oscillator action has its own pair. Each op has a fake (meta) implementation, so
``torch.compile`` traces through without running the kernel. The gradient ops are
not themselves differentiable (no double backward).

``kernel`` is 'phi4' (params [kappa, lam]), 'xy' ([beta]) or 'oscillator'
([beta, m, c0, c2, c4]).
"""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from . import _kernels
from .fourier import from_fourier, to_fourier

_PARAM_NAMES = _kernels.STENCIL_PARAMS


def _params(kernel: str, params: List[float]) -> dict:
    names = _PARAM_NAMES.get(kernel)
    if names is None:
        raise ValueError(f"kernel must be one of {sorted(_PARAM_NAMES)}, got {kernel!r}")
    if len(params) != len(names):
        raise ValueError(f"kernel {kernel!r} takes params {list(names)}, got {len(params)} values")
    return dict(zip(names, params))


def _check_call(x, kernel, params, *, name="x", kernel_fixed=None):
    """What the op schemas cannot say clearly: a ValueError/TypeError naming the argument."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if kernel_fixed is None:
        if not isinstance(kernel, str):
            raise TypeError(f"kernel must be a str, got {type(kernel).__name__}")
        if kernel not in _PARAM_NAMES:
            raise ValueError(f"kernel must be one of {sorted(_PARAM_NAMES)}, got {kernel!r}")
    kernel = kernel_fixed or kernel
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list of floats, got {type(params).__name__}")
    names = _PARAM_NAMES[kernel]
    if len(params) != len(names):
        raise ValueError(f"params for {kernel!r} must be {list(names)}, got {len(params)} values")
    params = [_kernels.check_param(p, f"params[{i}] ({n})") for i, (p, n) in enumerate(zip(params, names))]
    max_dims = 1 if kernel == "oscillator" else 4
    _kernels.check_array(x, name, min_dims=1, max_dims=max_dims)
    return params


def lattice_action(x: Tensor, kernel: str, params: List[float]) -> Tensor:
    """Action per configuration, differentiable (backward: the gradient kernel)."""
    params = _check_call(x, kernel, params)
    return lattice_action_op(x, kernel, params)


def lattice_grad(x: Tensor, kernel: str, params: List[float]) -> Tensor:
    """dS/dx from the gradient kernel."""
    params = _check_call(x, kernel, params)
    return lattice_grad_op(x, kernel, params)


def oscillator_fourier_action(c: Tensor, params: List[float]) -> Tensor:
    """Matsubara oscillator action of real Fourier coefficients, differentiable."""
    params = _check_call(c, None, params, name="c", kernel_fixed="oscillator")
    return oscillator_fourier_action_op(c, params)


def oscillator_fourier_grad(c: Tensor, params: List[float]) -> Tensor:
    params = _check_call(c, None, params, name="c", kernel_fixed="oscillator")
    return oscillator_fourier_grad_op(c, params)


@torch.library.custom_op("lftaccel::lattice_action", mutates_args=())
def lattice_action_op(x: Tensor, kernel: str, params: List[float]) -> Tensor:
    action, _ = _kernels.stencil(kernel, x, _params(kernel, params), action=True, grad=False)
    return action


@torch.library.custom_op("lftaccel::lattice_grad", mutates_args=())
def lattice_grad_op(x: Tensor, kernel: str, params: List[float]) -> Tensor:
    _, grad = _kernels.stencil(kernel, x, _params(kernel, params), action=False, grad=True)
    return grad


@lattice_action_op.register_fake
def _(x, kernel, params):
    return x.new_empty(x.shape[:1])


@lattice_grad_op.register_fake
def _(x, kernel, params):
    return torch.empty_like(x)


def _broadcast(g: Tensor, like: Tensor) -> Tensor:
    return g.reshape((-1,) + (1,) * (like.dim() - 1))


def _setup_lattice(ctx, inputs, output):
    x, kernel, params = inputs
    ctx.save_for_backward(x)
    ctx.kernel = kernel
    ctx.params = params


def _backward_lattice(ctx, g):
    (x,) = ctx.saved_tensors
    return _broadcast(g, x) * lattice_grad_op(x, ctx.kernel, ctx.params), None, None


lattice_action_op.register_autograd(_backward_lattice, setup_context=_setup_lattice)


@torch.library.custom_op("lftaccel::oscillator_fourier_action", mutates_args=())
def oscillator_fourier_action_op(c: Tensor, params: List[float]) -> Tensor:
    x = from_fourier(c).contiguous()
    action, _, _ = _kernels.oscillator_fourier(
        c, x, _params("oscillator", params), action=True, grad_coeffs=False, grad_path=False
    )
    return action


@torch.library.custom_op("lftaccel::oscillator_fourier_grad", mutates_args=())
def oscillator_fourier_grad_op(c: Tensor, params: List[float]) -> Tensor:
    x = from_fourier(c).contiguous()
    _, gc, gx = _kernels.oscillator_fourier(
        c, x, _params("oscillator", params), action=False, grad_coeffs=True, grad_path=True
    )
    return gc + to_fourier(gx)


@oscillator_fourier_action_op.register_fake
def _(c, params):
    return c.new_empty(c.shape[:1])


@oscillator_fourier_grad_op.register_fake
def _(c, params):
    return torch.empty_like(c)


def _setup_fourier(ctx, inputs, output):
    c, params = inputs
    ctx.save_for_backward(c)
    ctx.params = params


def _backward_fourier(ctx, g):
    (c,) = ctx.saved_tensors
    return _broadcast(g, c) * oscillator_fourier_grad_op(c, ctx.params), None


oscillator_fourier_action_op.register_autograd(_backward_fourier, setup_context=_setup_fourier)
