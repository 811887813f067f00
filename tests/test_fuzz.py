"""Property tests: malformed input at every entry point never crashes the process.

Each call either succeeds, and then its result has the right shape (and is finite
when the input and parameters are finite and modest) and the input was actually
valid, or it raises ValueError/TypeError. Any other exception fails the test as
it is, so distinct bugs are reported separately. The case builders take a
``draw`` object, so the same cases run under hypothesis in-process and, as a
plain seeded loop, in a subprocess where a segfault or abort shows up as a
non-zero return code instead of killing pytest.
"""

import math
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

import lftaccel
from lftaccel import _C, ops
from lftaccel.fourier import from_fourier, to_fourier

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


def check_out(out, x, shape, name):
    """A successful call got a valid output buffer for input x."""
    assert type(out) is type(x) or (isinstance(out, np.ndarray) and isinstance(x, np.ndarray)), (
        f"{name}: accepted a {type(out).__name__} for a {type(x).__name__} input")
    assert tuple(out.shape) == tuple(shape), f"{name}: shape {tuple(out.shape)} != {shape}"
    assert out.dtype == x.dtype, f"{name}: dtype {out.dtype} != {x.dtype}"
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


# ------------------------------------------------------------------ cases

def case_constructors(d, big=False):
    kind = d.choice(["Phi4", "XY", "Oscillator", "quartic", "harmonic", "from_standard"])
    p = lambda: d.choice(PARAMS if d.integer(0, 2) else GOOD_PARAMS)  # noqa: E731
    O = lftaccel.Oscillator
    if kind == "Phi4":
        args, fn = dict(kappa=p(), lam=p()), lftaccel.Phi4
    elif kind == "XY":
        args, fn = dict(beta=p()), lftaccel.XY
    elif kind == "Oscillator":
        args, fn = dict(beta=p(), m=p(), lam=p(), f=p()), O
    elif kind == "quartic":
        args, fn = dict(beta=p(), m=p(), c0=p(), c2=p(), c4=p()), O.quartic
    elif kind == "harmonic":
        args, fn = dict(beta=p(), m=p(), omega=p()), O.harmonic
    else:
        args, fn = dict(m2=p(), lam=p(), ndim=d.choice([1, 2, 3, 4, 0, 5, 2.0, "2", None])), lftaccel.Phi4.from_standard

    def check(obj):
        vals = {k: v for k, v in vars(obj).items() if v is not None}
        assert all(math.isfinite(v) for v in vals.values()), vals
        if isinstance(obj, lftaccel.Phi4):
            assert obj.lam >= 0
        if isinstance(obj, O):
            assert obj.beta > 0 and obj.m > 0 and obj.c4 >= 0 and (obj.c4 > 0 or obj.c2 >= 0), vals

    return f"{kind}(**{args!r})", lambda: fn(**args), check


THEORIES = [  # (label, factory, modest parameters)
    ("Phi4(0.2,0.5)", lambda: lftaccel.Phi4(0.2, 0.5), True),
    ("Phi4(-0.3,0)", lambda: lftaccel.Phi4(-0.3, 0.0), True),
    ("Phi4(1e300,1e300)", lambda: lftaccel.Phi4(1e300, 1e300), False),
    ("XY(0.7)", lambda: lftaccel.XY(0.7), True),
    ("XY(-1e300)", lambda: lftaccel.XY(-1e300), False),
    ("Oscillator(2)", lambda: lftaccel.Oscillator(2.0), True),
    ("harmonic(1,0.5,2)", lambda: lftaccel.Oscillator.harmonic(1.0, 0.5, 2.0), True),
    ("quartic(1e-300,1e300,..)", lambda: lftaccel.Oscillator.quartic(1e-300, 1e300, 0, 0, 1e300), False),
]


def draw_output(d, x, shape, buf=None):
    """An action_out/grad_out candidate for input x: mostly None or valid, sometimes bad;
    a slice of ``buf`` (shared with the other output) when buf is given."""
    how = "shared" if buf is not None else d.choice(
        ["none", "none", "none", "fresh", "fresh", "fresh", "dtype", "shape", "readonly", "overlap_x",
         "kind", "list", "strided"])
    is_torch = isinstance(x, torch.Tensor)
    dt = np_dtype(x)
    n = int(np.prod(shape))
    wrap = (lambda a: torch.from_numpy(a)) if is_torch else (lambda a: a)
    if how == "none":
        return None
    if how == "dtype":
        return wrap(np.empty(shape, np.float32 if dt == np.float64 else np.float64))
    if how == "shape":
        return wrap(np.empty(tuple(shape) + (1,), dt))
    if how == "readonly":
        a = np.empty(shape, dt)
        a.flags.writeable = False
        return a
    if how == "overlap_x" and (x.is_contiguous() if is_torch else x.flags.c_contiguous):
        flat = x.reshape(-1)
        if flat.shape[0] >= n:
            return flat[:n].reshape(shape)
    if how == "kind":
        ok = dt.isnative and dt != object
        return np.empty(shape, dt) if is_torch else torch.from_numpy(np.empty(shape, dt if ok else np.float64))
    if how == "list":
        return [0.0] * n
    if how == "strided":
        return wrap(np.empty(tuple(shape) + (2,), dt)[..., 0])
    if how == "shared" and buf is not None:
        return buf[:n].reshape(shape)
    return wrap(np.empty(shape, dt))


def case_theory_methods(d, big=False):
    label, make, par_modest = d.choice(THEORIES)
    theory = make()
    osc = isinstance(theory, lftaccel.Oscillator)
    method = d.choice(["action", "grad", "action_and_grad"] + (["fourier_action", "fourier_grad"] if osc else []))
    x = draw_any(d, big)
    kwargs = {}
    if method == "action_and_grad" and isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim >= 1:
        buf = None
        if d.integer(0, 4) == 0 and np_dtype(x).isnative and np_dtype(x) != object:
            buf = np.empty(int(np.prod(x.shape)) + x.shape[0], np_dtype(x))
            buf = torch.from_numpy(buf) if isinstance(x, torch.Tensor) else buf
        kwargs = dict(action_out=draw_output(d, x, tuple(x.shape[:1]), buf),
                      grad_out=draw_output(d, x, tuple(x.shape), buf))
    desc = f"{label}.{method}({type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}, {kwargs!r:.200})"

    def check(result):
        assert valid_field(x, max_dims=1 if osc else 4), f"accepted invalid x: {desc}"
        a, g = (result if method == "action_and_grad" else
                (result, None) if method.endswith("action") else (None, result))
        outs = [o for o in (a, g) if o is not None]
        if a is not None:
            check_out(a, x, tuple(x.shape[:1]), "action")
        if g is not None:
            check_out(g, x, tuple(x.shape), "grad")
        if len(outs) == 2:
            assert not shares(a, g), f"accepted overlapping action_out and grad_out: {desc}"
        if par_modest and modest_values(x):
            assert_finite(*outs, label=desc)

    return desc, lambda: getattr(theory, method)(x, **kwargs), check


def draw_C_output(d, x, shape, buf=None):
    if buf is None and (d.integer(0, 3) == 0 or not isinstance(x, np.ndarray)):
        return d.choice([None, None, np.empty(shape if all(s >= 0 for s in shape) else (1,)), draw_any(d)])
    return draw_output(d, x, shape, buf)


C_PARAMS = {"phi4": ("kappa", "lam"), "xy": ("beta",), "oscillator": ("beta", "m", "c0", "c2", "c4")}


def draw_C_params(d, kernel):
    params = {k: d.choice(PARAMS if d.integer(0, 2) == 0 else GOOD_PARAMS) for k in C_PARAMS[kernel]}
    if kernel == "oscillator" and d.integer(0, 1):  # mostly a valid potential
        params.update(beta=d.choice([0.5, 2.0]), m=d.choice([0.5, 1.0]), c4=d.choice([0.0, 1.0, 2.0]))
    return params


def C_params_ok(kernel, params):
    v = {k: real(p) for k, p in params.items()}
    if any(r is None or not math.isfinite(r) for r in v.values()):
        return False
    if kernel == "phi4":
        return v["lam"] >= 0
    if kernel == "oscillator":
        return v["beta"] > 0 and v["m"] > 0 and v["c4"] >= 0
    return True


def case_C_kernels(d, big=False):
    kernel = d.choice(["phi4", "xy", "oscillator", "oscillator_fourier"])
    pk = "oscillator" if kernel == "oscillator_fourier" else kernel
    x = draw_any(d, big)
    if isinstance(x, torch.Tensor) and d.integer(0, 3):
        x = x.numpy()
    shape = tuple(getattr(x, "shape", (1,))) or (1,)
    params = draw_C_params(d, pk)
    nthreads = d.choice(NTHREADS)
    stream = d.choice([0, 0, 0, 1, -1])
    max_dims = 4 if kernel in ("phi4", "xy") else 1
    if kernel == "oscillator_fourier":
        path = d.choice(["copy", "copy", "same", "any"])
        path = (np.array(x, copy=True) if isinstance(x, np.ndarray) and path == "copy" else
                x if path == "same" else draw_any(d))
        outs = dict(action=draw_C_output(d, x, shape[:1]), grad_coeffs=draw_C_output(d, x, shape),
                    grad_path=draw_C_output(d, x, shape))
        if d.integer(0, 5) == 0:
            outs["grad_path"] = outs["grad_coeffs"]
        args = (x, path)
    else:
        buf = None
        if isinstance(x, np.ndarray) and x.dtype.isnative and x.dtype != object and d.integer(0, 4) == 0:
            buf = np.empty(int(np.prod(shape)) + shape[0], x.dtype)  # action and grad share memory
        outs = dict(action=draw_C_output(d, x, shape[:1], buf), grad=draw_C_output(d, x, shape, buf))
        args = (x,)
    kw = dict(params, nthreads=nthreads, stream=stream)
    desc = f"_C.{kernel}({type(x).__name__} {shape} {getattr(x, 'dtype', '')}, outs={outs!r:.200}, {kw!r})"

    def call():
        return getattr(_C, kernel)(*args, *outs.values(), **kw)

    def check(_):
        assert valid_field(x, max_dims, kinds=(np.ndarray,)), f"accepted invalid x: {desc}"
        given_outs = [(k, o) for k, o in outs.items() if o is not None]
        assert given_outs, desc
        if kernel == "oscillator_fourier":
            assert valid_field(path, 1, kinds=(np.ndarray,)) and path.shape == x.shape and path.dtype == x.dtype
        for k, o in given_outs:
            check_out(o, x, shape[:1] if k == "action" else shape, k)
            if kernel == "oscillator_fourier":
                assert not shares(o, path), f"{k} overlaps path: {desc}"
        for i, (k1, o1) in enumerate(given_outs):
            for k2, o2 in given_outs[i + 1:]:
                assert not shares(o1, o2), f"accepted overlapping outputs {k1} and {k2}: {desc}"
        assert C_params_ok(pk, params), f"accepted bad parameters: {desc}"
        assert real(nthreads) is not None and real(nthreads) >= 0
        if modest(*params.values()) and modest_values(x):
            assert_finite(*(o for _, o in given_outs), label=desc)

    return desc, call, check


def case_C_philox(d, big=False):
    fill = d.integer(0, 3) > 0
    if fill:
        kind = d.choice(["uniform", "normal", "bits", "bits", "gauss", "", None, b"normal"])
        out = draw_any(d, big)
        if kind == "bits" and d.integer(0, 1):
            out = build_array(draw_shape(d, max_rank=3) + (4,), d.choice(["uint32", "uint32", "int32"]),
                              d.choice(LAYOUTS), "zeros", "numpy")
        ints = {k: d.choice(INTS if d.integer(0, 2) == 0 else [0, 1, 5])
                for k in ("seed", "step", "purpose", "chain_offset")}
        kw = dict(ints, nthreads=d.choice(NTHREADS))
        desc = f"_C.philox_fill({type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}, {kind!r}, {kw!r})"

        def check(_):
            assert isinstance(out, np.ndarray) and out.flags.c_contiguous and out.flags.writeable, desc
            assert out.ndim >= 2 and out.shape[0] >= 1, desc
            k = kind.decode() if isinstance(kind, bytes) else kind
            if k == "bits":
                assert out.dtype == np.uint32 and out.shape[-1] == 4, desc
            else:
                assert k in ("uniform", "normal") and out.dtype in (np.float32, np.float64), desc
            for k in ("seed", "purpose", "chain_offset"):
                assert 0 <= real(ints[k]) < 2**32, desc
            assert 0 <= real(ints["step"]) < 2**63, desc
            if k == "uniform":
                assert np.all((out > 0) & (out < 1)), desc
            elif k == "normal":
                assert_finite(out, label=desc)

        return desc, lambda: _C.philox_fill(out, kind, **kw), check
    word = lambda: d.choice([0, 1, 2**32 - 1, 2**32, -1, 1.5, None, "7", np.uint32(3)])  # noqa: E731
    counter = d.choice([lambda: [word() for _ in range(4)], lambda: [0, 1, 2], lambda: [0] * 5,
                        lambda: None, lambda: "abcd", lambda: np.arange(4, dtype=np.uint32)])()
    key = d.choice([lambda: [word() for _ in range(2)], lambda: [0], lambda: None, lambda: (1, 2)])()
    fn = d.choice([_C.philox4x32_10, lftaccel.random.philox4x32_10])
    desc = f"philox4x32_10({counter!r}, {key!r})"

    def check_block(r):
        assert len(r) == 4 and all(0 <= int(v) < 2**32 for v in r), desc
        for seq, n in ((counter, 4), (key, 2)):
            assert len(seq) == n and all(isinstance(real(w), float) and 0 <= real(w) < 2**32 for w in seq), desc

    return desc, lambda: fn(counter, key), check_block


def case_random(d, big=False):
    fn = d.choice(["uniform", "normal", "bits"])
    batch = d.choice([1, 2, 3, 1, 2, 0, -1, 2.0, "2", None, INF, NAN, 10**30, np.int64(2)])
    sites = d.choice([1, 3, (2, 2), 0, (), (0,), (2, 0, 3), -1, (-1, 2), None, "ab", 10**30, (2**31, 2**31, 0)])
    kw = {k: d.choice(INTS if d.integer(0, 2) == 0 else [0, 1, 5])
          for k in ("seed", "step", "purpose", "chain_offset")}
    if fn != "bits":
        kw["dtype"] = d.choice([torch.float32, torch.float64, torch.float64, torch.int64, torch.float16,
                                torch.bfloat16, torch.complex64, torch.bool, None, "float32"])
    desc = f"random.{fn}({batch!r}, {sites!r}, {kw!r})"

    def check(out):
        s = (sites,) if isinstance(sites, int) else tuple(sites)
        expect = (int(batch), *map(int, s)) + ((4,) if fn == "bits" else ())
        assert tuple(out.shape) == expect and int(batch) >= 1 and all(int(v) >= 0 for v in s), desc
        if fn == "uniform":
            assert bool(((out > 0) & (out < 1)).all()), desc
        elif fn == "normal":
            assert_finite(out, label=desc)

    return desc, lambda: getattr(lftaccel.random, fn)(batch, sites, **kw), check


def case_ops(d, big=False):
    op = d.choice(["lattice_action", "lattice_grad", "oscillator_fourier_action", "oscillator_fourier_grad"])
    x = draw_any(d, big)
    if isinstance(x, np.ndarray) and d.integer(0, 3) and x.dtype.isnative and x.dtype != object:
        x = torch.from_numpy(np.array(x))
    fourier = op.startswith("oscillator")
    kernel = "oscillator" if fourier else d.choice(["phi4", "xy", "oscillator", "phi4", "foo", None])
    n = len(C_PARAMS.get(kernel, ()))
    params = d.choice([lambda: [d.choice(GOOD_PARAMS) for _ in range(n)], lambda: [d.choice(PARAMS) for _ in range(n)],
                       lambda: [0.5] * d.integer(0, 6), lambda: None, lambda: "abc", lambda: (1.0,) * n])()
    if kernel == "oscillator" and isinstance(params, list) and len(params) == 5 and d.integer(0, 1):
        params[:2] = [1.0, 0.5]
    args = (x, params) if fourier else (x, kernel, params)
    desc = f"ops.{op}({type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}, {args[1:]!r})"

    def check(out):
        assert valid_field(x, 1 if kernel == "oscillator" else 4, kinds=(torch.Tensor,)), f"accepted invalid x: {desc}"
        p = dict(zip(C_PARAMS[kernel], params))
        assert len(p) == len(params) and C_params_ok(kernel, p), f"accepted bad params: {desc}"
        assert tuple(out.shape) == (tuple(x.shape[:1]) if op.endswith("action") else tuple(x.shape)), desc
        assert out.dtype == x.dtype, desc
        if modest(*params) and modest_values(x):
            assert_finite(out, label=desc)

    return desc, lambda: getattr(ops, op)(*args), check


def case_fourier(d, big=False):
    fn = d.choice([to_fourier, from_fourier])
    x = draw_any(d, big) if d.integer(0, 1) else draw_array(d)
    desc = f"{fn.__name__}({type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')})"

    def check(out):
        assert type(out) is type(x) and tuple(out.shape) == tuple(x.shape), f"shape/type changed: {desc}"
        floats = (torch.float32, torch.float64) if isinstance(x, torch.Tensor) else (np.dtype("f4"), np.dtype("f8"))
        assert x.dtype in floats, f"accepted dtype {x.dtype}: {desc}"
        if modest_values(x):
            assert_finite(out, label=desc)

    return desc, lambda: fn(x), check


def case_C_parallel(d, big=True):
    """Valid, large buffers (OpenMP parallel path) with odd thread counts; subprocess only."""
    kernel = d.choice(["phi4", "xy", "oscillator", "oscillator_fourier", "philox"])
    shape = d.choice(BIG_SHAPES[:1] if kernel.startswith("osc") else BIG_SHAPES)
    dtype = d.choice(["float32", "float64"])
    x = build_array(shape, dtype, "c", "normal", "numpy")
    kw = dict(nthreads=d.choice(NTHREADS + [4, 64, 2**31 - 1]))
    if kernel == "philox":
        kind = d.choice(["uniform", "normal"])
        kw.update(seed=1, step=2, purpose=3)
        desc = f"_C.philox_fill({shape} {dtype}, {kind!r}, {kw!r})"
        return desc, lambda: _C.philox_fill(x, kind, **kw), lambda _: assert_finite(x, label=desc)
    kw.update({"phi4": dict(kappa=0.2, lam=0.5), "xy": dict(beta=0.7)}.get(kernel, dict(beta=2.0, m=0.5, c0=1.0,
                                                                                      c2=-2.0, c4=1.0)))
    outs = [np.empty(shape[:1], dtype), np.empty(shape, dtype)]
    if kernel == "oscillator_fourier":
        outs = [x.copy()] + outs + [np.empty(shape, dtype)]
    desc = f"_C.{kernel}({shape} {dtype}, {kw!r})"
    return desc, lambda: getattr(_C, kernel)(x, *outs, **kw), lambda _: assert_finite(*outs, label=desc)


FAMILIES = {"constructors": case_constructors, "theory_methods": case_theory_methods,
            "C_kernels": case_C_kernels, "C_philox": case_C_philox, "random": case_random,
            "ops": case_ops, "fourier": case_fourier}
SUBPROCESS_FAMILIES = dict(FAMILIES, C_parallel=case_C_parallel)


def run_case(desc, call, check):
    """Runs one case: ValueError/TypeError is fine, success is checked, anything else propagates."""
    try:
        result = call()
    except ALLOWED as e:
        assert str(e), f"{type(e).__name__} without a message: {desc}"
        return "refused"
    check(result)
    return "ok"


# --------------------------------------------------------- hypothesis, in-process

# No shrinking: it can take minutes once several distinct bugs are found, and each
# failure already notes the full call that triggered it.
FUZZ = settings(derandomize=True, database=None, max_examples=100, deadline=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("family", list(FAMILIES))
@FUZZ
@given(data=st.data())
def test_fuzz(family, data):
    desc, call, check = FAMILIES[family](HypothesisDraw(data))
    note(desc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_case(desc, call, check)


# ------------------------------------------------------- subprocess: never crash

def fuzz_loop(n_per_family=40, seed=0, big=True):
    """The fuzz loop without hypothesis: prints each case before running it, so the
    last line names the culprit if the process dies; tallies every outcome."""
    import collections

    warnings.simplefilter("ignore")
    tally = collections.Counter()
    for name, family in SUBPROCESS_FAMILIES.items():
        rng = random.Random(f"{seed}-{name}")
        for i in range(n_per_family):
            desc, call, check = family(RandomDraw(rng), big)
            print(f"CASE {name} {i}: {desc}"[:400], flush=True)
            try:
                tally[run_case(desc, call, check)] += 1
            except Exception as e:  # reported by test_fuzz; here only a crash matters
                tally[f"{type(e).__name__}"] += 1
    print("TALLY", dict(tally), flush=True)


def test_fuzz_loop_never_crashes_the_process():
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import test_fuzz; test_fuzz.fuzz_loop()"
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                       timeout=300)
    last = [ln for ln in r.stdout.splitlines() if ln.startswith("CASE")][-1:]
    assert r.returncode == 0 and "TALLY" in r.stdout, (
        f"fuzz subprocess died with return code {r.returncode} at\n{last}\nstderr:\n{r.stderr[-3000:]}")
