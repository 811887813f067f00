"""lftaccel: C++/CUDA-accelerated machine learning for lattice field theory.

The kernels are compiled into ``lftaccel._C``; use them through the theories
(:class:`Phi4`, :class:`XY`, :class:`Oscillator`), the custom ops in
:mod:`lftaccel.ops`, or the Philox streams in :mod:`lftaccel.random`. Every kernel
has a pure-torch twin in :mod:`lftaccel.reference`.
"""

from __future__ import annotations

__version__ = "0.1.0"

# torch first: its bundled libgomp then satisfies _C's libgomp.so.1, so the kernels
# and torch share one OpenMP runtime and one thread pool (no oversubscription).
import torch  # noqa: E402,F401

from . import fourier, ops, random, reference  # noqa: E402
from .runtime import steady_malloc  # noqa: E402
from ._C import build_info as _compiled_build_info  # noqa: E402
from .theories import XY, Oscillator, Phi4  # noqa: E402

__all__ = ["Phi4", "XY", "Oscillator", "build_info", "fourier", "ops", "random", "reference", "steady_malloc"]


def build_info() -> dict:
    """What was compiled (CUDA and its architectures, OpenMP, compiler, version, the git commit
    built, ``source_commit``: git describe at configure time, "unknown" outside a checkout) and
    which CUDA devices are visible, to the kernels and to torch."""
    info = dict(_compiled_build_info())
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["torch_cuda_devices"] = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return info
