"""Shared helpers of the bad-input tests (test_bad_input*.py)."""


import numpy as np
import torch

import lftaccel

BAD = (ValueError, TypeError)
OSC = dict(beta=1.0, m=0.5, c0=1.0, c2=-2.0, c4=1.0)  # raw _C oscillator parameters


def names(arg):
    """Regex for a message naming ``arg`` (action_out may be reported as 'action')."""
    if arg.endswith("_out"):
        return rf"\b{arg[:-4]}(_out)?\b"
    return rf"\b{arg}\b"


def field(shape, dtype=np.float64, kind="numpy", seed=0):
    a = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    return torch.from_numpy(a) if kind == "torch" else a


class FakeCudaArray:
    """Claims ``__cuda_array_interface__`` but lives in host memory (or is malformed)."""

    def __init__(self, shape=(2, 3), typestr="<f8", drop=(), **override):
        self._host = np.zeros(64)
        cai = dict(shape=None if shape is None else tuple(shape), typestr=typestr, data=(self._host.ctypes.data, False),
                   strides=None, version=3)
        cai.update(override)
        for k in drop:
            cai.pop(k)
        self.__cuda_array_interface__ = cai


def unaligned(shape):
    buf = np.zeros(8 * int(np.prod(shape)) + 1, dtype=np.uint8)
    return np.ndarray(shape, dtype=np.float64, buffer=buf, offset=1)


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


THEORIES = {
    "phi4": (lambda: lftaccel.Phi4(0.2, 0.5), 4),
    "xy": (lambda: lftaccel.XY(0.7), 4),
    "oscillator": (lambda: lftaccel.Oscillator(2.0), 1),
}
METHODS = ["action", "grad", "action_and_grad"]
