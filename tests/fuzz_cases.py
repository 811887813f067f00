"""The fuzz case families: each draws a malformed call to one entry point and says what a
successful result must satisfy."""

import math

import numpy as np
import torch

import lftaccel
from lftaccel import _C, ops
from lftaccel.fourier import from_fourier, to_fourier

from fuzz_inputs import *  # noqa: F401,F403  (the generators and checks)


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
            check_out(o, x, shape[:1] if k == "action" else shape, k, wide_action=k == "action")
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
