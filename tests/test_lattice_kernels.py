"""phi^4 and XY kernels against their pure-torch twins, autograd and finite differences."""

import math
import zlib

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import reference as R
from conftest import assert_close_scaled, placed_like


def random_shapes(seed, n=24):
    """Shapes (batch, *lattice) with d = 1..4, odd extents, extent 2 and extent 1. The CPU
    stencils walk rows of a whole number of 64-byte vectors (8 float64, 16 float32) a vector at
    a time; other planes (the last two dimensions) of up to 4096 sites with rows under 256 bytes
    whole, the rest by rows: a plane's first and last row alone, its interior rows as one loop
    with their end columns fixed up (runs cut by work chunks inside a plane, planes of 2 and 3
    rows, outer dimensions): the fixed shapes take each path in both precisions (vector rows of
    one, two, three and many vectors, in d = 1..4; rows of 40 sites are vector rows in float64
    only, and (2, 3, 40), (2, 9, 2, 5), (2, 16, 16, 7, 5) keep float32 on planes). XY walks
    rows of whole vectors a vector at a time, other rows of 512 bytes and more slice by slice,
    other shorter rows flat; (2, 3, 128) and (1, 2, 2, 256) are long vector rows."""
    g = np.random.default_rng(seed)
    extents = [1, 2, 3, 4, 5, 7, 8, 9, 16]
    shapes = [(3, 2, 2), (2, 2, 2, 2, 2), (2, 3, 5, 7, 2), (1, 1, 4), (4, 33), (2, 9, 2, 5),
              (2, 64, 64), (2, 600, 9), (1, 70, 70), (1, 3, 100, 50), (2, 4097, 1), (1, 1, 4097),
              (2, 16, 16, 7, 5), (2, 3, 40), (3, 2, 48), (1, 2, 5, 64), (1, 3, 2, 5, 40),
              (2, 8), (3, 16), (2, 3, 16), (1, 2, 3, 32), (2, 2, 2, 2, 8), (1, 2, 3, 2, 16), (2, 5, 48),
              (1, 1, 4096), (2, 3, 128), (1, 2, 2, 256)]
    for _ in range(n):
        d = int(g.integers(1, 5))
        shapes.append((int(g.integers(1, 5)),) + tuple(int(g.choice(extents)) for _ in range(d)))
    return shapes


THEORIES = {
    "phi4": (lambda: lftaccel.Phi4(0.27, 0.9), R.phi4_action, R.phi4_grad, (0.27, 0.9)),
    "phi4-neg-kappa": (lambda: lftaccel.Phi4(-0.1, 0.0), R.phi4_action, R.phi4_grad, (-0.1, 0.0)),
    "xy": (lambda: lftaccel.XY(1.13), R.xy_action, R.xy_grad, (1.13,)),
}
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def sample_field(shape, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype).to(device)


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_equals_twin(name, dtype, device):
    make, twin_action, twin_grad, params = THEORIES[name]
    theory = make()
    for i, shape in enumerate(random_shapes(seed=zlib.crc32(name.encode()))):
        x = sample_field(shape, dtype, device, seed=i)
        s, g = theory.action_and_grad(x)
        assert s.shape == shape[:1] and g.shape == shape and s.dtype == dtype and g.device == x.device
        assert_close_scaled(s, twin_action(x, *params), TOL[dtype])
        assert_close_scaled(g, twin_grad(x, *params), TOL[dtype])
        # The separate action / grad entry points agree with the fused one.
        assert_close_scaled(theory.action(x), s, TOL[dtype])
        assert_close_scaled(theory.grad(x), g, TOL[dtype])
        # So does the one-pass torch twin, the benchmarks' faster pure-torch baseline.
        fused_s, fused_g = getattr(R, f"{theory.kernel}_action_and_grad")(x, *params)
        assert_close_scaled(fused_s, s, TOL[dtype])
        assert_close_scaled(fused_g, g, TOL[dtype])


@pytest.mark.parametrize("name", THEORIES)
def test_numpy_in_numpy_out(name):
    make, twin_action, twin_grad, params = THEORIES[name]
    x = sample_field((3, 5, 4), torch.float64, "cpu", seed=1).numpy()
    s, g = make().action(x), make().grad(x)
    assert isinstance(s, np.ndarray) and isinstance(g, np.ndarray)
    assert_close_scaled(s, twin_action(torch.from_numpy(x), *params), 1e-12)
    assert_close_scaled(g, twin_grad(torch.from_numpy(x), *params), 1e-12)


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("shape", [(2, 6), (2, 2, 3), (2, 3, 2, 4), (1, 2, 3, 3, 2)])
def test_grad_equals_autograd_of_twin(name, shape):
    make, twin_action, _, params = THEORIES[name]
    x = sample_field(shape, torch.float64, "cpu", seed=7).requires_grad_()
    (expected,) = torch.autograd.grad(twin_action(x, *params).sum(), x)
    assert_close_scaled(make().grad(x.detach()), expected, 1e-12)


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("shape", [(2, 5), (2, 2, 3), (1, 3, 2, 5), (1, 2, 3, 2, 3)])
def test_grad_equals_finite_differences(name, shape):
    make, _, _, _ = THEORIES[name]
    theory = make()
    x = sample_field(shape, torch.float64, "cpu", seed=3)
    g = theory.grad(x)
    h = 1e-5
    gen = np.random.default_rng(0)
    for flat in gen.choice(x.numel(), size=min(8, x.numel()), replace=False):
        e = torch.zeros_like(x).view(-1)
        e[flat] = h
        e = e.view_as(x)
        fd = (theory.action(x + e) - theory.action(x - e)) / (2 * h)
        b = np.unravel_index(flat, x.shape)[0]
        # Central differences are exact to O(h^2 S''') ~ 1e-9 at these field sizes.
        assert abs(fd[b].item() - g.view(-1)[flat].item()) <= 1e-6 * (1 + abs(g.view(-1)[flat].item()))


@pytest.mark.parametrize("name", THEORIES)
def test_autograd_through_custom_op(name, device):
    make, twin_action, _, params = THEORIES[name]
    x = sample_field((3, 4, 5), torch.float64, device, seed=11).requires_grad_()
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, device=device)
    (w * make().action(x)).sum().backward()
    xr = x.detach().clone().requires_grad_()
    (w * twin_action(xr, *params)).sum().backward()
    assert_close_scaled(x.grad, xr.grad, 1e-12)


@pytest.mark.parametrize("name", THEORIES)
def test_gradcheck(name):
    theory = THEORIES[name][0]()
    for shape in [(2, 3), (2, 2, 3), (1, 3, 2, 2)]:
        x = sample_field(shape, torch.float64, "cpu", seed=5).requires_grad_()
        assert torch.autograd.gradcheck(theory.action, (x,))


def test_opcheck_registrations():
    x = sample_field((2, 3, 4), torch.float64, "cpu", seed=2).requires_grad_()
    for kernel, params in [("phi4", [0.2, 0.5]), ("xy", [0.9])]:
        torch.library.opcheck(lftaccel.ops.lattice_action_op, (x, kernel, params))
        torch.library.opcheck(lftaccel.ops.lattice_grad_op, (x.detach(), kernel, params))


def test_torch_compile_traces_through_action():
    theory = lftaccel.Phi4(0.25, 0.5)

    def loss(x):
        return (theory.action(x) ** 2).mean()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    x = sample_field((4, 6, 6), torch.float64, "cpu", seed=4).requires_grad_()
    y = compiled(x)
    y.backward()
    xr = x.detach().clone().requires_grad_()
    loss(xr).backward()
    assert_close_scaled(y.detach(), loss(xr.detach()), 1e-12)
    assert_close_scaled(x.grad, xr.grad, 1e-12)


def test_results_do_not_depend_on_thread_count():
    theory = lftaccel.Phi4(0.2, 0.3)
    xy = lftaccel.XY(0.7)
    # large enough to go parallel: rows (1024-byte rows), then planes / flat slabs (short rows,
    # chunks that start inside the outer dimensions)
    fields = [sample_field(shape, dtype, "cpu", seed=9) for shape in [(4, 96, 128), (4, 16, 16, 7, 5)]
              for dtype in (torch.float64, torch.float32)]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [r for x in fields for r in theory.action_and_grad(x) + xy.action_and_grad(x)]
        torch.set_num_threads(2)
        two = [r for x in fields for r in theory.action_and_grad(x) + xy.action_and_grad(x)]
    finally:
        torch.set_num_threads(old)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_results_do_not_depend_on_where_the_gradient_lies(dtype):
    """The vector rows hold their stores back two vectors where the gradient lies at distances
    from the field, modulo 4096 bytes, at which the loads behind a store would wait on it
    (stencil.hpp, 4K aliasing), which the offsets here take in turns. The outputs are the same
    bit for bit wherever they lie. (tests/cpp/test_cpu_internals.cpp compares the two stores
    directly, over every work item of small lattices.)"""
    # (2, 128, 64): two work items a configuration; (2, 4, 4, 8): float64 rows of one vector
    for theory, shape in ((lftaccel.Phi4(0.27, 0.9), (3, 8, 64)), (lftaccel.Phi4(0.1, 0.2), (2, 4, 4, 4, 32)),
                          (lftaccel.Phi4(0.2, 0.5), (2, 128, 64)), (lftaccel.Phi4(0.2, 0.5), (2, 4, 4, 8)),
                          (lftaccel.Oscillator(4.0, 0.5, 1.0, 1.4), (3, 128))):
        x = sample_field(shape, dtype, "cpu", seed=5)
        want_a, want_g = theory.action_and_grad(x)
        assert_close_scaled(want_g, theory.grad(x), TOL[dtype])
        for offset in range(0, 4096, 64):
            a, g = torch.empty(shape[0], dtype=dtype), placed_like(x, offset)
            theory.action_and_grad(x, action_out=a, grad_out=g)
            assert torch.equal(a, want_a) and torch.equal(g, want_g), (theory, offset)
            g = placed_like(x, offset)  # the gradient alone
            lftaccel._kernels.stencil(theory.kernel, x, theory._params(), action=False, grad_out=g)
            assert torch.equal(g, want_g), (theory, offset)


def test_preallocated_outputs_are_written():
    theory = lftaccel.Phi4(0.2, 0.3)
    x = sample_field((2, 5, 5), torch.float64, "cpu", seed=1)
    a, g = torch.empty(2, dtype=torch.float64), torch.empty_like(x)
    ra, rg = theory.action_and_grad(x, action_out=a, grad_out=g)
    assert ra is a and rg is g
    assert_close_scaled(a, R.phi4_action(x, 0.2, 0.3), 1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_tensor_fast_path_equals_the_full_path(dtype, monkeypatch):
    """CPU tensors take a short path into _C (_stencil_cpu_tensors); it must give the full
    path's outputs bit for bit, move the outputs' version counters as the full path does, and
    hand everything it does not cover to the full path, whose errors name the arguments."""
    from lftaccel import _kernels as K

    if K._BUMP_VERSIONS is None:
        pytest.skip("this torch has no sequence form of _increment_version: the full path serves all")
    taken = []
    fast = K._stencil_cpu_tensors
    monkeypatch.setattr(K, "_stencil_cpu_tensors", lambda *a: taken.append(r := fast(*a)) or r)
    path = sample_field((3, 24), dtype, "cpu", seed=3)
    x = sample_field((3, 6, 8), dtype, "cpu", seed=4)
    for theory, y in ((lftaccel.Phi4(0.27, 0.9), x), (lftaccel.XY(1.13), x),
                      (lftaccel.Oscillator(4.0, 0.5, 1.0, 1.4), path)):
        for action, grad in ((True, True), (True, False), (False, True)):
            taken.clear()
            got = K.stencil(theory.kernel, y, theory._params(), action=action, grad=grad)
            assert taken[-1] is not None
            with monkeypatch.context() as m:
                m.setattr(K, "_BUMP_VERSIONS", None)  # the full path
                want = K.stencil(theory.kernel, y, theory._params(), action=action, grad=grad)
            for g_, w_ in zip(got, want):
                assert (g_ is None) == (w_ is None) and (g_ is None or torch.equal(g_, w_))
    theory = lftaccel.Phi4(0.27, 0.9)
    a, g = torch.empty(3, dtype=dtype), torch.empty_like(x)
    w = torch.ones_like(x, requires_grad=True)
    S = (w * g).sum()  # saves g for the gradient in w
    assert theory.action_and_grad(x, action_out=a, grad_out=g) == (a, g) and taken[-1] is not None
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        S.backward()
    with torch.inference_mode():
        ai, gi = torch.empty(3, dtype=dtype), torch.empty_like(x)
    theory.action_and_grad(x, action_out=ai, grad_out=gi)  # inference tensors have no counter
    assert taken[-1] is not None and torch.equal(ai, a) and torch.equal(gi, g)
    # declined, and refused by the full path with the argument named
    other = torch.float32 if dtype == torch.float64 else torch.float64
    for kwargs, match in (({"grad_out": torch.empty_like(x, dtype=other)}, "grad_out must have the input's dtype"),
                          ({"action_out": torch.empty(4, dtype=dtype)}, "action_out"),
                          ({"grad_out": x}, "grad_out"),
                          ({"grad_out": torch.empty(3, 8, 6, dtype=dtype).transpose(1, 2)}, "grad_out")):
        taken.clear()
        with pytest.raises((ValueError, TypeError), match=match):
            theory.action_and_grad(x, **kwargs)
        assert taken == [None]
    taken.clear()
    leaf = x.clone().requires_grad_()
    assert torch.equal(theory.action_and_grad(leaf)[1], g) and taken == [None]  # x with history: full path


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
@pytest.mark.parametrize("name", THEORIES)
def test_cuda_matches_cpu(name):
    theory = THEORIES[name][0]()
    for shape in [(64, 64, 64), (1, 1024, 1024), (8, 8, 8, 8, 8), (3, 2, 5, 7)]:
        x = sample_field(shape, torch.float64, "cpu", seed=0)
        sc, gc = theory.action_and_grad(x)
        sg, gg = theory.action_and_grad(x.cuda())
        assert_close_scaled(sg, sc, 1e-12)
        assert_close_scaled(gg, gc, 1e-12)


def cancelling_phi4_field(device):
    """phi = 1 on the top half of a 1024^2 lattice, sqrt(1 + sqrt 2) on the bottom half: at
    kappa = 0.25, lambda = 0.5 the halves' actions, -0.5 and +0.5 a site, nearly cancel (S = 157.1
    of 2.6e5 each), so a float sum that rounds at the running total's size shows."""
    x = torch.ones(1, 1024, 1024, dtype=torch.float32)
    x[:, 512:] = math.sqrt(1 + math.sqrt(2))
    return x.to(device)


def test_float32_action_into_a_float64_buffer():
    """The bindings take a float64 action for a float32 field (the Python layer passes one on
    CUDA): on the CPU it is the float32 action widened, bit for bit; a float64 field's action
    stays float64."""
    from lftaccel import _C

    x = cancelling_phi4_field("cpu")
    a32, a64 = np.empty(1, np.float32), np.empty(1, np.float64)
    _C.phi4(x.numpy(), a32, None, 0.25, 0.5)
    _C.phi4(x.numpy(), a64, None, 0.25, 0.5)
    assert a64[0] == np.float64(a32[0])
    p = torch.randn(3, 16, dtype=torch.float32, generator=torch.Generator().manual_seed(4))
    for fn, args in [(_C.xy, (0.7,)), (_C.oscillator, (1.6, 0.5, 1.0, -2.0, 1.0))]:
        a32, a64 = np.empty(3, np.float32), np.empty(3, np.float64)
        fn(p.numpy(), a32, None, *args)
        fn(p.numpy(), a64, None, *args)
        np.testing.assert_array_equal(a64, a32.astype(np.float64))
    a32, a64 = np.empty(3, np.float32), np.empty(3, np.float64)
    osc = dict(beta=1.6, m=0.5, c0=1.0, c2=-2.0, c4=1.0)
    _C.oscillator_fourier(p.numpy(), p.numpy(), a32, **osc)
    _C.oscillator_fourier(p.numpy(), p.numpy(), a64, **osc)
    np.testing.assert_array_equal(a64, a32.astype(np.float64))
    with pytest.raises(TypeError, match=r"\baction\b.*float64"):
        _C.phi4(x.double().numpy(), a32[:1], None, 0.25, 0.5)  # a float64 field's action is float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_cuda_float32_action_sums_its_blocks_in_double():
    """On the GPU the blocks' double partial sums meet in a float64 buffer (the Python layer's)
    and are rounded to float32 once, so a float32 action whose terms nearly cancel is the same
    on every call (float atomics added the blocks in an order that changes between runs, each
    add rounded at the running total's size; double adds in another order could still, rarely,
    straddle a float rounding step, but this field's float densities sum exactly in double in
    any order). What remains is the per-site densities' float
    rounding, the same at every site of each half here (at most ~5e-5 of S against the float64
    twin; the CPU's float32 action, whose blocks of 1024 sites sum in float, is 1.6e-4 off)."""
    theory = lftaccel.Phi4(0.25, 0.5)
    x = cancelling_phi4_field("cuda")
    exact = R.phi4_action(x.double(), 0.25, 0.5).item()
    runs = [theory.action(x).cpu() for _ in range(3)] + [theory.action_and_grad(x)[0].cpu()]
    out = torch.empty(1, dtype=torch.float32, device="cuda")
    runs.append(theory.action_and_grad(x, action_out=out)[0].cpu())
    assert runs[-1].item() == out.item()
    for r in runs:
        assert r.dtype == torch.float32
        assert abs(r.item() - exact) <= 3e-4 * abs(exact)
    assert all(r.item() == runs[0].item() for r in runs)
    osc = lftaccel.Oscillator(1.6)
    c = torch.randn(64, 1 << 16, dtype=torch.float32, generator=torch.Generator().manual_seed(9))
    action_cpu, _, _ = lftaccel._kernels.oscillator_fourier(c, c.clone(), osc._params())
    action_gpu, _, _ = lftaccel._kernels.oscillator_fourier(c.cuda(), c.cuda().clone(), osc._params())
    assert action_gpu.dtype == torch.float32
    assert_close_scaled(action_gpu, action_cpu, 4 * torch.finfo(torch.float32).eps)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_xy_2d_tiles(dtype):
    """2D XY on the GPU runs from shared-memory tiles 8..64 sites wide with a one-site halo:
    rows narrower than, equal to and just wider than each width, extents 1 and 2 (the halo
    wraps onto the tile itself), partial tiles at both ends, several row tiles, more tiles
    than blocks and more configurations than blocks, and each output alone."""
    theory = lftaccel.XY(0.83)
    shapes = [(3, 1, 1), (2, 1, 7), (2, 7, 1), (2, 2, 2), (2, 5, 9), (3, 17, 16), (2, 33, 17), (2, 40, 33),
              (2, 9, 32), (1, 130, 8), (1, 300, 8), (1, 300, 65), (2, 64, 64), (1, 257, 1000), (70_000, 2, 3),
              (1, 16_777_300, 1)]  # the last: more than 65535 tiles, so blocks stride over tiles
    for i, shape in enumerate(shapes):
        x = sample_field(shape, dtype, "cpu", seed=100 + i)
        sg, gg = theory.action_and_grad(x.cuda())
        assert_close_scaled(sg, R.xy_action(x, 0.83), TOL[dtype])
        assert_close_scaled(gg, R.xy_grad(x, 0.83), TOL[dtype])
        assert_close_scaled(theory.action(x.cuda()), sg, TOL[dtype])
        assert_close_scaled(theory.grad(x.cuda()), gg, TOL[dtype])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device visible")])])
@pytest.mark.parametrize("scale", [1e-3, 3.2, 7.9, 50.0, 4000.0, 8191.0, 1e4, 1e7])
def test_xy_float32_any_angle_magnitude(scale, device):
    """float32 angles below 8192 take the float sincos (vecmath.hpp), larger ones the double
    path; against the double twin of the same float angles (whose differences are exact). On
    the GPU, 2D takes each angle's (cos, sin) from a tile; other ranks take cos and sin of each
    link's difference, formed in double for angles beyond 8 (the float difference of angles
    near 1e4 is off by up to 5e-4 rad)."""
    g = torch.Generator().manual_seed(int(scale) + 2)
    theta = (scale * (2 * torch.rand(3, 16, 17, generator=g, dtype=torch.float64) - 1)).float()
    theta[0, 0, :8] = (torch.tensor([0.0, 1, 2, 3, 4, -1, -2, -3], dtype=torch.float64) * (torch.pi / 2)).float()
    # flat (short rows), by rows, 3D (vector-free rows on the CPU, link differences on the GPU)
    for shape in [(3, 16, 17), (1, 3, 272), (3, 4, 4, 17)]:
        x = theta.reshape(shape).to(device)
        s, g_ = lftaccel.XY(0.8).action_and_grad(x)
        assert s.dtype == torch.float32
        assert_close_scaled(s, R.xy_action(x.double(), 0.8), 2e-6)
        assert_close_scaled(g_, R.xy_grad(x.double(), 0.8), 2e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_xy_float32_non_finite_angle_stays_in_its_configuration(bad):
    """A non-finite angle fails the float sincos's range test, so its buffer takes the libm
    path: its configuration's action is NaN, the other configurations are exact."""
    x = sample_field((3, 16, 17), torch.float32, "cpu", seed=21)
    x[1, 4, 5] = bad
    s, _ = lftaccel.XY(0.8).action_and_grad(x)
    assert torch.isnan(s[1])
    keep = torch.tensor([0, 2])
    assert_close_scaled(s[keep], R.xy_action(x[keep].double(), 0.8), 2e-6)


@pytest.mark.parametrize("scale", [1e-3, 3.2, 50.0, 1e4, 1e7])
def test_xy_any_angle_magnitude(scale):
    """The CPU XY stencil uses its own vectorised sin/cos below 2^19 and libm above."""
    g = torch.Generator().manual_seed(int(scale) + 1)
    theta = scale * (2 * torch.rand(3, 16, 17, generator=g, dtype=torch.float64) - 1)
    theta[0, 0, :8] = torch.tensor([0.0, 1, 2, 3, 4, -1, -2, -3], dtype=torch.float64) * (torch.pi / 2)
    s, g_ = lftaccel.XY(0.8).action_and_grad(theta)
    # The twin's theta - theta' carries a rounding error ~ ulp(scale): that, not the
    # kernel, limits agreement for huge angles.
    tol = max(1e-12, 8 * 2.2e-16 * scale)
    assert_close_scaled(s, R.xy_action(theta, 0.8), tol)
    assert_close_scaled(g_, R.xy_grad(theta, 0.8), tol)


def test_xy_huge_slices_take_the_direct_path():
    """A slice (all sites at one outermost coordinate) beyond 2^18 sites is not buffered."""
    x = sample_field((2, 1, 300_001), torch.float64, "cpu", seed=8)
    s, g = lftaccel.XY(0.6).action_and_grad(x)
    assert_close_scaled(s, R.xy_action(x, 0.6), 1e-12)
    assert_close_scaled(g, R.xy_grad(x, 0.6), 1e-12)


def test_torch_compile_inductor_forward_and_backward():
    """The default backend (inductor) compiles around the opaque op, forward and backward."""
    theory = lftaccel.XY(0.9)
    compiled = torch.compile(lambda x: (theory.action(x) ** 2).mean(), fullgraph=True)
    x = sample_field((4, 6, 6), torch.float64, "cpu", seed=6).requires_grad_()
    y = compiled(x)
    y.backward()
    xr = x.detach().clone().requires_grad_()
    yr = (R.xy_action(xr, 0.9) ** 2).mean()
    yr.backward()
    assert_close_scaled(y.detach(), yr.detach(), 1e-12)
    assert_close_scaled(x.grad, xr.grad, 1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("width", [66, 64])  # interior rows; vector rows
def test_phi4_non_finite_site_stays_in_its_configuration(dtype, bad, width):
    x = sample_field((3, 12, width), dtype, "cpu", seed=23)
    x[1, 5, 0] = bad  # an interior row's first site
    x[1, 0, 0] = bad  # the configuration's first and last sites, next to its neighbours' in memory
    x[1, 11, width - 1] = bad
    s, g = lftaccel.Phi4(0.27, 0.9).action_and_grad(x)
    assert not torch.isfinite(s[1])
    keep = torch.tensor([0, 2])
    assert_close_scaled(s[keep], R.phi4_action(x[keep].double(), 0.27, 0.9), TOL[dtype])
    g_expect = R.phi4_grad(x, 0.27, 0.9)
    finite = torch.isfinite(g_expect)
    assert torch.equal(torch.isfinite(g), finite)
    assert_close_scaled(g[finite], g_expect[finite], TOL[dtype])


@pytest.mark.parametrize("dtype,kappa,big", [
    (torch.float64, 1e170, 1e70), (torch.float32, 1e21, 1e9),  # the wrong term overflows
    (torch.float64, 1e100, 1e70), (torch.float32, 1e15, 1e11),  # finite, but it dwarfs the sum
    (torch.float32, 1e4, 1e4),  # 3.7e-5 relative, were it taken back out
])
@pytest.mark.parametrize("width", [66, 64])
def test_phi4_interior_rows_survive_a_huge_wrong_neighbour(dtype, kappa, big, width):
    """Interior rows are summed with i + 1 running into the next row, and their last column's
    term is replaced after the loop. Two large sites, one at the end of a row and one at the
    start of the next, make that wrong term overflow, or dwarf the action, although the action
    is finite: the kernel must then sum the rows one by one rather than return inf - inf or
    the rounding error of the wrong term (these cases are a reviewer's reproducers). Rows of 66
    sites take that path; rows of 64, whole vectors, take the vector rows, which sum no wrong
    term."""
    x = sample_field((1, 12, width), dtype, "cpu", seed=24)
    x[0, 4, width - 1] = big
    x[0, 5, 0] = big
    s, g = lftaccel.Phi4(kappa, 0.0).action_and_grad(x)
    expect = R.phi4_action(x.double(), kappa, 0.0)
    assert torch.isfinite(expect).all()
    assert_close_scaled(s, expect, TOL[dtype])
    assert_close_scaled(g, R.phi4_grad(x.double(), kappa, 0.0), TOL[dtype])


def test_phi4_action_in_parts_falls_back_where_phi4_overflows():
    """Rows of whole vectors sum the fused action as sum(phi g) / 2 - lam sum(phi^4) (phi4.hpp).
    A site whose phi^4 overflows, although lam phi^4 and the action are finite, makes that sum
    inf - inf: the kernel must then sum the density, and keep the gradient it wrote. (float32,
    so that the twin, in float64, does not overflow too.)"""
    dtype, big, lam = torch.float32, 1e11, 1e-30
    x = sample_field((2, 8, 64), dtype, "cpu", seed=25)
    x[1, 3, 17] = big
    s, g = lftaccel.Phi4(0.2, lam).action_and_grad(x)
    expect = R.phi4_action(x.double(), 0.2, lam)
    assert torch.isfinite(expect).all() and torch.isfinite(s).all()
    assert_close_scaled(s, expect, TOL[dtype])
    assert_close_scaled(g, R.phi4_grad(x.double(), 0.2, lam), TOL[dtype])
    assert torch.equal(s[0], lftaccel.Phi4(0.2, lam).action(x[:1])[0])  # the other chain: no fallback


@pytest.mark.parametrize("name,shape", [("phi4", (2, 1 << 20)), ("xy", (2, 1 << 20)), ("phi4", (2, 3, 70_001))])
def test_float32_action_of_long_rows_is_accurate(name, shape):
    """float32 sums run in blocks and then in double: long rows keep float32 accuracy."""
    theory = THEORIES[name][0]()
    x32 = sample_field(shape, torch.float32, "cpu", seed=12) * 0.3 + 1.0  # no cancellation
    s32 = theory.action(x32).double()
    s64 = theory.action(x32.double())
    assert_close_scaled(s32, s64, 1e-6)
