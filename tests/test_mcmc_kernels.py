"""The fused Monte Carlo kernels against their pure-torch twins, fed the same Philox
variates, and the integrator's exact properties (reversibility, dH ~ eps^2)."""

import math

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel import reference as ref
from lftaccel.mcmc import kernels as K
from lftaccel.reference import mcmc as rm

from conftest import DEVICES, placed_like

def twin_fns(theory):
    return rm.theory_twin(theory.kernel, theory._params().values())


CASES = [
    (lftaccel.Phi4(0.21, 0.022), (5, 6, 7)),
    (lftaccel.Phi4(0.12, 1.1), (3, 4, 2, 3, 5)),
    (lftaccel.Phi4(0.3, 0.0), (2, 33)),
    (lftaccel.XY(1.1), (4, 6, 5)),
    (lftaccel.XY(0.7), (2, 3, 4, 3)),
    (lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4), (6, 64)),
    (lftaccel.Oscillator.harmonic(4.0, 1.0, 1.3), (3, 17)),
    # rows of >= 512 bytes: a plane's interior rows run as one loop, their end columns redone
    # (the fused kick restores them first); rows of 256-511 bytes: planes for the fused kick,
    # rows for the plain gradient (Langevin)
    (lftaccel.Phi4(0.21, 0.022), (2, 4, 70)),
    (lftaccel.Phi4(0.12, 0.5), (2, 3, 3, 66)),
    (lftaccel.Phi4(0.21, 0.022), (2, 5, 40)),
    # rows of whole 64-byte vectors (float64: 8 sites) walked a vector at a time: one, two and
    # four vectors, 2D and 4D, and the oscillator's path
    (lftaccel.Phi4(0.21, 0.022), (2, 3, 16)),
    (lftaccel.Phi4(0.15, 0.3), (3, 2, 3, 2, 8)),
    (lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4), (4, 32)),
    (lftaccel.XY(0.9), (2, 3, 64)),  # XY slices of whole vectors
    # XY's other walks, all with the fused kick-drift: rows of >= 512 bytes that are not whole
    # vectors (row by row), and 1D (a slice is one site)
    (lftaccel.XY(0.9), (2, 3, 66)),
    (lftaccel.XY(0.8), (3, 7)),
]


def start(theory, shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if isinstance(theory, lftaccel.XY):
        x = x * 2.0
    return x.to(dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [5, 6])  # the fused leapfrog's drifts alternate buffers: both parities
@pytest.mark.parametrize("theory,shape", CASES, ids=lambda v: repr(v))
def test_hmc_trajectory_matches_twin(theory, shape, n, device):
    x = start(theory, shape, torch.float64, device)
    x0 = x.clone()
    seed, step, eps = 7, 11, 0.05
    energies, accepted = K.hmc_trajectory(theory, x, eps=eps, n_steps=n, seed=seed, step=step, chain_offset=3)
    action, grad, canonical = twin_fns(theory)
    B, V = shape[0], math.prod(shape[1:])
    p = rm.momenta(B, V, seed, step, 3).reshape(shape).to(device)
    u = rm.accept_uniforms(B, seed, step, 3).to(device)
    xt, e, acc = rm.hmc_trajectory(x0, p, u, action, grad, eps, n, canonical)
    assert torch.equal(accepted.to(torch.bool), acc)
    assert acc.any()
    torch.testing.assert_close(energies, e, rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(x, xt, rtol=1e-12, atol=1e-12)
    # the benchmarks' one-pass pure-torch HMC is the same trajectory
    fused = rm.theory_twin_fused(theory.kernel, theory._params().values())
    xf, ef, accf = rm.hmc_trajectory_fused(x0, p, u, fused, eps, n, canonical)
    assert torch.equal(accf, acc)
    torch.testing.assert_close(ef, e, rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(xf, xt, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("width", [66, 64])  # interior rows; vector rows (no wrong term)
@pytest.mark.parametrize("kappa,big", [(1e170, 1e70), (1e100, 1e70)])
def test_hmc_action_survives_a_huge_wrong_neighbour(kappa, big, width):
    """The fused kick's interior rows take the action's end-column terms back out after the
    loop; a wrong term that overflows or dwarfs the action sends the sum row by row (and the
    kick is not applied twice)."""
    theory = lftaccel.Phi4(kappa, 0.0)
    x = start(theory, (1, 12, width), torch.float64, "cpu", seed=4)
    x[0, 4, width - 1] = big
    x[0, 5, 0] = big
    x0 = x.clone()
    work = torch.zeros((3, 1, 12, width), dtype=torch.float64)
    energies, _ = K.hmc_trajectory(theory, x, eps=1e-300, n_steps=1, seed=1, step=0, work=work, refresh=False)
    expect = ref.phi4_action(x0, kappa, 0.0)
    torch.testing.assert_close(energies[0], expect, rtol=1e-12, atol=0)
    # p = 0 - eps/2 (force) twice: the kick applied once per half step, not again by the re-sum
    torch.testing.assert_close(work[0], -1e-300 * ref.phi4_grad(x0, kappa, 0.0), rtol=1e-12, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_hmc_rejects_and_keeps_state(device):
    theory = lftaccel.Phi4(0.21, 0.022)
    x = start(theory, (4, 8, 8), torch.float64, device)
    x0 = x.clone()
    # A huge step: dH is enormous, every chain is rejected and x is untouched.
    _, acc = K.hmc_trajectory(theory, x, eps=3.0, n_steps=5, seed=1, step=0)
    assert not acc.to(torch.bool).any()
    assert torch.equal(x, x0)


@pytest.mark.parametrize("device", DEVICES)
def test_divergent_trajectory_is_rejected(device):
    # lam = 0 with kappa > 1/(2d): the action is unbounded below, leapfrog runs away to inf/nan.
    theory = lftaccel.Phi4(2.0, 0.0)
    x = start(theory, (3, 6, 6), torch.float64, device) * 1e100
    x0 = x.clone()
    e, acc = K.hmc_trajectory(theory, x, eps=1.0, n_steps=200, seed=1, step=0)
    dH = e[2] + e[3] - e[0] - e[1]
    assert not torch.isfinite(dH).all()
    assert not acc.to(torch.bool).any()
    assert torch.equal(x, x0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("theory,shape", CASES, ids=lambda v: repr(v))
def test_leapfrog_is_reversible(theory, shape, device):
    x = start(theory, shape, torch.float64, device)
    work = torch.empty((3, *shape), dtype=torch.float64, device=device)
    work[0] = start(theory, shape, torch.float64, device, seed=5)
    x_start = x.clone()
    K.hmc_trajectory(theory, x, eps=0.03, n_steps=20, seed=0, step=0, work=work, refresh=False,
                     accept_reject=False)
    # Flip the final momenta and integrate from the end point: back to the start.
    y = work[1].clone()
    work[0] = -work[0]
    K.hmc_trajectory(theory, y, eps=0.03, n_steps=20, seed=0, step=0, work=work, refresh=False,
                     accept_reject=False)
    torch.testing.assert_close(work[1], x_start, rtol=0, atol=1e-10)


@pytest.mark.parametrize("theory,shape", CASES[:1] + CASES[3:4] + CASES[5:6], ids=lambda v: repr(v))
def test_energy_violation_scales_as_eps_squared(theory, shape):
    x = start(theory, shape, torch.float64, "cpu") * 0.5
    rms = []
    for eps in (0.04, 0.02, 0.01):
        n = round(0.4 / eps)
        y = x.clone()
        e, _ = K.hmc_trajectory(theory, y, eps=eps, n_steps=n, seed=3, step=0, accept_reject=False)
        rms.append(float(((e[2] + e[3] - e[0] - e[1]) ** 2).mean().sqrt()))
    ratios = [rms[i] / rms[i + 1] for i in range(2)]
    assert all(3.6 < r < 4.4 for r in ratios), (rms, ratios)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hmc_fourier_matches_real_space_integrator(dtype, device):
    """Unit masses: Fourier HMC is real-space HMC in rotated coordinates, so a
    trajectory from rotated momenta ends at the rotated end point."""
    theory = lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4)
    x = start(theory, (4, 32), dtype, device)
    c = lftaccel.fourier.to_fourier(x).contiguous()
    p = start(theory, (4, 32), dtype, device, seed=9)
    w_real = torch.empty((3, 4, 32), dtype=dtype, device=device)
    w_real[0] = p
    w_four = torch.empty((5, 4, 32), dtype=dtype, device=device)
    w_four[0] = lftaccel.fourier.to_fourier(p)
    e1, _ = K.hmc_trajectory(theory, x, eps=0.02, n_steps=10, seed=0, step=0, work=w_real, refresh=False)
    e2, _ = K.hmc_fourier_trajectory(theory, c, eps=0.02, n_steps=10, seed=0, step=0, work=w_four,
                                     refresh=False)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    torch.testing.assert_close(e1, e2, rtol=tol, atol=tol * 10)
    torch.testing.assert_close(lftaccel.fourier.from_fourier(w_four[1]), w_real[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [16, 17])
def test_fourier_inverse_masses_make_modes_equally_stiff(n):
    """For the harmonic oscillator S(c) = sum_j h_j c_j^2 / 2 exactly: its mode stiffnesses
    h_j (the Fourier gradient at the unit vectors) times the inverse masses are all h_0, so
    every mode oscillates at one frequency (the zero, Nyquist and paired modes alike)."""
    theory = lftaccel.Oscillator.harmonic(4.0, 1.0, 1.3)
    im = K.fourier_inverse_masses(theory, n)
    h = torch.diagonal(theory.fourier_grad(torch.eye(n, dtype=torch.float64)))
    assert im[0] == 1.0 and (im > 0).all() and (im <= 1).all()
    torch.testing.assert_close(h * im, h[0].expand(n), rtol=1e-13, atol=0)


@pytest.mark.parametrize("theory,n", [(lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4), 32),
                                      (lftaccel.Oscillator.harmonic(4.0, 1.0, 1.3), 17),
                                      (lftaccel.Oscillator(3.0, 0.5, 1.0, 1.0), 6)], ids=["dw32", "ho17", "dw6"])
def test_hmc_fourier_with_masses_matches_twin(theory, n):
    """Fourier acceleration, momenta refreshed in the kernel: the trajectory equals the
    pure-torch twin (momenta z / sqrt(M^-1) from the same Philox normals, drift eps M^-1 p,
    kinetic energy p M^-1 p / 2), decision by decision. (An audit's mutant that refreshed the
    Nyquist mode's momentum with unit mass broke detailed balance and passed every other test.)"""
    im = K.fourier_inverse_masses(theory, n)
    c0 = lftaccel.fourier.to_fourier(start(theory, (6, n), torch.float64, "cpu")).contiguous()
    S = lambda c: theory.action(lftaccel.fourier.from_fourier(c))  # noqa: E731
    G = lambda c: lftaccel.fourier.to_fourier(theory.grad(lftaccel.fourier.from_fourier(c)))  # noqa: E731
    decisions = []
    for eps, n_steps in ((0.3, 7), (0.9, 4), (3.0, 3)):  # (the last near the leapfrog's stability limit)
        p = rm.momenta(6, n, 5, 11, 2) / im.sqrt()
        u = rm.accept_uniforms(6, 5, 11, 2)
        expect, e_expect, acc_expect = rm.hmc_trajectory(c0, p, u, S, G, eps, n_steps, inv_mass=im)
        c = c0.clone()
        e, acc = K.hmc_fourier_trajectory(theory, c, eps=eps, n_steps=n_steps, seed=5, step=11, chain_offset=2,
                                          inv_mass=im)
        torch.testing.assert_close(e, e_expect, rtol=1e-12, atol=1e-12)
        assert torch.equal(acc.bool(), acc_expect)
        torch.testing.assert_close(c, expect, rtol=1e-12, atol=1e-12)
        decisions += acc_expect.tolist()
    assert any(decisions) and not all(decisions)


def test_hmc_fourier_refuses_another_basis_and_checkpoint_mismatch():
    """The kernel's kinetic term is the Matsubara one: another basis sampled another action
    (found by an audit); a checkpoint's coefficients must fit the sampler and its field."""
    theory = lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4)
    c = lftaccel.fourier.to_fourier(start(theory, (2, 8), torch.float64, "cpu")).contiguous()
    for basis in (torch.eye(8, dtype=torch.float64), torch.zeros(8, 7, dtype=torch.float64)):
        with pytest.raises(ValueError, match="basis must be fourier_basis"):
            K.hmc_fourier_trajectory(theory, c, eps=0.1, n_steps=2, seed=0, step=0, basis=basis)
    K.hmc_fourier_trajectory(theory, c, eps=0.1, n_steps=2, seed=0, step=0, basis=K.fourier_basis(8))
    from lftaccel.mcmc import HMC

    sampler = HMC(theory, shape=(8,), n_chains=2, fourier=True, seed=1)
    state = sampler.state_dict()
    for coeffs, match in ((np.zeros((2, 9)), "coeffs have shape"), (np.asfortranarray(state["coeffs"] + 1.0),
                                                                      "not the Fourier coefficients")):
        with pytest.raises(ValueError, match=match):
            HMC(theory, shape=(8,), n_chains=2, fourier=True, seed=1).load_state_dict({**state, "coeffs": coeffs})
    fortran = HMC(theory, shape=(8,), n_chains=2, fourier=True, seed=1)
    fortran.load_state_dict({**state, "coeffs": np.asfortranarray(state["coeffs"])})
    fortran.update()  # (a Fortran-ordered array was refused at the next update, blaming work)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("theory,shape", CASES[:2] + CASES[3:], ids=lambda v: repr(v))
def test_langevin_matches_twin(theory, shape, device):
    x = start(theory, shape, torch.float64, device)
    x0 = x.clone()
    K.langevin_steps(theory, x, eps=0.01, n_steps=3, seed=4, step=10, chain_offset=1)
    _, grad, canonical = twin_fns(theory)
    B, V = shape[0], math.prod(shape[1:])
    y = x0
    for s in range(3):
        eta = rm.langevin_noise(B, V, 4, 10 + s, 1).reshape(shape).to(device)
        y = rm.langevin_step(y, eta, grad, 0.01)
        if canonical is not None:
            y = canonical(y)
    torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("theory,shape,scale", [(lftaccel.Phi4(0.21, 0.022), (3, 6, 8), 1),
                                                (lftaccel.Phi4(0.1, 0.5), (2, 4, 2, 4, 6), 1),
                                                (lftaccel.XY(1.0), (3, 8, 4), 1),
                                                (lftaccel.Phi4(0.3, 0.1), (2, 10), 1),
                                                (lftaccel.Phi4(0.21, 0.022), (2, 4, 600), 1),
                                                (lftaccel.XY(1.0), (2, 4, 520), 1),
                                                (lftaccel.XY(1.0), (2, 4, 520), 5e3),
                                                (lftaccel.XY(1.0), (2, 4, 520), 3e5)], ids=lambda v: repr(v))
def test_metropolis_matches_twin(theory, shape, scale, dtype, device):
    """On the CPU every site of a parity, the row's ends included, takes the vectorised runs
    (the row copied between its wrap-around neighbours; rows of 600 and 520: more sites of one
    parity than one run of 256 holds; 1D rows of 10: runs shorter than a vector).
    XY angles beyond the vectorised sincos's range keep libm's throughout: scale 5e3 crosses
    float32's bound (8192) and stays inside float64's (2^19), scale 3e5 crosses float64's
    (float32 angles that large are not compared: the float32 twin's own cos is off there)."""
    if scale > 1e5 and dtype == torch.float32:
        pytest.skip("float32 angles of 1e5 and more: the twin's float32 sin/cos are not accurate there")
    x = start(theory, shape, dtype, device) * scale
    x0 = x.clone()
    acc = K.metropolis_sweeps(theory, x, delta=1.2, n_sweeps=2, seed=5, step=3, chain_offset=2)
    params = list(theory._params().values())
    B, V = shape[0], math.prod(shape[1:])
    y, n_acc = x0, 0
    for s in (3, 4):
        u = [tuple(v.reshape(shape).to(device) for v in rm.metropolis_uniforms(B, V, 5, 2 * s + q, 2, dtype))
             for q in (0, 1)]
        y, n = rm.metropolis_sweep(y, u, theory.kernel, params, 1.2)
        n_acc = n_acc + n
    # angles of size ~8 scale carry rounding errors of that scale (the proposal, the wrap)
    tol = (1e-12 if dtype == torch.float64 else 1e-6) * max(1.0, 8 * scale)
    torch.testing.assert_close(x, y, rtol=tol, atol=tol)
    assert torch.equal(acc, n_acc)
    assert 0 < float(acc.sum()) < 2 * B * V


def test_metropolis_xy_huge_step_keeps_libm():
    """Proposals beyond the vectorised sincos's range (delta 1e6 > 2^19) take libm's path on
    the CPU: the sweep still equals the twin."""
    theory, shape, delta = lftaccel.XY(1.0), (2, 4, 64), 1e6
    x = start(theory, shape, torch.float64, "cpu")
    x0 = x.clone()
    acc = K.metropolis_sweeps(theory, x, delta=delta, n_sweeps=1, seed=5, step=3)
    B, V = shape[0], math.prod(shape[1:])
    u = [tuple(v.reshape(shape) for v in rm.metropolis_uniforms(B, V, 5, 6 + q, 0, torch.float64)) for q in (0, 1)]
    y, n = rm.metropolis_sweep(x0, u, "xy", [1.0], delta)
    torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)
    assert torch.equal(acc, n)


def test_metropolis_needs_even_extents():
    with pytest.raises(ValueError, match="even"):
        K.metropolis_sweeps(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 5, 4, dtype=torch.float64), delta=1.0,
                            n_sweeps=1, seed=0, step=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("schedule", ["ve", "vp"])
@pytest.mark.parametrize("noise", [True, False])
def test_sde_step_matches_twin(schedule, noise, device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 6, generator=g, dtype=torch.float64).to(device)
    score = torch.randn(3, 5, 6, generator=g, dtype=torch.float64).to(device)
    x0 = x.clone()
    K.sde_step(x, score, t=0.6, dt=0.01, schedule=schedule, noise=noise, seed=8, step=42, chain_offset=1)
    z = rm.sde_noise(3, 30, 8, 42, 1).reshape(3, 5, 6).to(device)
    y = rm.sde_step(x0, score, z, 0.6, 0.01, schedule, noise=noise)
    torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_sde_ve_drift_is_the_score_times_g_squared():
    """With zero noise, the VE step is exactly x + sigma^(2t) dt score."""
    x = np.zeros((2, 8))
    score = np.ones((2, 8))
    K.sde_step(x, score, t=0.5, dt=0.1, schedule="ve", sigma=25.0, noise=False, seed=0, step=0)
    np.testing.assert_allclose(x, 25.0 * 0.1, rtol=1e-14)


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_chains_bitwise_independent_of_threads(nthreads, monkeypatch):
    """A chain's history is fixed by its seed, whatever the thread count (CPU)."""
    outs = {}
    for nt in (1, nthreads):
        monkeypatch.setattr(K, "_nthreads", lambda nt=nt: nt)
        theory = lftaccel.Phi4(0.21, 0.022)
        # batch >= threads: a chain per thread; batch 1: passes over the chains use all threads;
        # (4, 32, 32): large enough that Metropolis and Langevin go parallel too
        for shape in [(2, 16, 16), (1, 64, 64), (1, 300), (4, 32, 32)]:
            x = torch.zeros(shape, dtype=torch.float64)
            energies = []
            for t in range(5):
                energies.append(K.hmc_trajectory(theory, x, eps=0.1, n_steps=5, seed=1, step=t)[0].clone())
            K.metropolis_sweeps(theory, x, delta=1.0, n_sweeps=2, seed=1, step=0)
            K.langevin_steps(theory, x, eps=0.01, n_steps=2, seed=1, step=0)
            outs[nt, shape] = x, torch.stack(energies)
    for key in outs:
        if key[0] == nthreads:
            assert torch.equal(outs[1, key[1]][0], outs[key][0])
            assert torch.equal(outs[1, key[1]][1], outs[key][1])  # dH decides acceptance


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_trajectory_does_not_depend_on_where_the_field_lies(dtype):
    """The fused kick-drift's first pass reads the chains' field and writes the momenta and the
    trial field into work; where their distance modulo 4096 bytes would make its loads wait on
    its stores, the vector rows hold the stores back (stencil.hpp). Fields placed at every
    64-byte offset from work give the same trajectory, bit for bit."""
    for theory, shape in ((lftaccel.Phi4(0.21, 0.022), (2, 8, 64)),
                          (lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4), (3, 64))):
        x0 = start(theory, shape, dtype, "cpu", seed=2)
        work = torch.empty((3, *shape), dtype=dtype)
        results = []
        for offset in range(0, 4096, 64):
            x = placed_like(work[0], offset).copy_(x0)
            energies, accepted = K.hmc_trajectory(theory, x, eps=0.05, n_steps=3, seed=4, step=1, work=work)
            results.append((x.clone(), energies.clone(), accepted.clone(), work.clone()))
        for r in results[1:]:
            assert all(torch.equal(a, b) for a, b in zip(results[0], r))


def test_hmc_sampler_cpu_path_is_hmc_trajectory(monkeypatch):
    """The HMC sampler calls the compiled trajectory on its own CPU buffers through numpy views
    it keeps (HMC._cpu_buffers); the chains, dH, acceptances and divergent count are those of
    K.hmc_trajectory, bit for bit, also across a state loaded and a deep copy (whose views must
    be of its own tensors), and a field that requires grad still gets hmc_trajectory's error."""
    import copy

    from lftaccel.mcmc import HMC, Metropolis

    def history(direct):
        if not direct:
            monkeypatch.setattr(HMC, "_trajectory_cpu", lambda self, eps, n: K.hmc_trajectory(
                self.theory, self._x, eps=eps, n_steps=n, seed=self.seed, step=self.n_updates,
                chain_offset=self.chain_offset, work=self._work, energies=self._energies, accepted=self._accepted))
        s = HMC(lftaccel.Phi4(0.26, 0.02), (8, 16), n_chains=3, seed=5, eps=0.45)  # eps large: some rejections
        out = []
        for k in range(12):
            if k == 4:
                s.load_state_dict(s.state_dict())  # another field tensor
            if k == 8:
                s = copy.deepcopy(s)
            acc = s.update()
            out += [s.field.clone(), s.last_dH.clone(), acc.clone()]
        monkeypatch.undo()
        return out, s.acceptance, s.divergent

    direct, plain = history(True), history(False)
    assert all(np.array_equal(a.numpy(), b.numpy(), equal_nan=True) for a, b in zip(direct[0], plain[0]))
    assert direct[1:] == plain[1:]
    assert 0 < np.mean(direct[1]) < 1
    s = HMC(lftaccel.Phi4(0.26, 0.02), (8, 16), n_chains=2, seed=5)
    s.update()
    # a copy carries no views: they would be copies of the arrays, not views of its own tensors
    assert "_cpu_views" in vars(s) and "_cpu_views" not in vars(copy.deepcopy(s))
    s.n_leapfrog = 2.5
    with pytest.raises(TypeError, match="n_steps must be an integer"):
        s.update()
    s.n_leapfrog = 10
    s.field.transpose_(1, 2)  # made non-contiguous in place: hmc_trajectory's error
    with pytest.raises(ValueError, match="x must be contiguous"):
        s.update()
    s.field.transpose_(1, 2)
    s._x.requires_grad_()
    with pytest.raises(ValueError, match="x requires grad"):
        s.update()
    # Metropolis's acceptances are fractions, whose numpy and torch means differ in the last bit:
    # its history keeps torch's, as before
    m = Metropolis(lftaccel.Phi4(0.26, 0.02), (6, 6), n_chains=9, seed=5)  # (numpy: 7 of 10 differ)
    means = [float(m.update().mean()) for _ in range(10)]
    assert m.acceptance == means


def test_bad_sampler_kernel_arguments():
    theory = lftaccel.Oscillator(10.0)
    c = torch.zeros(2, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="inv_mass"):
        K.hmc_fourier_trajectory(theory, c, eps=0.1, n_steps=2, seed=0, step=0,
                                 inv_mass=-torch.ones(16, dtype=torch.float64))
    with pytest.raises(ValueError, match="step"):
        K.hmc_trajectory(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 4, 4, dtype=torch.float64), eps=0.1,
                         n_steps=2, seed=0, step=2**63)
    x = torch.zeros(2, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="dt must be <= t"):
        K.sde_step(x, x.clone(), t=0.01, dt=0.02, seed=0, step=0)
    with pytest.raises(TypeError):
        K.sde_step(x, x.clone(), t=0.5, dt=0.01)  # seed and step are required
    with pytest.raises(TypeError, match="uint32"):
        K.hmc_trajectory(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 4, 4, dtype=torch.float64), eps=0.1, n_steps=2,
                         seed=0, step=0, accepted=torch.zeros(2, dtype=torch.int64))


def test_derived_coefficients_and_step_sizes_are_checked():
    """Finite parameters whose derived coefficients overflow (in float64 too), a float32 step
    that rounds to 0, and buffers aliasing the Fourier HMC's read-only inputs are refused."""
    x = torch.zeros(2, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="SDE coefficient"):
        K.sde_step(x, x.clone(), t=1.0, dt=1.0, seed=0, step=0, sigma=1e200)
    with pytest.raises(ValueError, match="eps"):
        K.langevin_steps(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 4, 4, dtype=torch.float64), eps=1e308,
                         n_steps=1, seed=0, step=0)
    with pytest.raises(ValueError, match="eps"):
        K.langevin_steps(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 4, 4, dtype=torch.float32), eps=2e38,
                         n_steps=1, seed=0, step=0)
    with pytest.raises(ValueError, match=r"eps = 1e-50 rounds to 0 in float32"):
        K.hmc_trajectory(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 4, 4, dtype=torch.float32), eps=1e-50,
                         n_steps=2, seed=0, step=0)
    with pytest.raises(ValueError, match="delta"):
        K.metropolis_sweeps(lftaccel.Phi4(0.2, 0.1), torch.zeros(2, 4, 4, dtype=torch.float32), delta=1e-50,
                            n_sweeps=1, seed=0, step=0)
    with pytest.raises(ValueError, match="extent"):
        K.sde_step(torch.zeros(2, 0), torch.zeros(2, 0), t=0.5, dt=0.1, seed=0, step=0)
    # energies (4, 2) sharing memory with inv_mass (4,) or basis (4, 4)
    c = torch.zeros(2, 4, dtype=torch.float64)
    for name in ("inv_mass", "basis"):  # (the basis must be the Fourier basis itself)
        shared = torch.ones(16, dtype=torch.float64) if name == "inv_mass" else K.fourier_basis(4).flatten()
        value = shared[:4] if name == "inv_mass" else shared.view(4, 4)
        with pytest.raises(ValueError, match=f"{name} and energies must not overlap"):
            K.hmc_fourier_trajectory(lftaccel.Oscillator(10.0), c, eps=0.1, n_steps=2, seed=0, step=0,
                                     energies=shared[:8].view(4, 2), **{name: value})


def test_kernels_refuse_to_overwrite_what_autograd_records():
    """The fused kernels write raw memory, which autograd cannot see: a buffer they overwrite
    may not require grad (outside no_grad), and its version counter moves, so a graph that
    saved it refuses to backpropagate through the stale value (as after torch's in-place ops)."""
    theory = lftaccel.Phi4(0.2, 0.1)
    phi = torch.randn(2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    leaf = phi.clone().requires_grad_()
    calls = {
        "hmc": lambda y, **kw: K.hmc_trajectory(theory, y, eps=0.1, n_steps=2, seed=0, step=0, **kw),
        "langevin": lambda y, **kw: K.langevin_steps(theory, y, eps=0.01, n_steps=1, seed=0, step=0, **kw),
        "metropolis": lambda y, **kw: K.metropolis_sweeps(theory, y, delta=0.5, n_sweeps=1, seed=0, step=0, **kw),
        "sde": lambda y, **kw: K.sde_step(y, torch.zeros_like(y), t=0.5, dt=0.1, seed=0, step=0, **kw),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match="x requires grad"):
            call(leaf)
        y, w = phi.clone(), torch.ones_like(phi, requires_grad=True)
        S = (w * y).sum()  # saves y for the gradient in w
        call(y)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            S.backward()
    with pytest.raises(ValueError, match="work requires grad"):
        calls["hmc"](phi.clone(), work=torch.zeros((3, *phi.shape), dtype=torch.float64, requires_grad=True))
    with pytest.raises(ValueError, match="grad_out requires grad"):
        theory.action_and_grad(phi, grad_out=torch.zeros_like(phi).requires_grad_())
    with pytest.raises(ValueError, match="out requires grad"):
        lftaccel._kernels.philox_fill(torch.zeros(2, 4, dtype=torch.float64, requires_grad=True), "normal", seed=0)
    with torch.no_grad():  # as torch's optimisers update leaves: allowed, and the version moves
        version = leaf._version
        calls["hmc"](leaf)
        assert leaf._version > version


@pytest.mark.parametrize("device", DEVICES)
def test_float32_hmc_dH_is_accurate(device):
    """dH is a small difference of large actions: with float32 fields the sums still run in
    double, so dH matches a float64 evaluation of the same float32 fields and momenta."""
    theory = lftaccel.Phi4(0.21, 0.022)
    x = start(theory, (1, 512, 512), torch.float32, device) + 1.0
    work = torch.empty((3, 1, 512, 512), dtype=torch.float32, device=device)
    work[0] = start(theory, (1, 512, 512), torch.float32, device, seed=3)
    p0 = work[0].double().clone()
    e, _ = K.hmc_trajectory(theory, x.clone(), eps=0.01, n_steps=3, seed=0, step=0, work=work, refresh=False,
                            accept_reject=False)

    def H(y, p):
        return ref.phi4_action(y.double(), 0.21, 0.022) + 0.5 * (p.double() ** 2).sum()

    dH64 = H(work[1], work[0]) - H(x, p0)
    dH = e[2] + e[3] - e[0] - e[1]
    assert abs(float(dH[0] - dH64[0])) < 2e-3
