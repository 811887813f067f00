"""Bad input raises a clear ValueError/TypeError that names the offending argument.

Covers every public entry point (theories, their methods, lftaccel.fourier,
lftaccel.random, lftaccel.ops) and the raw compiled module ``lftaccel._C``:
wrong dtype, device, rank, layout, empty shapes, non-finite and out-of-range
parameters, bad output buffers and objects that are not arrays at all.
Inputs that would crash the process are run in a subprocess.
"""

import re

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import _C, ops
from lftaccel.fourier import from_fourier, to_fourier

from bad_input_helpers import (  # noqa: F401
    BAD, METHODS, OSC, THEORIES, FakeCudaArray, field, names, readonly, unaligned,
)


# ----------------------------------------------------------------- parameters

PARAM_CASES = [
    # (constructor, kwargs, exception, argument named in the message)
    (lftaccel.Phi4, dict(kappa=float("nan"), lam=0.1), ValueError, "kappa"),
    (lftaccel.Phi4, dict(kappa=float("inf"), lam=0.1), ValueError, "kappa"),
    (lftaccel.Phi4, dict(kappa=0.1, lam=float("-inf")), ValueError, "lam"),
    (lftaccel.Phi4, dict(kappa=0.1, lam=-0.5), ValueError, "lam"),
    (lftaccel.Phi4, dict(kappa="0.1", lam=0.1), TypeError, "kappa"),
    (lftaccel.Phi4, dict(kappa=None, lam=0.1), TypeError, "kappa"),
    (lftaccel.Phi4, dict(kappa=[0.1], lam=0.1), TypeError, "kappa"),
    (lftaccel.Phi4, dict(kappa=0.1j, lam=0.1), TypeError, "kappa"),
    (lftaccel.Phi4, dict(kappa=True, lam=0.1), TypeError, "kappa"),
    (lftaccel.Phi4, dict(kappa=0.1, lam=torch.tensor([0.1, 0.2])), TypeError, "lam"),
    (lftaccel.XY, dict(beta=float("nan")), ValueError, "beta"),
    (lftaccel.XY, dict(beta=float("-inf")), ValueError, "beta"),
    (lftaccel.XY, dict(beta="hot"), TypeError, "beta"),
    (lftaccel.Oscillator, dict(beta=0.0), ValueError, "beta"),
    (lftaccel.Oscillator, dict(beta=-1.0), ValueError, "beta"),
    (lftaccel.Oscillator, dict(beta=float("inf")), ValueError, "beta"),
    (lftaccel.Oscillator, dict(beta=1.0, m=0.0), ValueError, "m"),
    (lftaccel.Oscillator, dict(beta=1.0, m=-0.5), ValueError, "m"),
    (lftaccel.Oscillator, dict(beta=1.0, lam=-1.0), ValueError, "lam must be > 0 for the double well: got -1.0"),
    (lftaccel.Oscillator, dict(beta=1.0, lam=0.0), ValueError, "free particle"),  # V = 0: Z diverges
    (lftaccel.Oscillator, dict(beta=1.0, f=float("nan")), ValueError, "f"),
    (lftaccel.Oscillator, dict(beta=None), TypeError, "beta"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0=0.0, c2=0.0, c4=-1.0), ValueError, "c4"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0=0.0, c2=-1.0, c4=0.0), ValueError,
     "c2 must be > 0 when c4 == 0: got c2=-1.0"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0=1.0, c2=0.0, c4=0.0), ValueError, "c2 must be > 0"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0=float("inf")), ValueError, "c0"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0="a"), TypeError, "c0"),
    (lftaccel.Oscillator.quartic, dict(beta=0.0, m=0.5), ValueError, "beta"),
    (lftaccel.Oscillator.harmonic, dict(beta=1.0, m=0.5, omega=0.0), ValueError, "omega"),
    (lftaccel.Oscillator.harmonic, dict(beta=1.0, m=-1.0, omega=1.0), ValueError, "m"),
    (lftaccel.Oscillator.harmonic, dict(beta=-1.0, m=0.5, omega=1.0), ValueError, "beta"),
    (lftaccel.Phi4.from_standard, dict(m2=float("nan"), lam=1.0), ValueError, "m2"),
    (lftaccel.Phi4.from_standard, dict(m2=-4.0, lam=-1.0), ValueError, "lam"),
    (lftaccel.Phi4.from_standard, dict(m2=-5.0, lam=0.0), ValueError, "m2"),
    (lftaccel.Phi4.from_standard, dict(m2=1.0, lam=1.0, ndim=0), ValueError, "ndim"),
    (lftaccel.Phi4.from_standard, dict(m2=1.0, lam=1.0, ndim=5), ValueError, "ndim"),
    (lftaccel.Phi4.from_standard, dict(m2=1.0, lam=1.0, ndim="2"), BAD, "ndim"),
    # kappa ~ 1e-200 is fine, but lambda = lam kappa^2 underflows: not the same theory
    (lftaccel.Phi4.from_standard, dict(m2=1e200, lam=1.0), ValueError, "m2"),
    # Finite arguments whose derived quantities overflow a float.
    (lftaccel.Phi4, dict(kappa=10**400, lam=0.1), BAD, "kappa"),
    (lftaccel.Oscillator, dict(beta=1.0, f=1e200), BAD, "f|c0|c2"),
    (lftaccel.Oscillator.harmonic, dict(beta=1.0, m=0.5, omega=1e200), BAD, "omega|c2"),
    (lftaccel.Oscillator, dict(beta=torch.tensor(1.0, device="meta")), BAD, "beta"),
]


@pytest.mark.parametrize("ctor,kwargs,exc,arg", PARAM_CASES,
                         ids=[f"{c.__qualname__}-{a}-{i}" for i, (c, _, _, a) in enumerate(PARAM_CASES)])
def test_bad_parameters(ctor, kwargs, exc, arg):
    with pytest.raises(exc, match=rf"\b({arg})\b"):
        ctor(**kwargs)


# ---------------------------------------------------- x for the theory methods

X_CASES = [
    # (kind, shape, dtype, transform, exception)
    ("numpy", (2, 4), np.int64, None, TypeError),
    ("numpy", (2, 4), np.int32, None, TypeError),
    ("numpy", (2, 4), np.float16, None, TypeError),
    ("numpy", (2, 4), np.complex128, None, TypeError),
    ("numpy", (2, 4), np.bool_, None, TypeError),
    ("numpy", (2, 4), np.uint32, None, TypeError),
    ("numpy", (2, 4), ">f8", None, TypeError),
    ("torch", (2, 4), torch.int64, None, TypeError),
    ("torch", (2, 4), torch.float16, None, TypeError),
    ("torch", (2, 4), torch.bfloat16, None, TypeError),
    ("torch", (2, 4), torch.complex64, None, TypeError),
    ("torch", (2, 4), torch.bool, None, TypeError),
    ("numpy", (), np.float64, None, ValueError),
    ("numpy", (4,), np.float64, None, ValueError),
    ("numpy", (1, 2, 1, 2, 1, 2), np.float64, None, ValueError),
    ("torch", (), torch.float64, None, ValueError),
    ("torch", (4,), torch.float64, None, ValueError),
    ("torch", (1, 2, 1, 2, 1, 2), torch.float64, None, ValueError),
    ("numpy", (0, 4), np.float64, None, ValueError),
    ("numpy", (2, 0), np.float64, None, ValueError),
    ("torch", (0, 4), torch.float32, None, ValueError),
    ("torch", (2, 0), torch.float32, None, ValueError),
    ("numpy", (4, 2), np.float64, "T", ValueError),
    ("numpy", (2, 8), np.float64, "stride", ValueError),
    ("numpy", (2, 4), np.float64, "unaligned", ValueError),
    ("torch", (4, 2), torch.float64, "T", ValueError),
    ("torch", (2, 8), torch.float64, "stride", ValueError),
    ("torch", (1, 4), torch.float64, "expand", ValueError),
]


def make_x(kind, shape, dtype, transform):
    if transform == "unaligned":
        return unaligned(shape)
    if kind == "torch":
        x = torch.zeros(shape, dtype=torch.float64).to(dtype)
    else:
        x = np.zeros(shape, dtype=dtype)
    if transform == "T":
        x = x.T
    elif transform == "stride":
        x = x[:, ::2]
    elif transform == "expand":
        x = x.expand(3, 4)
    return x


@pytest.mark.parametrize("case", X_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
@pytest.mark.parametrize("theory", THEORIES)
def test_bad_x(theory, case):
    kind, shape, dtype, transform, exc = case
    x = make_x(kind, shape, dtype, transform)
    for method in METHODS:
        with pytest.raises(exc, match=names("x")):
            getattr(THEORIES[theory][0](), method)(x)


@pytest.mark.parametrize("method", METHODS + ["fourier_action", "fourier_grad"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_oscillator_needs_one_lattice_dimension(method, kind):
    c = field((2, 4, 4), kind=kind)
    with pytest.raises(ValueError, match=names("c" if method.startswith("fourier") else "x")):
        getattr(lftaccel.Oscillator(1.0), method)(c)


@pytest.mark.parametrize("obj", [None, [[0.0, 1.0]], "x", 3.0, memoryview(np.zeros((2, 3)))],
                         ids=["None", "list", "str", "float", "memoryview"])
@pytest.mark.parametrize("theory", THEORIES)
def test_x_not_an_array(theory, obj):
    for method in METHODS:
        with pytest.raises(TypeError, match=names("x")):
            getattr(THEORIES[theory][0](), method)(obj)


def test_negative_bit_tensor_is_handled_or_refused():
    # A real view of a conjugated complex tensor carries torch's negative bit.
    x = torch.randn(1, 1, dtype=torch.complex128, generator=torch.Generator().manual_seed(0)).conj().imag
    assert x.is_neg() and x.is_contiguous()
    phi4 = lftaccel.Phi4(0.2, 0.5)
    expect = phi4.action(x.resolve_neg())
    for method in METHODS:
        try:
            out = getattr(phi4, method)(x)
        except BAD as e:
            assert re.search(names("x"), str(e)), str(e)
            # float64 is the right dtype: the message should say what is actually wrong.
            assert "must have dtype" not in str(e), f"{method}: misleading message: {e}"
            continue
        a = out[0] if method == "action_and_grad" else out
        if method != "grad":
            torch.testing.assert_close(a, expect)


# ------------------------------------------- action_out / grad_out of the theories

def _out_case(name):
    x = field((3, 4, 4))
    xt = torch.from_numpy(x.copy())
    buf = np.zeros(3 + x.size)
    return {
        "action-float32": (x, dict(action_out=np.empty(3, np.float32)), TypeError, "action_out"),
        # (_C takes a float64 action for a float32 field, for the CUDA path's own use; the API does not)
        "action-float64-for-float32": (x.astype(np.float32), dict(action_out=np.empty(3)), TypeError,
                                       "action_out"),
        "action-int64": (x, dict(action_out=np.empty(3, np.int64)), TypeError, "action_out"),
        "action-shape": (x, dict(action_out=np.empty(4)), ValueError, "action_out"),
        "action-2d": (x, dict(action_out=np.empty((3, 1))), ValueError, "action_out"),
        "action-readonly": (x, dict(action_out=readonly(np.empty(3))), ValueError, "action_out"),
        "action-strided": (x, dict(action_out=np.empty(6)[::2]), ValueError, "action_out"),
        "action-overlaps-x": (x, dict(action_out=x.reshape(-1)[:3]), ValueError, "action_out"),
        "action-list": (x, dict(action_out=[0.0, 0.0, 0.0]), TypeError, "action_out"),
        "action-torch-for-numpy": (x, dict(action_out=torch.empty(3, dtype=torch.float64)), TypeError,
                                   "action_out"),
        "grad-numpy-for-torch": (xt, dict(grad_out=np.empty((3, 4, 4))), TypeError, "grad_out"),
        "grad-float32": (xt, dict(grad_out=torch.empty(3, 4, 4)), TypeError, "grad_out"),
        "grad-shape": (xt, dict(grad_out=torch.empty(3, 16, dtype=torch.float64)), ValueError, "grad_out"),
        "grad-transposed": (xt, dict(grad_out=torch.empty(3, 4, 4, dtype=torch.float64).transpose(1, 2)),
                            ValueError, "grad_out"),
        "grad-is-x": (xt, dict(grad_out=xt), ValueError, "grad_out"),
        "grad-readonly": (x, dict(grad_out=readonly(np.empty((3, 4, 4)))), ValueError, "grad_out"),
        "action-bfloat16": (xt, dict(action_out=torch.empty(3, dtype=torch.bfloat16)), TypeError, "action_out"),
        # Two outputs sharing memory: one would silently overwrite the other.
        "action-overlaps-grad": (x, dict(action_out=buf[:3], grad_out=buf[:48].reshape(3, 4, 4)),
                                 ValueError, "action_out|grad_out"),
    }[name]


OUT_CASES = ["action-float32", "action-float64-for-float32", "action-int64", "action-shape", "action-2d", "action-readonly",
             "action-strided", "action-overlaps-x", "action-list", "action-torch-for-numpy",
             "grad-numpy-for-torch", "grad-float32", "grad-shape", "grad-transposed", "grad-is-x",
             "grad-readonly", "action-bfloat16", "action-overlaps-grad"]


@pytest.mark.parametrize("name", OUT_CASES)
def test_bad_action_and_grad_outputs(name):
    x, kwargs, exc, arg = _out_case(name)
    phi4 = lftaccel.Phi4(0.2, 0.5)
    with pytest.raises(exc, match="|".join(names(a) for a in arg.split("|"))):
        phi4.action_and_grad(x, **kwargs)


# ------------------------------------------------------------- lftaccel.random

RANDOM_CASES = [
    # (kwargs, exception, argument named)
    (dict(batch=0), ValueError, "batch"),
    (dict(batch=-1), BAD, "batch"),
    (dict(batch=float("inf")), BAD, "batch"),
    (dict(batch=None), TypeError, "batch"),
    (dict(batch="two"), BAD, "batch"),
    (dict(sites=-1), BAD, "sites"),
    (dict(sites=None), TypeError, "sites"),
    (dict(sites=10**30), BAD, "sites"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=2**32), ValueError, "seed"),
    (dict(seed=2**70), BAD, "seed"),
    (dict(seed=None), TypeError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
    (dict(step=-1), ValueError, "step"),
    (dict(step=2**63), ValueError, "step"),
    (dict(step=0.5), TypeError, "step"),
    (dict(purpose=-1), ValueError, "purpose"),
    (dict(purpose=2**32), ValueError, "purpose"),
    # more than 2^32 sites per chain: refused before anything is allocated
    (dict(sites=(2**20, 2**20)), ValueError, "sites"),
    (dict(sites=(2**31, 2**31)), ValueError, "sites"),
    (dict(chain_offset=2**32), ValueError, "chain_offset"),
]


@pytest.mark.parametrize("kw,exc,arg", RANDOM_CASES, ids=[f"{a}-{i}" for i, (_, _, a) in enumerate(RANDOM_CASES)])
@pytest.mark.parametrize("fn", ["uniform", "normal", "bits"])
def test_random_bad_arguments(fn, kw, exc, arg):
    kw = {"batch": 2, "sites": 3, "seed": 0, **kw}
    with pytest.raises(exc, match=names(arg)):
        getattr(lftaccel.random, fn)(kw.pop("batch"), kw.pop("sites"), **kw)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16, torch.complex64, torch.bool])
@pytest.mark.parametrize("fn", ["uniform", "normal"])
def test_random_bad_dtype(fn, dtype):
    with pytest.raises(TypeError, match=names("dtype")):
        getattr(lftaccel.random, fn)(2, 3, seed=0, dtype=dtype)


@pytest.mark.parametrize("fn", ["uniform", "normal", "bits"])
def test_random_zero_sites_is_empty(fn):
    out = getattr(lftaccel.random, fn)(2, 0, seed=0)
    assert out.shape[:2] == (2, 0)


# ------------------------------------------------------------------ lftaccel.ops

OPS_CASES = [
    # (op, args, exception, argument named)
    ("lattice_action", (np.zeros((2, 4)), "phi4", [0.1, 0.1]), TypeError, "x"),
    ("lattice_grad", ([[0.0, 1.0]], "phi4", [0.1, 0.1]), TypeError, "x"),
    ("lattice_action", (None, "phi4", [0.1, 0.1]), TypeError, "x"),
    ("lattice_action", (torch.zeros(2, 4, dtype=torch.int64), "phi4", [0.1, 0.1]), TypeError, "x"),
    ("lattice_action", (torch.zeros(2, 4, dtype=torch.float16), "xy", [0.1]), TypeError, "x"),
    ("lattice_grad", (torch.zeros(4, 2).T, "phi4", [0.1, 0.1]), ValueError, "x"),
    ("lattice_action", (torch.zeros(()), "phi4", [0.1, 0.1]), ValueError, "x"),
    ("lattice_action", (torch.zeros(0, 4), "phi4", [0.1, 0.1]), ValueError, "x"),
    ("lattice_action", (torch.zeros(2, 3, 3), "oscillator", [1.0, 0.5, 0.0, 0.0, 1.0]), ValueError, "x"),
    ("lattice_action", (torch.zeros(2, 4), "foo", [0.1]), ValueError, "kernel"),
    ("lattice_action", (torch.zeros(2, 4), None, [0.1]), TypeError, "kernel"),
    ("lattice_action", (torch.zeros(2, 4), "phi4", [0.1]), ValueError, "params"),
    ("lattice_action", (torch.zeros(2, 4), "phi4", None), TypeError, "params"),
    ("lattice_action", (torch.zeros(2, 4), "phi4", ["a", 0.1]), TypeError, "params"),
    ("lattice_action", (torch.zeros(2, 4), "phi4", [float("nan"), 0.1]), ValueError, "kappa"),
    ("lattice_grad", (torch.zeros(2, 4), "phi4", [0.1, -0.1]), ValueError, "lam"),
    ("lattice_action", (torch.zeros(2, 4), "oscillator", [0.0, 0.5, 0.0, 0.0, 1.0]), ValueError, "beta"),
    ("lattice_action", (torch.zeros(2, 4), "oscillator", [1.0, 0.5, 0.0, -1.0, 0.0]), ValueError, "c2"),
    ("oscillator_fourier_action", (np.zeros((2, 4)), [1.0, 0.5, 0.0, 0.0, 1.0]), TypeError, "c"),
    ("oscillator_fourier_action", (torch.zeros(0, 4), [1.0, 0.5, 0.0, 0.0, 1.0]), ValueError, "c|coeffs"),
    ("oscillator_fourier_grad", (torch.zeros(0, 4), [1.0, 0.5, 0.0, 0.0, 1.0]), ValueError, "c|coeffs"),
    ("oscillator_fourier_grad", (torch.zeros(8, 2).T, [1.0, 0.5, 0.0, 0.0, 1.0]), ValueError, "c|coeffs"),
    ("oscillator_fourier_action", (torch.zeros(2, 4, dtype=torch.int32), [1.0, 0.5, 0.0, 0.0, 1.0]),
     TypeError, "c|coeffs"),
    ("oscillator_fourier_action", (torch.zeros(2, 4), [1.0, 0.5]), ValueError, "params"),
    ("oscillator_fourier_grad", (torch.zeros(2, 4), [1.0, -0.5, 0.0, 0.0, 1.0]), ValueError, "m"),
]


@pytest.mark.parametrize("op,args,exc,arg", OPS_CASES,
                         ids=[f"{o}-{a}-{i}" for i, (o, _, _, a) in enumerate(OPS_CASES)])
def test_ops_bad_input(op, args, exc, arg):
    with pytest.raises(exc, match=rf"\b({arg})\b"):
        getattr(ops, op)(*args)


def test_a_big_endian_field_is_told_how_to_convert():
    x = np.zeros((2, 4, 4), ">f8")
    for call in (lftaccel.Phi4(0.2, 0.1).action, lftaccel.Phi4(0.2, 0.1).action_and_grad):
        with pytest.raises(TypeError, match="x must be in native byte order"):
            call(x)
    with pytest.raises(TypeError, match=r"newbyteorder\('='\)"):
        lftaccel.XY(1.0).grad(x)
    np.testing.assert_array_equal(lftaccel.XY(1.0).grad(x.astype(x.dtype.newbyteorder("="))), np.zeros((2, 4, 4)))


# --------------------------------------------------------------- lftaccel.fourier

FOURIER_CASES = {
    "None": (None, TypeError),
    "list": ([1.0, 2.0], TypeError),
    "str": ("path", TypeError),
    "int64": (np.zeros((2, 4), np.int64), TypeError),
    "float16": (np.zeros((2, 4), np.float16), TypeError),
    "complex": (np.zeros((2, 4), np.complex128), TypeError),
    "bool": (np.zeros((2, 4), np.bool_), TypeError),
    "object": (np.zeros((2, 4), object), TypeError),
    "big-endian": (np.zeros((2, 4), ">f8"), BAD),
    "torch-int": (torch.zeros(2, 4, dtype=torch.int64), TypeError),
    "torch-bfloat16": (torch.zeros(2, 4, dtype=torch.bfloat16), TypeError),
    "zero-time-extent": (np.zeros((2, 0)), ValueError),
    "torch-0d": (torch.tensor(1.0), ValueError),
    "numpy-0d": (np.array(1.0), ValueError),
    "empty-batch": (np.zeros((0, 4)), ValueError),
    "torch-empty-batch": (torch.zeros(0, 3), ValueError),
}


@pytest.mark.parametrize("case", FOURIER_CASES)
@pytest.mark.parametrize("fn,arg", [(to_fourier, "x"), (from_fourier, "c")], ids=["to", "from"])
def test_fourier_bad_input(fn, arg, case):
    obj, exc = FOURIER_CASES[case]
    with pytest.raises(exc, match=names(arg)):
        fn(obj)


# ------------------------------------------------------------- mixed CPU / CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


@pytest.mark.cuda
@cuda
def test_cuda_mixed_devices():
    phi4 = lftaccel.Phi4(0.2, 0.5)
    xc = torch.zeros(2, 4, dtype=torch.float64)
    xg = xc.cuda()
    with pytest.raises(ValueError, match=names("grad_out")):
        phi4.action_and_grad(xc, grad_out=torch.empty_like(xg))
    with pytest.raises(ValueError, match=names("action_out")):
        phi4.action_and_grad(xg, action_out=torch.empty(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=names("action")):
        _C.phi4(xc.numpy(), torch.empty(2, dtype=torch.float64, device="cuda"), kappa=0.1, lam=0.1)
    with pytest.raises(ValueError, match=names("action")):
        _C.phi4(xg, np.empty(2), kappa=0.1, lam=0.1)
    with pytest.raises(ValueError, match=names("path")):
        # (coeffs, path, action): the action on the coefficients' device, so that path is the culprit
        _C.oscillator_fourier(xg, xc.numpy(), torch.empty(2, dtype=torch.float64, device="cuda"), **OSC)
    from lftaccel import _kernels

    with pytest.raises(ValueError, match=names("path")):
        _kernels.oscillator_fourier(xg, xc, OSC)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("fn", ["uniform", "normal", "bits"])
def test_cuda_random_zero_sites_is_empty(fn):
    out = getattr(lftaccel.random, fn)(2, 0, seed=0, device="cuda")
    assert out.shape[:2] == (2, 0)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("method", METHODS)
def test_cuda_bad_x(method):
    phi4 = lftaccel.Phi4(0.2, 0.5)
    for x, exc in [(torch.zeros(2, 4, dtype=torch.int64, device="cuda"), TypeError),
                   (torch.zeros(4, 2, device="cuda").T, ValueError),
                   (torch.zeros(0, 4, device="cuda"), ValueError)]:
        with pytest.raises(exc, match=names("x")):
            getattr(phi4, method)(x)
