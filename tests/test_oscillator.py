"""Oscillator path kernels, the real Fourier basis, and the Matsubara action."""

import math

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import fourier
from lftaccel import reference as R
from conftest import assert_close_scaled

THEORIES = {
    "double-well": lftaccel.Oscillator(10.0, m=0.5, lam=1.0, f=1.4),
    "harmonic": lftaccel.Oscillator.harmonic(3.0, m=1.0, omega=2.0),
    "quartic": lftaccel.Oscillator.quartic(2.5, m=0.7, c0=0.3, c2=-0.4, c4=0.2),
}
N_SLICES = [1, 2, 3, 4, 7, 8, 33, 64, 129]
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def params(theory):
    return tuple(theory._params().values())


def paths(n, dtype=torch.float64, device="cpu", batch=5, seed=0):
    g = torch.Generator().manual_seed(seed + n)
    return (1.5 * torch.randn(batch, n, generator=g, dtype=torch.float64)).to(dtype).to(device)


def test_double_well_coefficients():
    o = lftaccel.Oscillator(10.0, m=0.5, lam=1.0, f=1.4)
    assert (o.c4, o.c2, o.c0) == pytest.approx((1.0, -2 * 1.4**2, 1.4**4))
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    assert torch.allclose(o.potential(x), (x**2 - 1.4**2) ** 2)


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_equals_twin(name, dtype, device):
    theory = THEORIES[name]
    for n in N_SLICES:
        x = paths(n, dtype, device)
        s, g = theory.action_and_grad(x)
        assert_close_scaled(s, R.oscillator_action(x, *params(theory)), TOL[dtype])
        assert_close_scaled(g, R.oscillator_grad(x, *params(theory)), TOL[dtype])
        fused_s, fused_g = R.oscillator_action_and_grad(x, *params(theory))  # the one-pass twin
        assert_close_scaled(fused_s, s, TOL[dtype])
        assert_close_scaled(fused_g, g, TOL[dtype])


@pytest.mark.parametrize("name", THEORIES)
def test_grad_equals_autograd_and_finite_differences(name):
    theory = THEORIES[name]
    for n in [2, 3, 16]:
        x = paths(n).requires_grad_()
        (auto,) = torch.autograd.grad(R.oscillator_action(x, *params(theory)).sum(), x)
        g = theory.grad(x.detach())
        assert_close_scaled(g, auto, 1e-12)
        h = 1e-5
        for i in range(n):
            e = torch.zeros_like(x.detach())
            e[:, i] = h
            fd = (theory.action(x.detach() + e) - theory.action(x.detach() - e)) / (2 * h)
            assert torch.allclose(fd, g[:, i], rtol=1e-7, atol=1e-7)
        assert torch.autograd.gradcheck(theory.action, (x,))


def fourier_matrix(n):
    """Explicit orthonormal real basis: column j is the path of coefficient e_j."""
    t = torch.arange(n, dtype=torch.float64)
    cols = [torch.ones(n, dtype=torch.float64)]
    for k in range(1, (n - 1) // 2 + 1):
        cols.append(math.sqrt(2) * torch.cos(2 * math.pi * k * t / n))
        cols.append(math.sqrt(2) * torch.sin(2 * math.pi * k * t / n))
    if n % 2 == 0 and n > 1:
        cols.append(torch.cos(math.pi * t))
    return torch.stack(cols, dim=1) / math.sqrt(n)


@pytest.mark.parametrize("n", N_SLICES)
def test_fourier_basis_is_the_documented_orthonormal_one(n):
    U = fourier_matrix(n)
    assert torch.allclose(U.T @ U, torch.eye(n, dtype=torch.float64), atol=1e-12)
    c = paths(n)
    assert_close_scaled(fourier.from_fourier(c), c @ U.T, 1e-13)
    assert_close_scaled(fourier.to_fourier(c @ U.T), c, 1e-12)
    x = paths(n, seed=1)
    assert_close_scaled((fourier.to_fourier(x) ** 2).sum(-1), (x**2).sum(-1), 1e-13)  # Parseval
    # The kinetic term is diagonal with the lattice-Laplacian eigenvalues.
    kin = ((torch.roll(x, -1, -1) - x) ** 2).sum(-1)
    lam = fourier.laplacian_eigenvalues(n)
    assert_close_scaled((lam * fourier.to_fourier(x) ** 2).sum(-1), kin, 1e-12)


def test_fourier_transforms_accept_numpy():
    x = paths(8).numpy()
    c = fourier.to_fourier(x)
    assert isinstance(c, np.ndarray)
    np.testing.assert_allclose(fourier.from_fourier(c), x, atol=1e-14)


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fourier_action_equals_real_space_action(name, dtype, device):
    theory = THEORIES[name]
    for n in N_SLICES:
        x = paths(n, dtype, device)
        c = theory.to_fourier(x)
        assert_close_scaled(theory.fourier_action(c), theory.action(x), TOL[dtype])
        assert_close_scaled(theory.fourier_action(c), R.oscillator_fourier_action(c, *params(theory)), TOL[dtype])
        assert_close_scaled(theory.fourier_grad(c), R.oscillator_fourier_grad(c, *params(theory)), TOL[dtype])
        # The gradient transforms like a path.
        assert_close_scaled(theory.fourier_grad(c), theory.to_fourier(theory.grad(x)), TOL[dtype] * 10)
        # The elementwise kernel's three outputs, each against its twin (the benchmark's baseline).
        path = fourier.from_fourier(c).contiguous()
        got = lftaccel._kernels.oscillator_fourier(c, path, theory._params())
        for out, twin in zip(got, R.oscillator_matsubara_terms(c, path, *params(theory))):
            assert_close_scaled(out, twin, TOL[dtype])


@pytest.mark.parametrize("name", THEORIES)
def test_fourier_grad_autograd_gradcheck(name):
    theory = THEORIES[name]
    for n in [2, 5, 8]:
        c = theory.to_fourier(paths(n)).requires_grad_()
        (auto,) = torch.autograd.grad(R.oscillator_fourier_action(c, *params(theory)).sum(), c)
        assert_close_scaled(theory.fourier_grad(c.detach()), auto, 1e-12)
        assert torch.autograd.gradcheck(theory.fourier_action, (c,))
    c = theory.to_fourier(paths(6)).numpy()
    assert isinstance(theory.fourier_action(c), np.ndarray)
    np.testing.assert_allclose(theory.fourier_action(c), theory.action(fourier.from_fourier(c)), rtol=1e-12)


def test_fourier_ops_opcheck_and_compile():
    theory = THEORIES["double-well"]
    c = theory.to_fourier(paths(16)).requires_grad_()
    p = list(params(theory))
    torch.library.opcheck(lftaccel.ops.oscillator_fourier_action_op, (c, p))
    torch.library.opcheck(lftaccel.ops.oscillator_fourier_grad_op, (c.detach(), p))
    compiled = torch.compile(lambda c: theory.fourier_action(c).sum(), fullgraph=True, backend="aot_eager")
    y = compiled(c)
    y.backward()
    assert_close_scaled(y.detach(), theory.action(fourier.from_fourier(c.detach())).sum(), 1e-12)
    assert_close_scaled(c.grad, theory.fourier_grad(c.detach()), 1e-12)


def test_harmonic_action_of_classical_mode():
    """For V = m w^2 x^2 / 2, a single Fourier mode c_j has S = (m / 2a) (l_j + a^2 w^2) c_j^2."""
    beta, m, w, n = 4.0, 1.3, 0.8, 16
    theory = lftaccel.Oscillator.harmonic(beta, m=m, omega=w)
    a = beta / n
    lam = fourier.laplacian_eigenvalues(n)
    c = torch.eye(n, dtype=torch.float64) * 0.7
    expected = m / (2 * a) * (lam + a**2 * w**2) * 0.49
    assert_close_scaled(theory.fourier_action(c), expected, 1e-13)
