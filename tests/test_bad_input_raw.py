"""Bad input to the raw compiled module ``lftaccel._C``: refused with a ValueError/TypeError
naming the argument, never a crash (absurd thread counts run in a subprocess)."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import _C

from bad_input_helpers import (  # noqa: F401
    BAD, METHODS, OSC, THEORIES, FakeCudaArray, field, names, readonly, unaligned,
)


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


@pytest.mark.parametrize("case", ["misaligned", "masked"])
def test_C_cuda_array_interface_misaligned_or_masked(case):
    """A device pointer off its element size (a sticky misaligned-address error would end the
    CUDA context) and a masked array are refused before any device call, naming the argument
    (a build without CUDA refuses every CUDA buffer, naming it too)."""
    fake = FakeCudaArray((2, 3))
    if case == "misaligned":
        ptr, ro = fake.__cuda_array_interface__["data"]
        fake.__cuda_array_interface__["data"] = (ptr + 4, ro)
    else:
        fake.__cuda_array_interface__["mask"] = FakeCudaArray((2, 3))
    with pytest.raises(ValueError, match=names("x")) as err:
        _C.phi4(fake, np.empty(2), kappa=0.1, lam=0.1)
    if lftaccel.build_info()["cuda"]:
        assert ("aligned" if case == "misaligned" else "mask") in str(err.value)


@pytest.mark.parametrize("stream, why", [(0, "disallows"), (-5, "positive"), ("1", "integer"), (True, "integer"),
                                          (1.0, "integer")])
def test_C_cuda_array_interface_bad_stream(stream, why):
    """Version 3's 'stream' key: 0 is disallowed by the interface as ambiguous, and anything but a
    positive integer or None is malformed; refused before any device call, naming the argument."""
    fake = FakeCudaArray((2, 3), stream=stream)
    with pytest.raises(ValueError, match=names("x")) as err:
        _C.phi4(fake, np.empty(2), kappa=0.1, lam=0.1)
    if lftaccel.build_info()["cuda"]:
        assert "'stream'" in str(err.value) and why in str(err.value), str(err.value)


@pytest.mark.parametrize("stream", [None, 1, 2, 0x7F0000001000])
def test_C_cuda_array_interface_valid_stream_still_checks_the_memory(stream):
    """A well-formed 'stream' passes the parse; the host memory behind the fake is then refused
    before the stream is waited on (a made-up handle is never handed to the driver)."""
    fake = FakeCudaArray((2, 3), stream=stream)
    with pytest.raises(ValueError, match=names("x")) as err:
        _C.phi4(fake, np.empty(2), kappa=0.1, lam=0.1)
    assert "'stream'" not in str(err.value)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_C_cuda_array_interface_stream_is_waited_for():
    """The data of a version-3 producer are ready only once its 'stream' has run: here the field
    is written on a side stream behind a spin of ~1e8 GPU cycles (tens of ms), and the kernel,
    launched at once on the default stream, must see the written field, not the old zeros."""
    torch.manual_seed(0)
    src = torch.randn(4, 64, 64, dtype=torch.float64, device="cuda")
    x = torch.zeros_like(src)
    action = torch.empty(4, dtype=torch.float64, device="cuda")
    # The kernel loaded beforehand: CUDA loads a kernel lazily at its first launch, and loading
    # may synchronise the context, which would hide the race this test is about.
    _C.phi4(x, action, kappa=0.2, lam=0.5, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)
        x.copy_(src)

    class CupyLike:  # what CuPy exports for an array last written on `side`
        __cuda_array_interface__ = {**x.__cuda_array_interface__, "version": 3, "stream": side.cuda_stream}

    _C.phi4(CupyLike(), action, kappa=0.2, lam=0.5, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    expect = lftaccel.reference.phi4_action(src, kappa=0.2, lam=0.5)
    torch.testing.assert_close(action, expect, rtol=1e-12, atol=0)


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
