"""Malformed-input generators of the fuzz tests: arrays, shapes, layouts, parameter values."""

import warnings

import numpy as np
import torch
from hypothesis import strategies as st


ALLOWED = (ValueError, TypeError)
NAN, INF = float("nan"), float("inf")


class HypothesisDraw:
    def __init__(self, data):
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(seq))

    def integer(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))


class RandomDraw:
    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)


# ----------------------------------------------------------------- arrays

DTYPES = ["float64", "float32", "float64", "float32", "int64", "int32", "float16", "complex64",
          "complex128", "bool", "uint32", ">f8", "object"]
EXTENTS = [1, 2, 3, 4, 0, 1, 2]
LAYOUTS = ["c", "c", "c", "T", "strided", "fortran", "readonly", "unaligned"]
VALUES = ["normal", "normal", "normal", "zeros", "nan", "inf", "huge"]
# Large enough for the OpenMP parallel path (>= 2^15 sites, several work items);
# only drawn in the subprocess loop, where a crash cannot take pytest down.
BIG_SHAPES = [(2, 1 << 15), (3, 128, 128), (4, 16, 16, 16, 8)]


class FakeCudaArray:
    """Claims __cuda_array_interface__; points at host memory, or is malformed."""

    def __init__(self, cai):
        self._host = np.zeros(64)
        if isinstance(cai, dict) and cai.get("data") == "host":
            cai = dict(cai, data=(self._host.ctypes.data, False))
        self.__cuda_array_interface__ = cai

    def __repr__(self):
        return f"FakeCudaArray({self.__cuda_array_interface__!r})"


def build_array(shape, dtype, layout, values, kind, seed=0):
    """An array of exactly ``shape`` with the requested dtype, memory layout and values."""
    n = int(np.prod(shape)) if shape else 1
    base = 1.5 * np.random.default_rng(seed).standard_normal(n)
    if values == "zeros":
        base[:] = 0
    elif values in ("nan", "inf") and n:
        base[n // 2] = NAN if values == "nan" else -INF
    elif values == "huge":
        base *= 1e300
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = base.reshape(shape).astype(dtype)
    if layout == "T" and len(shape) > 1:
        a = np.ascontiguousarray(src.T).T
    elif layout == "strided" and len(shape) > 0:
        a = np.repeat(src, 2, axis=-1)[..., ::2]
    elif layout == "fortran":
        a = np.asfortranarray(src)
    elif layout == "unaligned" and src.dtype.itemsize > 1 and src.dtype != object:
        buf = np.zeros(src.nbytes + 1, dtype=np.uint8)
        a = np.ndarray(shape, dtype=src.dtype, buffer=buf, offset=1)
        a[...] = src
    else:
        a = np.ascontiguousarray(src)
        if layout == "readonly":
            a.flags.writeable = False
    if kind == "torch" and a.dtype.isnative and a.dtype != object and a.flags.writeable and a.flags.aligned:
        return torch.from_numpy(a)
    return a


def draw_shape(d, big=False, max_rank=6):
    if big and d.integer(0, 7) == 0:
        return d.choice(BIG_SHAPES)
    return tuple(d.choice(EXTENTS) for _ in range(d.integer(0, max_rank)))


def draw_array(d, shape=None, big=False, kinds=("numpy", "torch")):
    shape = draw_shape(d, big) if shape is None else shape
    return build_array(shape, d.choice(DTYPES), d.choice(LAYOUTS), d.choice(VALUES), d.choice(kinds))


NOT_ARRAYS = [None, "x", 3.0, [[0.0, 1.0], [2.0, 3.0]], (1.0,), {"a": 1}, b"\x00" * 16]


def draw_fake_cuda(d):
    shape = d.choice([(2, 3), (2, 0), (0, 3), (2, -3), (2, 2**32, 2**32), None, "ab", (2.5, 3)])
    cai = {"shape": shape, "typestr": d.choice(["<f8", "<f4", "<u4", "|b1", 5]),
           "data": d.choice(["host", (0, False), ("0x10", False), None, ()]),
           "strides": d.choice([None, None, (8,), "ab"]), "version": 3}
    for k in ("shape", "typestr", "data"):
        if d.integer(0, 9) == 0:
            cai.pop(k)
    return FakeCudaArray(d.choice([cai, cai, cai, "not a dict", None]))


def draw_any(d, big=False):
    """Mostly arrays (a third of them valid fields), sometimes something else entirely."""
    r = d.integer(0, 19)
    if r == 0:
        return d.choice(NOT_ARRAYS)
    if r == 1:
        return draw_fake_cuda(d)
    if r < 8:
        shape = tuple(d.choice([1, 2, 3, 4]) for _ in range(d.integer(2, 5)))
        return build_array(shape, d.choice(["float32", "float64"]), "c", d.choice(VALUES),
                           d.choice(["numpy", "torch"]))
    return draw_array(d, big=big)


def as_numpy(a):
    return a.numpy() if isinstance(a, torch.Tensor) else a


def valid_field(x, max_dims=4, kinds=(np.ndarray, torch.Tensor)):
    """What the kernels accept as a (batch, *lattice) input."""
    if not isinstance(x, kinds):
        return False
    if isinstance(x, torch.Tensor):
        if x.dtype not in (torch.float32, torch.float64) or not x.is_contiguous() or x.device.type != "cpu":
            return False
    else:
        if x.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            return False
        if not (x.flags.c_contiguous and x.flags.aligned):
            return False
    return 2 <= x.ndim <= 1 + max_dims and x.shape[0] >= 1 and all(s >= 1 for s in x.shape[1:])


def modest_values(x):
    a = as_numpy(x)
    return bool(np.all(np.isfinite(a)) and (a.size == 0 or np.abs(a).max() <= 10))


def np_dtype(x):
    return as_numpy(torch.empty(0, dtype=x.dtype)).dtype if isinstance(x, torch.Tensor) else x.dtype


def shares(a, b):
    return np.shares_memory(as_numpy(a), as_numpy(b))


def check_out(out, x, shape, name, wide_action=False):
    """A successful call got a valid output buffer for input x (wide_action: _C's action, which may
    be float64 for a float32 field)."""
    assert type(out) is type(x) or (isinstance(out, np.ndarray) and isinstance(x, np.ndarray)), (
        f"{name}: accepted a {type(out).__name__} for a {type(x).__name__} input")
    assert tuple(out.shape) == tuple(shape), f"{name}: shape {tuple(out.shape)} != {shape}"
    assert out.dtype == x.dtype or (wide_action and np_dtype(x) == np.float32 and np_dtype(out) == np.float64), (
        f"{name}: dtype {out.dtype} != {x.dtype}")
    if isinstance(out, torch.Tensor):
        assert out.is_contiguous(), f"{name}: accepted a non-contiguous output"
    else:
        assert out.flags.c_contiguous and out.flags.aligned and out.flags.writeable, (
            f"{name}: accepted a non-contiguous, unaligned or read-only output")
    assert not shares(out, x), f"{name}: accepted an output overlapping the input"


def assert_finite(*arrays, label=""):
    for a in arrays:
        assert np.all(np.isfinite(as_numpy(a))), f"{label}: non-finite result for finite, modest input"


# ------------------------------------------------------------- parameters

PARAMS = [0.0, 0.5, 1.0, 2.0, -0.5, -3.0, 1e-3, 5e-324, 1e39, 1e300, -1e300, NAN, INF, -INF, 3, -2,
          10**400, True, None, "1.0", [1.0], 1j, np.float32(0.25), np.float64(NAN), np.int64(2),
          torch.tensor(0.3), torch.tensor([1.0, 2.0])]
GOOD_PARAMS = [0.0, 0.5, 1.0, 2.0, 0.3, 1e-3]
INTS = [0, 1, 7, 2**32 - 1, 2**32, -1, 2**63, 2**64, 1.5, None, True, np.int64(5), "3"]
NTHREADS = [0, 0, 1, 2, 3, -1, 2**31 - 1, 2**31, -2**31, 1.0, None]


def real(v):
    """v as a float if it is a real number (as pybind11/float() would take it), else None."""
    if isinstance(v, (str, bytes, list, tuple, complex)) or v is None:
        return None
    if isinstance(v, torch.Tensor) and v.numel() != 1:
        return None
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return None


def modest(*vals):
    return all(real(v) is not None and abs(real(v)) <= 10 and (real(v) == 0 or abs(real(v)) >= 1e-3)
               for v in vals)
