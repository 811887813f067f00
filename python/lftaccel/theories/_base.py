"""What every lattice theory shares: dispatch of action/grad to the kernels."""

from __future__ import annotations

import abc

import numpy as np

from .. import _kernels, ops


class LatticeTheory(abc.ABC):
    """Base of the theories. Subclasses set ``kernel``, ``max_dims`` and define ``_params()``."""

    kernel: str = ""
    min_dims: int = 1
    max_dims: int = 4

    @abc.abstractmethod
    def _params(self) -> dict:
        """The kernel's parameters by name, in the binding's order."""

    def _check(self, x):
        return _kernels.check_array(x, "x", min_dims=self.min_dims, max_dims=self.max_dims)

    def action(self, x):
        """Action of each configuration, shape (batch,).

        A torch tensor goes through the custom op ``lftaccel::lattice_action``, so the
        result is differentiable (its backward is the gradient kernel) and
        ``torch.compile`` traces it; a numpy array gives a numpy array.
        """
        self._check(x)
        if isinstance(x, np.ndarray):
            return _kernels.stencil(self.kernel, x, self._params(), grad=False)[0]
        return ops.lattice_action_op(x, self.kernel, list(self._params().values()))

    def grad(self, x):
        """dS/dx, shaped like x."""
        self._check(x)
        if isinstance(x, np.ndarray):
            return _kernels.stencil(self.kernel, x, self._params(), action=False)[1]
        return ops.lattice_grad_op(x, self.kernel, list(self._params().values()))

    def action_and_grad(self, x, *, action_out=None, grad_out=None):
        """Both in one fused pass (one read of x); no autograd history is recorded.

        The samplers' hot path: validation is left to the compiled kernel."""
        return _kernels.stencil(
            self.kernel, x, self._params(), action_out=action_out, grad_out=grad_out
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._params().items())))

