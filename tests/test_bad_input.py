"""Bad input raises a clear ValueError/TypeError that names the offending argument.

Covers every public entry point (theories, their methods, lftaccel.fourier,
lftaccel.random, lftaccel.ops) and the raw compiled module ``lftaccel._C``:
wrong dtype, device, rank, layout, empty shapes, non-finite and out-of-range
parameters, bad output buffers and objects that are not arrays at all.
Inputs that would crash the process are run in a subprocess.
"""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import _C, ops
from lftaccel.fourier import from_fourier, to_fourier

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
    (lftaccel.Oscillator, dict(beta=1.0, lam=-1.0), ValueError, "lam"),
    (lftaccel.Oscillator, dict(beta=1.0, f=float("nan")), ValueError, "f"),
    (lftaccel.Oscillator, dict(beta=None), TypeError, "beta"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0=0.0, c2=0.0, c4=-1.0), ValueError, "c4"),
    (lftaccel.Oscillator.quartic, dict(beta=1.0, m=0.5, c0=0.0, c2=-1.0, c4=0.0), ValueError, "c2"),
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


OUT_CASES = ["action-float32", "action-int64", "action-shape", "action-2d", "action-readonly",
             "action-strided", "action-overlaps-x", "action-list", "action-torch-for-numpy",
             "grad-numpy-for-torch", "grad-float32", "grad-shape", "grad-transposed", "grad-is-x",
             "grad-readonly", "action-bfloat16", "action-overlaps-grad"]


@pytest.mark.parametrize("name", OUT_CASES)
def test_bad_action_and_grad_outputs(name):
    x, kwargs, exc, arg = _out_case(name)
    phi4 = lftaccel.Phi4(0.2, 0.5)
    with pytest.raises(exc, match="|".join(names(a) for a in arg.split("|"))):
        phi4.action_and_grad(x, **kwargs)


# ------------------------------------------------------------ raw _C kernels

def call_C(kernel, x, action=None, grad=None, **kw):
    params = {"phi4": dict(kappa=0.2, lam=0.5), "xy": dict(beta=0.7), "oscillator": dict(OSC)}[kernel]
    params.update(kw)
    return getattr(_C, kernel)(x, action, grad, **params)


C_X_CASES = {
    "int64": (np.zeros((2, 4), np.int64), TypeError),
    "float16": (np.zeros((2, 4), np.float16), TypeError),
    "complex": (np.zeros((2, 4), np.complex128), TypeError),
    "bool": (np.zeros((2, 4), np.bool_), TypeError),
    "uint32": (np.zeros((2, 4), np.uint32), TypeError),
    "object": (np.zeros((2, 4), object), TypeError),
    "big-endian": (np.zeros((2, 4), ">f8"), TypeError),
    "0d": (np.array(1.0), ValueError),
    "1d": (np.zeros(4), ValueError),
    "6d": (np.zeros((1, 2, 1, 2, 1, 2)), ValueError),
    "empty-batch": (np.zeros((0, 4)), ValueError),
    "zero-extent": (np.zeros((2, 0)), ValueError),
    "transposed": (np.zeros((4, 2)).T, ValueError),
    "strided": (np.zeros((2, 8))[:, ::2], ValueError),
    "fortran": (np.asfortranarray(np.zeros((2, 4))), ValueError),
    "unaligned": (unaligned((2, 4)), ValueError),
    "torch-tensor": (torch.zeros(2, 4, dtype=torch.float64), TypeError),
    "list": ([[0.0] * 4] * 2, TypeError),
    "None": (None, TypeError),
    "str": ("x", TypeError),
}


@pytest.mark.parametrize("case", C_X_CASES)
@pytest.mark.parametrize("kernel", ["phi4", "xy", "oscillator"])
def test_C_bad_x(kernel, case):
    x, exc = C_X_CASES[case]
    with pytest.raises(exc, match=names("x")):
        call_C(kernel, x, action=np.empty(max(1, np.shape(x)[0] if np.ndim(x) else 1)))


def test_C_oscillator_needs_one_lattice_dimension():
    with pytest.raises(ValueError, match=names("x")):
        call_C("oscillator", np.zeros((2, 3, 3)), action=np.empty(2))


def _C_out_cases():
    x = np.zeros((2, 4))
    buf = np.zeros(10)
    return {
        "no-output": (dict(), ValueError, "action|grad"),
        "action-float32": (dict(action=np.empty(2, np.float32)), TypeError, "action"),
        "action-uint32": (dict(action=np.empty(2, np.uint32)), TypeError, "action"),
        "action-shape": (dict(action=np.empty(3)), ValueError, "action"),
        "action-readonly": (dict(action=readonly(np.empty(2))), ValueError, "action"),
        "action-strided": (dict(action=np.empty(4)[::2]), ValueError, "action"),
        "action-overlaps-x": (dict(action=x.reshape(-1)[2:4]), ValueError, "action"),
        "action-list": (dict(action=[0.0, 0.0]), TypeError, "action"),
        "action-torch": (dict(action=torch.empty(2, dtype=torch.float64)), TypeError, "action"),
        "action-fake-cuda": (dict(action=FakeCudaArray((2,))), ValueError, "action"),
        "grad-shape": (dict(grad=np.empty((2, 5))), ValueError, "grad"),
        "grad-flat": (dict(grad=np.empty(8)), ValueError, "grad"),
        "grad-float32": (dict(grad=np.empty((2, 4), np.float32)), TypeError, "grad"),
        "grad-transposed": (dict(grad=np.empty((4, 2)).T), ValueError, "grad"),
        "grad-is-x": (dict(grad=x), ValueError, "grad"),
        "grad-readonly": (dict(grad=readonly(np.empty((2, 4)))), ValueError, "grad"),
        "grad-fake-cuda": (dict(grad=FakeCudaArray((2, 4))), ValueError, "grad"),
        "action-overlaps-grad": (dict(action=buf[:2], grad=buf[:8].reshape(2, 4)), ValueError, "action|grad"),
    }, x


@pytest.mark.parametrize("case", list(_C_out_cases()[0]))
@pytest.mark.parametrize("kernel", ["phi4", "xy", "oscillator"])
def test_C_bad_outputs(kernel, case):
    cases, x = _C_out_cases()
    outs, exc, arg = cases[case]
    with pytest.raises(exc, match=rf"\b({arg})\b"):
        call_C(kernel, x, **outs)


C_PARAM_CASES = [
    ("phi4", dict(kappa=float("nan")), ValueError, "kappa"),
    ("phi4", dict(kappa=float("inf")), ValueError, "kappa"),
    ("phi4", dict(lam=float("nan")), ValueError, "lam"),
    ("phi4", dict(lam=-1.0), ValueError, "lam"),
    ("phi4", dict(kappa="a"), TypeError, "kappa"),
    ("phi4", dict(nthreads=-1), ValueError, "nthreads"),
    ("phi4", dict(nthreads=2**40), TypeError, "nthreads"),
    ("phi4", dict(stream=-1), TypeError, "stream"),
    ("xy", dict(beta=float("-inf")), ValueError, "beta"),
    ("xy", dict(nthreads=-5), ValueError, "nthreads"),
    ("oscillator", dict(beta=0.0), ValueError, "beta"),
    ("oscillator", dict(beta=-2.0), ValueError, "beta"),
    ("oscillator", dict(beta=float("nan")), ValueError, "beta"),
    ("oscillator", dict(m=0.0), ValueError, "m"),
    ("oscillator", dict(m=float("inf")), ValueError, "m"),
    ("oscillator", dict(c0=float("nan")), ValueError, "c0"),
    ("oscillator", dict(c2=float("inf")), ValueError, "c2"),
    ("oscillator", dict(c4=-1.0), ValueError, "c4"),
    ("oscillator", dict(nthreads=-1), ValueError, "nthreads"),
    # Unbounded below, refused by Oscillator.quartic but not by the kernel.
    ("oscillator", dict(c2=-1.0, c4=0.0), ValueError, "c2"),
]


@pytest.mark.parametrize("kernel,kw,exc,arg", C_PARAM_CASES)
def test_C_bad_parameters(kernel, kw, exc, arg):
    with pytest.raises(exc, match=names(arg)):
        call_C(kernel, np.zeros((2, 4)), action=np.empty(2), **kw)


@pytest.mark.parametrize("kernel,params", [("phi4", dict(kappa=0.0, lam=1e39)),
                                           ("phi4", dict(kappa=1e39, lam=0.0)),
                                           ("oscillator", dict(OSC, c0=0.0, c2=0.0, c4=1e39))])
def test_float32_kernel_with_parameter_beyond_float32(kernel, params):
    # Finite in float64 but not in float32: the zero field has action 0 and
    # gradient 0; a NaN here is a silently wrong answer. Refusing is fine too.
    x = np.zeros((1, 3), np.float32)
    a, g = np.full(1, 7, np.float32), np.full((1, 3), 7, np.float32)
    try:
        getattr(_C, kernel)(x, a, g, **params)
    except BAD as e:
        assert re.search(r"\b(kappa|lam|c4)\b", str(e)), str(e)
        return
    expect_a = params.get("c0", 0.0) * 3 if kernel == "oscillator" else 0.0
    np.testing.assert_array_equal(a, [expect_a])
    np.testing.assert_array_equal(g, np.zeros((1, 3)))


MALFORMED_CAI = {
    "no-typestr": dict(drop=("typestr",)),
    "no-shape": dict(drop=("shape",)),
    "no-data": dict(drop=("data",)),
    "data-None": dict(data=None),
    "data-empty": dict(data=()),
    "data-str": dict(data=("0x10", False)),
    "shape-None": dict(shape=None),
    "shape-floats": dict(shape=(2.5, 3)),
    "strides-short": dict(strides=(8,)),
    "not-a-dict": dict(),
}


@pytest.mark.parametrize("case", MALFORMED_CAI)
@pytest.mark.parametrize("arg", ["x", "action"])
def test_C_malformed_cuda_array_interface(case, arg):
    fake = FakeCudaArray(**{"shape": (2, 3), **MALFORMED_CAI[case]})
    if case == "not-a-dict":
        fake.__cuda_array_interface__ = "not a dict"
    args = dict(x=np.zeros((2, 3)), action=np.empty(2))
    args[arg] = fake
    with pytest.raises(BAD, match=names(arg)):
        _C.phi4(args["x"], args["action"], kappa=0.1, lam=0.1)


CRASH_SCRIPT = textwrap.dedent("""
    import numpy as np
    from lftaccel import _C
    x = np.zeros((2, 1 << 15)); a = np.empty(2)   # large enough for the parallel path
    try:
        _C.phi4(x, a, kappa=0.1, lam=0.1, nthreads={n})
    except (ValueError, TypeError) as e:
        assert "nthreads" in str(e), e
    print("survived")
""")


@pytest.mark.parametrize("n", [2**31 - 1])
def test_C_absurd_nthreads_does_not_kill_the_process(n):
    # nthreads is only checked for >= 0; OpenMP is then asked for 2^31 - 1 threads.
    r = subprocess.run([sys.executable, "-c", CRASH_SCRIPT.format(n=n)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "survived" in r.stdout, (
        f"process died (returncode {r.returncode}): {r.stderr[-2000:]}")


# -------------------------------------------------------- _C.oscillator_fourier

def _fourier_cases():
    c = np.zeros((2, 4))
    p = np.zeros((2, 4))
    g = np.empty((2, 4))
    return {
        "path-torch": (dict(path=torch.zeros(2, 4, dtype=torch.float64)), TypeError, "path"),
        "path-fake-cuda": (dict(path=FakeCudaArray((2, 4))), ValueError, "path"),
        "coeffs-fake-cuda": (dict(coeffs=FakeCudaArray((2, 4))), ValueError, "coeffs"),
        "path-float32": (dict(path=np.zeros((2, 4), np.float32)), TypeError, "path"),
        "path-shape": (dict(path=np.zeros((2, 5))), ValueError, "path"),
        "path-strided": (dict(path=np.zeros((2, 8))[:, ::2]), ValueError, "path"),
        "path-None": (dict(path=None), TypeError, "path"),
        "coeffs-int": (dict(coeffs=np.zeros((2, 4), np.int64)), TypeError, "coeffs"),
        "coeffs-2d-lattice": (dict(coeffs=np.zeros((2, 2, 2)), path=np.zeros((2, 2, 2))), ValueError, "coeffs"),
        "coeffs-empty": (dict(coeffs=np.zeros((0, 4)), path=np.zeros((0, 4))), ValueError, "coeffs"),
        "grad_path-overlaps-coeffs": (dict(grad_path=c), ValueError, "grad_path"),
        "grad_path-overlaps-path": (dict(grad_path=p), ValueError, "grad_path"),
        "grad_coeffs-overlaps-path": (dict(grad_coeffs=p), ValueError, "grad_coeffs"),
        "grad_coeffs-shape": (dict(grad_coeffs=np.empty((2, 3))), ValueError, "grad_coeffs"),
        "grad_path-readonly": (dict(grad_path=readonly(g)), ValueError, "grad_path"),
        "grad_path-is-grad_coeffs": (dict(grad_coeffs=g, grad_path=g), ValueError, "grad_coeffs|grad_path"),
        "beta-zero": (dict(beta=0.0), ValueError, "beta"),
        "m-nan": (dict(m=float("nan")), ValueError, "m"),
        "c4-negative": (dict(c4=-0.5), ValueError, "c4"),
        "nthreads-negative": (dict(nthreads=-1), ValueError, "nthreads"),
    }, c, p


@pytest.mark.parametrize("case", list(_fourier_cases()[0]))
def test_C_oscillator_fourier_bad_input(case):
    cases, c, p = _fourier_cases()
    kw, exc, arg = cases[case]
    args = dict(coeffs=c, path=p, action=np.empty(2))
    args.update(kw)
    args = {**OSC, **args}
    with pytest.raises(exc, match=rf"\b({arg})\b"):
        _C.oscillator_fourier(**args)


def test_oscillator_fourier_numpy_vs_torch():
    from lftaccel import _kernels

    with pytest.raises(TypeError, match=names("path")):
        _kernels.oscillator_fourier(np.zeros((2, 4)), torch.zeros(2, 4, dtype=torch.float64), OSC)


# ------------------------------------------------------------ _C.philox_fill

PHILOX_CASES = {
    "kind-unknown": (np.empty((2, 3)), dict(kind="gauss"), ValueError, "kind"),
    "kind-None": (np.empty((2, 3)), dict(kind=None), TypeError, "kind"),
    "bits-float64": (np.empty((2, 3, 4)), dict(kind="bits"), TypeError, "out"),
    "bits-last-dim": (np.empty((2, 3), np.uint32), dict(kind="bits"), ValueError, "out"),
    "uniform-uint32": (np.empty((2, 3), np.uint32), dict(), TypeError, "out"),
    "uniform-int64": (np.empty((2, 3), np.int64), dict(), TypeError, "out"),
    "normal-float16": (np.empty((2, 3), np.float16), dict(kind="normal"), TypeError, "out"),
    "normal-complex": (np.empty((2, 3), np.complex64), dict(kind="normal"), TypeError, "out"),
    "1d": (np.empty(3), dict(), ValueError, "out"),
    "0d": (np.array(1.0), dict(), ValueError, "out"),
    "empty-batch": (np.empty((0, 3)), dict(), ValueError, "out"),
    "strided": (np.empty((2, 6))[:, ::2], dict(), ValueError, "out"),
    "readonly": (readonly(np.empty((2, 3))), dict(), ValueError, "out"),
    "list": ([[0.0]], dict(), TypeError, "out"),
    "torch": (torch.empty(2, 3, dtype=torch.float64), dict(), TypeError, "out"),
    "seed-negative": (np.empty((2, 3)), dict(seed=-1), ValueError, "seed"),
    "seed-2^32": (np.empty((2, 3)), dict(seed=2**32), ValueError, "seed"),
    "seed-2^64": (np.empty((2, 3)), dict(seed=2**64), TypeError, "seed"),
    "seed-float": (np.empty((2, 3)), dict(seed=1.5), TypeError, "seed"),
    "step-negative": (np.empty((2, 3)), dict(step=-1), ValueError, "step"),
    "purpose-2^32": (np.empty((2, 3)), dict(purpose=2**32), ValueError, "purpose"),
    "chain_offset-negative": (np.empty((2, 3)), dict(chain_offset=-1), ValueError, "chain_offset"),
    "nthreads-negative": (np.empty((2, 3)), dict(nthreads=-1), ValueError, "nthreads"),
}


@pytest.mark.parametrize("case", PHILOX_CASES)
def test_C_philox_fill_bad_input(case):
    out, kw, exc, arg = PHILOX_CASES[case]
    kw = {"kind": "uniform", "seed": 1, "step": 0, "purpose": 0, **kw}
    with pytest.raises(exc, match=names(arg)):
        _C.philox_fill(out, kw.pop("kind"), **kw)


@pytest.mark.parametrize("shape,typestr,kind", [((1, 0), "<f8", "uniform"), ((1, 0, 4), "<u4", "bits")])
def test_C_philox_fill_empty_cuda_buffer(shape, typestr, kind):
    # Nothing to fill: should be a no-op (or a ValueError), not a CUDA runtime error.
    try:
        _C.philox_fill(FakeCudaArray(shape, typestr=typestr), kind, seed=0, step=0, purpose=0)
    except BAD as e:
        assert re.search(names("out"), str(e)), str(e)


@pytest.mark.parametrize("counter,key,arg", [
    ([0, 0, 0], [0, 0], "counter"), ([0, 0, 0, -1], [0, 0], "counter"),
    ([0, 0, 0, 2**32], [0, 0], "counter"), ([0.5, 0, 0, 0], [0, 0], "counter"),
    ("abcd", [0, 0], "counter"), ([0, 0, 0, 0], [0, 0, 0], "key"), ([0, 0, 0, 0], [-1, 0], "key"),
])
@pytest.mark.parametrize("fn", [_C.philox4x32_10, lftaccel.random.philox4x32_10], ids=["_C", "random"])
def test_philox_block_bad_words(fn, counter, key, arg):
    with pytest.raises((TypeError, ValueError), match=names(arg)):
        fn(counter, key)


@pytest.mark.parametrize("counter,key,arg", [(None, [0, 0], "counter"), (5, [0, 0], "counter"),
                                             ([0, 0, 0, 0], None, "key")])
def test_philox_block_not_a_sequence(counter, key, arg):
    with pytest.raises(TypeError, match=names(arg)):
        lftaccel.random.philox4x32_10(counter, key)


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
    (dict(step=-1), ValueError, "step"),
    (dict(purpose=-1), ValueError, "purpose"),
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
        _C.oscillator_fourier(xg, xc.numpy(), np.empty(2), **OSC)
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
