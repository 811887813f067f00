"""Diffusion SDEs: the closed-form perturbation kernels against direct integration of the SDE's
moments, and reverse-time sampling through the fused kernel with the exact score of Gaussian
data, which must return the data distribution."""

import json
import math
import shutil
import sys

import numpy as np
import pytest
import torch
from scipy import integrate

from lftaccel.models import diffusion


@pytest.mark.parametrize("sde", [diffusion.VESDE(25.0), diffusion.VPSDE(0.1, 20.0)], ids=["ve", "vp"])
def test_kernel_matches_moment_equations(sde):
    """For dx = f dt + g dW with f = -b(t) x / 2 (VP) or 0 (VE), the mean scale m and the
    variance v of x_t given x_0 obey m' = -b m / 2, v' = -b v + g^2 (b = 0 for VE)."""
    b = (lambda t: 0.0) if sde.schedule == "ve" else sde.g2

    def rhs(t, y):
        m, v = y
        return [-0.5 * b(t) * m, -b(t) * v + sde.g2(t)]

    ts = np.array([1e-3, 0.1, 0.5, 0.9, 1.0])
    sol = integrate.solve_ivp(rhs, (0.0, 1.0), [1.0, 0.0], t_eval=ts, rtol=1e-11, atol=1e-13)
    m, s = sde.kernel(torch.as_tensor(ts))
    np.testing.assert_allclose(m.numpy(), sol.y[0], rtol=1e-8)
    np.testing.assert_allclose(s.numpy() ** 2, sol.y[1], rtol=1e-7, atol=1e-12)
    assert abs(sde.prior_std() - float(sde.kernel(1.0)[1])) < (1e-12 if sde.schedule == "ve" else 1e-3)


@pytest.mark.parametrize("sde", [diffusion.VESDE(25.0), diffusion.VPSDE(0.1, 20.0)], ids=["ve", "vp"])
def test_kernel_matches_a_simulation_of_the_forward_sde(sde):
    """Euler-Maruyama paths of dx = f dt + g dW from x_0 = 1.5 (1000 steps, f and g at each
    step's midpoint): the mean and variance of x_t agree with m(t) x_0 and s(t)^2 within
    5 standard errors (the scheme's bias, ~beta dt / 4 = 0.5% relative, is below them)."""
    n, n_steps, x0 = 40_000, 1000, 1.5
    gen = torch.Generator().manual_seed(11)
    x = torch.full((n,), x0, dtype=torch.float64)
    dt = 1.0 / n_steps
    checks = {200, 500, 1000}  # the steps at which t = 0.2, 0.5, 1
    for k in range(n_steps):
        t = (k + 0.5) * dt
        g2 = sde.g2(t)
        drift = 0.0 if sde.schedule == "ve" else -0.5 * g2 * x
        x = x + drift * dt + math.sqrt(g2 * dt) * torch.randn(n, generator=gen, dtype=torch.float64)
        if k + 1 in checks:
            m, s = (float(v) for v in sde.kernel((k + 1) * dt))
            mean, var = float(x.mean()), float(x.var())
            assert abs(mean - m * x0) < 5 * s / math.sqrt(n), (k, mean, m * x0)
            assert abs(var / s**2 - 1) < 5 * math.sqrt(2 / n), (k, var, s**2)


@pytest.mark.parametrize("schedule,corrector", [("ve", 0), ("vp", 0), ("ve", 1)])
def test_reverse_sampling_with_the_exact_score_returns_the_data(schedule, corrector):
    """Data x_0 ~ N(mu, s0^2) per site: p_t = N(m mu, m^2 s0^2 + s^2) and its score is exact, so
    the reverse SDE must end at N(mu, s0^2 + s(eps)^2) up to the Euler-Maruyama error."""
    sde = diffusion.make_sde(schedule)
    mu, s0 = 0.7, 0.5

    def score(x, t):
        m, s = (float(v) for v in sde.kernel(t))
        return -(x - m * mu) / (m * m * s0 * s0 + s * s)

    shape = (4000, 4, 4) if not corrector else (250, 16, 16)  # the corrector's step needs many sites
    snr = 0.3  # the corrector's variance bias 1 / (1 - snr^2) = 1.099 is well outside the tolerance
    x = diffusion.reverse_sample(score, sde, shape, n_steps=1000 if not corrector else 300, eps=1e-3,
                                 seed=3, corrector_steps=corrector, snr=snr)
    eps_m, eps_s = (float(v) for v in sde.kernel(1e-3))
    n = x.numel()
    # the corrector is unadjusted Langevin: its stationary variance is v / (1 - snr^2)
    var_true = (s0 * s0 + eps_s ** 2) / (1 - snr ** 2 if corrector else 1.0)
    assert abs(x.mean().item() - eps_m * mu) < 4 * math.sqrt(var_true / n) + 0.005
    assert abs(x.var().item() / var_true - 1) < 4 * math.sqrt(2 / n) + 0.005  # a score 10 % off: 25 %


def test_reverse_sampling_does_not_depend_on_the_batch():
    sde = diffusion.VESDE()
    score = lambda x, t: -x / (0.25 + float(sde.kernel(t)[1]) ** 2)  # noqa: E731
    whole = diffusion.reverse_sample(score, sde, (6, 3, 3), n_steps=20, seed=1)
    part = diffusion.reverse_sample(score, sde, (2, 3, 3), n_steps=20, seed=1, chain_offset=4)
    torch.testing.assert_close(whole[4:], part, rtol=0, atol=0)


def test_unet_commutes_with_lattice_translations():
    """Circular padding throughout: shifting the input by a multiple of 2^(levels - 1) shifts
    the score the same way, exactly (float64)."""
    torch.manual_seed(0)
    net = diffusion.ScoreUNet((8, 8), diffusion.VESDE(), channels=(8, 16, 16), emb_dim=16, dtype=torch.float64)
    torch.nn.init.normal_(net.out.weight, std=0.1)  # the head starts at zero
    x = torch.randn(3, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    out = net(x, t)
    assert out.shape == x.shape and out.abs().max() > 0
    shifted = net(torch.roll(x, (4, -4), (1, 2)), t)
    torch.testing.assert_close(shifted, torch.roll(out, (4, -4), (1, 2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", ["ve", "vp"])
def test_dsm_loss_of_the_exact_score(schedule):
    """With the exact score of Gaussian data the loss at time t is m^2 s0^2 / (m^2 s0^2 + s^2)
    per site (the irreducible Var(z | x_t)); a score 20 % off gives more."""
    torch.manual_seed(1)
    sde = diffusion.make_sde(schedule)
    mu, s0, t = 0.3, 0.8, 0.5  # s(t) comparable to s0, so a wrong score shows
    m, s = (float(v) for v in sde.kernel(t))

    def exact(factor):
        return lambda x, tt: -factor * (x - m * mu) / (m * m * s0 * s0 + s * s)

    x0 = mu + s0 * torch.randn(20000, 4, 4, dtype=torch.float64)
    floor = m * m * s0 * s0 / (m * m * s0 * s0 + s * s)
    loss = diffusion.dsm_loss(exact(1.0), sde, x0, t=t).item()
    assert abs(loss - floor) < 0.02 * floor
    assert diffusion.dsm_loss(exact(0.8), sde, x0, t=t).item() > loss + 0.02


def _gaussian_data_score(sde, mu, s0):
    """The exact score of p_t for data N(mu, s0^2) per site: x_t ~ N(m mu, v), v = m^2 s0^2 + s^2."""
    def score(x, t):
        m, s = (float(a) for a in sde.kernel(t))
        return -(x - m * mu) / (m * m * s0 * s0 + s * s)
    return score


@pytest.mark.parametrize("schedule", ["ve", "vp"])
@pytest.mark.parametrize("divergence", ["hutchinson", "exact", "map"])
def test_probability_flow_log_q_against_the_linear_pushforward(divergence, schedule):
    """The exact score of N(mu, s0^2) data: the ODE is linear, x - m(t) mu scales by sqrt(v(t)),
    v = m^2 s0^2 + s^2 (VE: m = 1; VP: both the drift -beta x / 2 and the score move x), so
    the prior N(0, s1^2) is pushed to N(mu (m(eps) - m(1) r), (s1 r)^2) with
    r = sqrt(v(eps) / v(1)); x and log q must follow (Hutchinson is exact for this diagonal
    Jacobian)."""
    sde = diffusion.make_sde(schedule)
    mu, s0, eps = 0.4, 0.6, 1e-3
    score = _gaussian_data_score(sde, mu, s0)
    g = torch.Generator().manual_seed(0)
    x1 = sde.prior_std() * torch.randn(5, 3, 3, generator=g, dtype=torch.float64)
    x, log_q = diffusion.probability_flow(score, sde, x1, n_steps=200, eps=eps, divergence=divergence)
    m = lambda t: float(sde.kernel(t)[0])  # noqa: E731
    v = lambda t: m(t) ** 2 * s0 * s0 + float(sde.kernel(t)[1]) ** 2  # noqa: E731
    r = math.sqrt(v(eps) / v(1.0))
    torch.testing.assert_close(x, m(eps) * mu + (x1 - m(1.0) * mu) * r, rtol=1e-7, atol=1e-7)
    sd = sde.prior_std() * r
    mean = mu * (m(eps) - m(1.0) * r)
    exact = (-0.5 * ((x - mean) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    torch.testing.assert_close(log_q, exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("schedule", ["ve", "vp"])
def test_ode_sampler_made_exact_by_neural_mcmc(schedule):
    """Data N(mu, s0^2) per site in physical units, a model trained on y = phi / c (here the
    exact score of the scaled data): the sampler's log q includes the Jacobian of phi = c y,
    so its weights against the true density are nearly flat (the prior differs slightly from
    p_1) and reweighting recovers <phi> = mu."""
    from lftaccel.mcmc import nmcmc

    sde = diffusion.make_sde(schedule)
    mu, s0, c = 0.4, 0.6, 2.0  # physical units; the network sees y = phi / c
    score_y = _gaussian_data_score(sde, mu / c, s0 / c)
    sampler = diffusion.ODESampler(score_y, sde, (3, 3), scale=c, n_steps=100)  # log q of the discrete map
    phi, log_q, S = nmcmc.draw(sampler, lambda x: (0.5 * ((x - mu) / s0) ** 2).flatten(1).sum(1), 2000,
                               batch_size=500)
    log_z = 9 * math.log(math.sqrt(2 * math.pi) * s0)  # p = exp(-S) / Z
    log_w = nmcmc.log_weights(S, log_q)
    assert nmcmc.ess(log_w) > 0.9
    assert abs(np.mean(log_w) - log_z) < 0.05  # log w = -S - log q = log Z + log p - log q: q close to p
    est = nmcmc.reweight(phi.flatten(1).mean(1).numpy(), log_w)
    est.gamma_method()
    assert abs(est.value - mu) < 4 * est.dvalue


def _double_well_score(sde, a=1.0, s0=0.2, coupling=0.3):
    """The exact score of p_t for per-site data 1/2 N(a, s0^2) + 1/2 N(-a, s0^2), plus a
    nearest-neighbour term, scaled like a score by 1 / v (a nonlinear score with an
    off-diagonal Jacobian)."""
    def score(x, t):
        v = s0 * s0 + float(sde.kernel(t)[1]) ** 2
        w = torch.sigmoid(2 * a * x / v)  # weight of the +a mode
        return ((2 * w - 1) * a - x + coupling * torch.tanh(torch.roll(x, 1, -1) - x)) / v
    return score


def test_map_log_q_is_the_density_of_the_discretised_flow():
    """A nonlinear score and coarse steps (8 uniform RK4 steps): 'map' equals log p_1(x_1) minus the
    log-determinant of the whole integrator's Jacobian (autograd through all steps) to
    rounding, while the continuous-time 'exact' trace misses it by RK4's error, which
    varies with the configuration (so it would bias a Metropolis correction)."""
    sde = diffusion.VESDE()
    score = _double_well_score(sde)
    g = torch.Generator().manual_seed(3)
    x1 = sde.prior_std() * torch.randn(6, 2, 2, generator=g, dtype=torch.float64)
    x, log_q = diffusion.probability_flow(score, sde, x1, n_steps=8, divergence="map", rho=1.0)
    s1 = sde.prior_std()
    log_p1 = (-0.5 * (x1 / s1) ** 2 - math.log(s1) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    def integrator(z, n_steps=8, eps=1e-3):  # plain RK4 on v = -g^2 score / 2 from t = 1 to eps
        v = lambda y, t: -0.5 * sde.g2(t) * score(y, t)  # noqa: E731
        dt = (1.0 - eps) / n_steps
        for k in range(n_steps):
            t = 1.0 - k * dt
            k1 = v(z, t)
            k2 = v(z - 0.5 * dt * k1, t - 0.5 * dt)
            k3 = v(z - 0.5 * dt * k2, t - 0.5 * dt)
            k4 = v(z - dt * k3, t - dt)
            z = z - dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return z

    torch.testing.assert_close(x, integrator(x1), rtol=0, atol=1e-12)
    for b in range(6):
        jac = torch.autograd.functional.jacobian(lambda z: integrator(z[None])[0], x1[b]).reshape(4, 4)
        assert abs(log_q[b].item() - (log_p1[b] - torch.linalg.slogdet(jac).logabsdet).item()) < 1e-9
    _, log_q_trace = diffusion.probability_flow(score, sde, x1, n_steps=8, divergence="exact", rho=1.0)
    assert (log_q_trace - log_q).std() > 0.05  # the trace integral is not the discrete map's density


def test_correction_recovers_a_target_the_flow_misses():
    """The flow of a score that is not the target's (the double well plus a coupling) proposes a
    distribution far from the target p (per-site mixture 1/2 N(+-a, s0^2)): its raw <x^2> and
    <x^4> miss the exact a^2 + s0^2 and a^4 + 6 a^2 s0^2 + 3 s0^4 by many sigma. With the map's
    log q, reweighting and the independence-Metropolis chain both recover them, and the check
    is sharp: log q off by 0.6 sum(x^2 - 1) moves the reweighted <x^2> by many sigma."""
    from lftaccel import analysis
    from lftaccel.mcmc import nmcmc

    a, s0 = 1.0, 0.2
    exact = {"x2": a * a + s0 * s0, "x4": a ** 4 + 6 * a * a * s0 * s0 + 3 * s0 ** 4}

    def action(x):  # -log p up to a constant
        x = x.flatten(1)
        return -torch.logaddexp(-0.5 * ((x - a) / s0) ** 2, -0.5 * ((x + a) / s0) ** 2).sum(1)

    sde = diffusion.VESDE()
    score = _double_well_score(sde, a=a, s0=s0, coupling=0.1)

    torch.manual_seed(1)
    sampler = diffusion.ODESampler(score, sde, (2, 2), n_steps=6)  # the map's log q
    x, log_q, S = nmcmc.draw(sampler, action, 4000, batch_size=1000)

    def pulls(log_q):
        lw = nmcmc.log_weights(S, log_q)
        chain = nmcmc.independence_metropolis(S, log_q, seed=0, n_chains=4)
        out = {}
        for name, power in (("x2", 2), ("x4", 4)):
            v = (x.flatten(1) ** power).mean(1).numpy()
            raw = analysis.estimate(analysis.primary(v, name), name)
            rew = analysis.estimate(nmcmc.reweight(v, lw, name), name)
            imh = analysis.estimate(analysis.primary(chain.take(v), name), name)
            out[name] = {k: (e.value - exact[name]) / e.error for k, e in (("raw", raw), ("rew", rew), ("imh", imh))}
        return out, nmcmc.ess(lw)

    mapped, ess = pulls(log_q)
    assert 0.2 < ess < 0.7  # a real correction, not a near-perfect proposal
    for name in exact:
        assert mapped[name]["raw"] < -8  # the proposal alone is far off
        assert abs(mapped[name]["rew"]) < 3 and abs(mapped[name]["imh"]) < 3
    wrong, _ = pulls(log_q - 0.6 * (x.flatten(1) ** 2 - 1).sum(1))
    assert abs(wrong["x2"]["rew"]) > 5  # measured 7.6 here, 11.4 to 11.7 at seeds 2 to 4


def test_map_log_q_through_the_unet_against_finite_differences():
    """The network the reproductions use (group norm, circular padding, time embedding): log q of
    'map' equals log p_1(x_1) - log|det| of the whole integrator's Jacobian taken by central
    differences of the sample x(x_1), in float64."""
    torch.manual_seed(0)
    sde = diffusion.VESDE()
    net = diffusion.ScoreUNet((4, 4), sde, channels=(8, 8), emb_dim=16).double().eval()
    with torch.no_grad():  # the output layer starts at zero (score 0, the identity map): make it act
        torch.nn.init.normal_(net.out.weight, std=0.5)
        torch.nn.init.normal_(net.out.bias, std=0.5)
    score = lambda y, t: net(y, t)  # noqa: E731
    x1 = sde.prior_std() * torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, log_q = diffusion.probability_flow(score, sde, x1, n_steps=4, divergence="map")
    _, log_q_trace = diffusion.probability_flow(score, sde, x1, n_steps=4, divergence="exact")
    assert (log_q_trace - log_q).abs().max() > 0.1  # the flow acts: a wrong log q would show
    s1 = sde.prior_std()
    log_p1 = (-0.5 * (x1 / s1) ** 2 - math.log(s1) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def sample(z):  # the map alone (the divergence mode does not change x)
        return diffusion.probability_flow(score, sde, z, n_steps=4, divergence="hutchinson")[0]

    h = 1e-4
    shifts = h * torch.eye(16, dtype=torch.float64).view(16, 4, 4)
    for b in range(2):  # one batch of the 32 shifted starts (the network treats configurations separately)
        out = sample(torch.cat([x1[b] + shifts, x1[b] - shifts])).flatten(1)
        jac = ((out[:16] - out[16:]) / (2 * h)).T  # column i: d x / d x1_i
        diff = log_q[b].item() - (log_p1[b] - torch.linalg.slogdet(jac).logabsdet).item()
        assert abs(diff) < 1e-7  # measured ~1e-9


def test_time_grid_refined_toward_the_data_avoids_folding():
    """The double well's flow is stiffest near t = eps: 4 uniform RK4 steps fold the space for
    some of 200 configurations, 4 steps on the rho = 2 grid (the default) do not."""
    from lftaccel.models.diffusion.flow_ode import time_grid

    ts = time_grid(4, 1e-3, 2.0)
    assert ts[0] == 1.0 and abs(ts[-1] - 1e-3) < 1e-15 and all(np.diff(ts) < 0)
    assert ts[-2] - ts[-1] < (1 - 1e-3) / 4 < ts[0] - ts[1]  # finer at the data end
    sde = diffusion.VESDE()
    score = _double_well_score(sde)
    x1 = sde.prior_std() * torch.randn(200, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="folds"):
        diffusion.probability_flow(score, sde, x1, n_steps=4, divergence="map", rho=1.0)
    x, log_q = diffusion.probability_flow(score, sde, x1, n_steps=4, divergence="map")
    assert torch.isfinite(log_q).all()


def test_map_log_q_refuses_a_folding_step():
    sde = diffusion.VESDE()
    x1 = sde.prior_std() * torch.randn(4, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="folds the space"):
        diffusion.probability_flow(lambda x, t: 1e6 * torch.sin(x), sde, x1, n_steps=1, divergence="map")


def test_score_of_a_gaussian_field_is_learnt():
    """A free field (C = (-Laplacian + 0.5)^-1 on 4x4, 4096 exact draws): after 600 training
    steps the EMA network's score is within 10% (relative mean-square error over x ~ p_t) of
    the exact score -(C + s_t^2)^-1 x at t = 0.05 .. 0.9 (measured 0.054, 0.024, 0.033, 0.029).
    Below that it degrades (0.43 at t = 0.02): the sigma_t^2-weighted loss spends little on
    the smallest noise levels, which is why the learnt drift at small t is only approximate."""
    L, n, m2 = 4, 16, 0.5
    lap = np.zeros((n, n))
    for x in range(L):
        for y in range(L):
            lap[x * L + y, x * L + y] = 4 + m2
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                lap[x * L + y, ((x + dx) % L) * L + (y + dy) % L] -= 1
    C = torch.as_tensor(np.linalg.inv(lap))
    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.standard_normal((4096, n)) @ np.linalg.cholesky(C.numpy()).T,
                           dtype=torch.float32).view(-1, L, L)
    sde = diffusion.VESDE(25.0)
    torch.manual_seed(0)
    model = diffusion.ScoreUNet((L, L), sde, channels=(8, 16), emb_dim=16)
    _, ema = diffusion.train(model, data, steps=600, batch_size=128, lr=2e-3, seed=0, progress=False)
    g = torch.Generator().manual_seed(1)
    for t in (0.05, 0.2, 0.5, 0.9):
        cov = C + float(sde.kernel(t)[1]) ** 2 * torch.eye(n, dtype=torch.float64)
        x = torch.randn(2000, n, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
        exact = -torch.linalg.solve(cov, x.T).T
        with torch.no_grad():
            got = ema.module(x.view(-1, L, L).float(), t).double().view(-1, n)
        rel = float(((got - exact) ** 2).sum(1).mean() / (exact**2).sum(1).mean())
        assert rel < 0.1, (t, rel)


def test_exact_divergence_is_the_jacobian_trace():
    from lftaccel.models.diffusion.flow_ode import _divergence

    torch.manual_seed(0)
    net = diffusion.ScoreUNet((4, 4), diffusion.VESDE(), channels=(4, 4), emb_dim=8, dtype=torch.float64)
    torch.nn.init.normal_(net.out.weight, std=0.3)
    x = torch.randn(2, 4, 4, dtype=torch.float64)
    _, div = _divergence(lambda z: net(z, 0.4), x, "exact", None)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda z: net(z[None], 0.4)[0], x[b])
        assert abs(div[b].item() - jac.reshape(16, 16).trace().item()) < 1e-10


def test_learnt_langevin_equilibrium_of_a_gaussian_score():
    """With the score of N(mu, v) as drift, the unadjusted Langevin chain equilibrates at mean mu
    and variance v / (1 - eps / (2 v)); and a chain does not depend on its batch."""
    mu, v, eps = 0.5, 0.25, 0.01
    score = lambda x, t: -(x - mu) / v  # noqa: E731
    x0 = torch.zeros(400, 4, 4, dtype=torch.float64)
    x, rec = diffusion.learnt_langevin(score, x0, t=1e-3, eps=eps, n_steps=600, seed=2, record_every=100)
    late = rec[2:]  # after 200 steps = 8 relaxation times v / eps
    expect = v / (1 - eps / (2 * v))
    n = late[0].numel()  # records 100 steps apart are nearly independent (relaxation time 25 steps)
    assert abs(late.mean().item() - mu) < 4 * math.sqrt(expect / (n * len(late)))
    assert abs(late.var().item() / expect - 1) < 4 * math.sqrt(2 / (n * len(late)))
    part = diffusion.learnt_langevin(score, x0[5:7], t=1e-3, eps=eps, n_steps=600, seed=2, chain_offset=5)
    torch.testing.assert_close(part, x[5:7], rtol=0, atol=0)


def _ensemble(n_chains=8, per_chain=5):
    from lftaccel import io

    n = n_chains * per_chain
    chain = np.tile(np.arange(n_chains), per_chain)
    configs = np.broadcast_to(chain[:, None, None], (n, 4, 4)).astype(float)  # chain c's fields equal c
    return io.Ensemble(configs=configs, chain=chain, update=np.arange(n), action=np.zeros(n),
                       acceptance_history=np.zeros(1), attrs={"n_chains": n_chains})


def test_split_by_chain_keeps_chains_whole():
    ens = _ensemble()
    train, test = diffusion.split_by_chain(ens)
    assert len(train) == 30 and len(test) == 10
    assert set(test[:, 0, 0]) == {6.0, 7.0} and set(train[:, 0, 0]) == set(range(6))
    train3, test3 = diffusion.split_by_chain(ens, test_chains=3)
    assert len(test3) == 15
    with pytest.raises(ValueError, match="test_chains"):
        diffusion.split_by_chain(ens, test_chains=8)


def test_field_scale_round_trip():
    x = np.random.default_rng(1).normal(0.0, 3.0, size=(100, 4, 4))
    sc = diffusion.FieldScale.fit(x)
    assert abs(sc.c - np.sqrt((x ** 2).mean())) < 1e-12
    np.testing.assert_allclose(sc.decode(sc.encode(x)), x, rtol=1e-14)
    with pytest.raises(ValueError, match="RMS"):
        diffusion.FieldScale.fit(np.zeros((3, 2, 2)))


def _tiny_unet():
    torch.manual_seed(0)
    return diffusion.ScoreUNet((8, 8), diffusion.VESDE(), channels=(8, 8), emb_dim=16)


def test_training_lowers_the_loss_and_resumes_after_a_kill(tmp_path, monkeypatch):
    """The DSM loss falls from its start (score 0: loss 1) toward the Gaussian floor; a run
    killed after its checkpoint and resumed ends with the same weights and EMA weights."""
    data = torch.randn(512, 8, 8)
    kw = dict(steps=40, batch_size=32, lr=3e-3, seed=2, progress=False)
    whole = _tiny_unet()
    res, ema = diffusion.train(whole, data, **kw)
    loss = np.asarray(res.history["loss"])
    assert abs(loss[0] - 1.0) < 0.15 and loss[-10:].mean() < 0.8 * loss[:3].mean()

    trainer = sys.modules["lftaccel.models.diffusion.train"]
    real, calls = trainer.dsm_loss, []

    def dies_at_step_25(*a, **k):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        return real(*a, **k)

    ckpt = tmp_path / "score.pt"
    monkeypatch.setattr(trainer, "dsm_loss", dies_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        diffusion.train(_tiny_unet(), data, checkpoint=ckpt, checkpoint_every=20, **kw)
    monkeypatch.setattr(trainer, "dsm_loss", real)
    resumed = _tiny_unet()
    res2, ema2 = diffusion.train(resumed, data, checkpoint=ckpt, resume=True, **kw)
    assert res2.steps == 40
    for a, b in zip([*whole.parameters(), *ema.parameters()], [*resumed.parameters(), *ema2.parameters()]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_ema_forgets_the_untrained_start():
    """After 40 steps at ema = 0.999 the EMA weights have moved most of the way the model did
    (a fixed decay would keep 0.999^40 = 96% of the initial weights)."""
    model = _tiny_unet()
    start = [p.detach().clone() for p in model.parameters()]
    _, ema = diffusion.train(model, torch.randn(256, 8, 8), steps=40, batch_size=32, lr=3e-3, seed=1, progress=False)
    moved = sum(float(((p.detach() - s) ** 2).sum()) for p, s in zip(model.parameters(), start)) ** 0.5
    ema_moved = sum(float(((p.detach() - s) ** 2).sum()) for p, s in zip(ema.module.parameters(), start)) ** 0.5
    assert moved > 0 and ema_moved > 0.5 * moved, (ema_moved, moved)


def test_bad_sde_arguments():
    with pytest.raises(ValueError, match="sigma"):
        diffusion.VESDE(0.5)
    with pytest.raises(ValueError, match="beta_max"):
        diffusion.VPSDE(1.0, 0.5)
    with pytest.raises(ValueError, match="schedule"):
        diffusion.make_sde("sub-vp")
    with pytest.raises(ValueError, match="eps"):
        diffusion.reverse_sample(lambda x, t: x, diffusion.VESDE(), (2, 2), eps=1.0)
    with pytest.raises(TypeError, match="shape must be"):
        diffusion.reverse_sample(lambda x, t: x, diffusion.VESDE(), 4)
    with pytest.raises(TypeError, match="score_fn must return a torch tensor shaped like x"):
        diffusion.reverse_sample(lambda x, t: x.numpy(), diffusion.VESDE(), (2, 2), n_steps=2)
    with pytest.raises(TypeError, match="score_fn must return a torch tensor shaped like x"):
        diffusion.reverse_sample(lambda x, t: x[:1], diffusion.VESDE(), (2, 2), n_steps=2)
    # a broken network's NaN is refused, not spread through x (before: an all-NaN sample, no word)
    with pytest.raises(ValueError, match="score_fn returned non-finite values"):
        diffusion.reverse_sample(lambda x, t: torch.full_like(x, float("nan")), diffusion.VESDE(), (2, 2), n_steps=2)
    from lftaccel.mcmc import kernels as K

    for bad in (float("nan"), float("inf")):
        for kind in (torch.tensor, np.asarray):
            x, score = np.zeros((2, 3)), np.zeros((2, 3))
            score[1, 2] = bad
            x, score = (torch.tensor(x), torch.tensor(score)) if kind is torch.tensor else (x, score)
            with pytest.raises(ValueError, match="score has non-finite values"):
                K.sde_step(x, score, t=0.5, dt=0.1, seed=0, step=0)
            assert not np.asarray(x).any()  # untouched
    with pytest.raises(ValueError, match="divisible"):
        diffusion.ScoreUNet((6, 8), diffusion.VESDE(), channels=(8, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        diffusion.ScoreUNet((8, 8), diffusion.VESDE(), channels=())
    with pytest.raises(ValueError, match="x must be"):
        diffusion.ScoreUNet((8, 8), diffusion.VESDE(), channels=(8,))(torch.zeros(2, 4, 8), 0.5)


def test_ode_sampler_seed_fixes_its_proposals():
    """The prior draws are Philox streams of (seed, call): torch's global generator does not
    enter, other seeds give other proposals, and each call new ones."""
    sde = diffusion.VESDE()
    score = _gaussian_data_score(sde, 0.0, 1.0)

    def proposals(seed, calls=1):
        sampler = diffusion.ODESampler(score, sde, (2, 2), n_steps=4, divergence="exact", seed=seed)
        return [sampler.sample(3)[0] for _ in range(calls)]

    torch.manual_seed(0)
    a = proposals(1)[0]
    torch.manual_seed(0)
    b = proposals(2)[0]
    torch.manual_seed(5)
    assert torch.equal(proposals(1)[0], a) and not torch.allclose(a, b)
    first, second = proposals(1, calls=2)
    assert torch.equal(first, a) and not torch.allclose(first, second)


def test_diffusion_options_are_checked_by_name():
    """Found by an audit: a negative or too-large eps gave NaN losses or trained outside the
    schedule, a score of one configuration broadcast over the batch in the probability flow
    and the learnt Langevin, an odd emb_dim failed deep in the network, and ODESampler took
    any option until its first sample."""
    from lftaccel.models.diffusion.quantization import learnt_langevin

    sde = diffusion.VESDE()
    x0 = torch.zeros(4, 4, 4)
    net = diffusion.ScoreUNet((4, 4), sde, channels=(4,), emb_dim=8)
    for eps in (-0.5, 0.0, 1.0, 3.0, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            diffusion.dsm_loss(net, sde, x0, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            diffusion.train(net, torch.zeros(8, 4, 4), steps=1, batch_size=4, eps=eps, progress=False)
    for t in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="t must"):
            diffusion.dsm_loss(net, sde, x0, t=t)
        with pytest.raises(ValueError, match="t must"):
            learnt_langevin(lambda x, tt: -x, x0, t=t, eps=0.01, n_steps=1, seed=0)
    for seed in (None, 1.5, -1):
        with pytest.raises((ValueError, TypeError), match="seed"):
            diffusion.train(net, torch.zeros(8, 4, 4), steps=1, batch_size=4, seed=seed, progress=False)
        with pytest.raises((ValueError, TypeError), match="seed"):
            diffusion.ODESampler(lambda x, tt: -x, sde, (4, 4), seed=seed)
    for emb_dim in (7, 0, 2.0, True):
        with pytest.raises(ValueError, match="emb_dim"):
            diffusion.ScoreUNet((4, 4), sde, channels=(4,), emb_dim=emb_dim)
    one = lambda x, tt: -x[:1]  # noqa: E731 - one configuration's score
    with pytest.raises(TypeError, match="shaped like x"):
        diffusion.probability_flow(one, sde, torch.ones(3, 2, 2, dtype=torch.float64), n_steps=2)
    with pytest.raises(TypeError, match="shaped like x"):
        learnt_langevin(one, x0, t=0.5, eps=0.01, n_steps=1, seed=0)
    for kw, match in (({"divergence": "mapp"}, "divergence"), ({"n_steps": 0}, "n_steps"), ({"eps": 1.0}, "eps"),
                      ({"rho": 0.5}, "rho"), ({"scale": 0.0}, "scale")):
        with pytest.raises(ValueError, match=match):
            diffusion.ODESampler(lambda x, tt: -x, sde, (4, 4), **kw)
    with pytest.raises(ValueError, match="shape"):
        diffusion.ODESampler(lambda x, tt: -x, sde, (4, 0))


def test_train_generate_measure_commands(tmp_path, capsys, monkeypatch):
    """lftaccel sample -> train diffusion -> generate [--exact] -> measure, on 4x4 phi^4: the
    model file is self-contained, generated ensembles are ordinary ensemble files, a killed
    training resumes, and a wrong input gets a one-line error."""
    import h5py

    from lftaccel.cli import main
    from lftaccel.io import read_run

    run, model = tmp_path / "run.h5", tmp_path / "dm.pt"
    assert main(["sample", "phi4", "--shape", "4", "4", "-n", "256", "--chains", "4", "--therm", "50",
                 "-o", str(run), "--no-progress"]) == 0
    train = ["train", "diffusion", str(run), "-o", str(model), "--channels", "4,8", "--emb-dim", "8",
             "--steps", "30", "--batch-size", "32", "--no-progress"]
    assert main(train) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "test" in out
    assert main(train[:-4] + ["60", "--batch-size", "32", "--no-progress", "--resume"]) == 0  # continues to 60
    assert torch.load(model, weights_only=False)["step"] == 60
    # a resume must be of the same data and network, checked before any weights load
    assert main(train[:-4] + ["70", "--batch-size", "32", "--no-progress", "--resume", "--test-chains", "1"]) == 0
    assert main(train[:5] + ["--channels", "4,4", "--resume", "--no-progress"]) == 2
    assert "trained with channels = [4, 8]" in capsys.readouterr().err
    moved, other = tmp_path / "moved.h5", tmp_path / "other.h5"  # the data are checked by content, not path
    shutil.copy(run, moved)
    assert main(["train", "diffusion", str(moved), *train[3:-4], "80", "--batch-size", "32", "--no-progress",
                 "--resume"]) == 0
    assert main(["sample", "phi4", "--shape", "4", "4", "-n", "256", "--chains", "4", "--therm", "50", "--seed", "9",
                 "-o", str(other), "--no-progress"]) == 0
    assert main(["train", "diffusion", str(other), *train[3:], "--resume"]) == 2
    assert "trained with data_sha256" in capsys.readouterr().err
    for extra, sampler in (([], "diffusion"), (["--exact", "--ode-steps", "8", "--chains", "2"], "diffusion-exact")):
        dm_file = tmp_path / f"{sampler}.h5"
        assert main(["generate", str(model), "-n", "32", "-o", str(dm_file), "--no-progress", "--batch-size", "12",
                     *extra]) == 0
        ens = read_run(dm_file)
        assert ens.configs.shape == (32, 4, 4) and ens.attrs["sampler"] == sampler
        assert ens.theory.kappa == pytest.approx(0.21) and ens.lattice_shape == (4, 4)
        np.testing.assert_allclose(ens.action, ens.theory.action(torch.as_tensor(ens.configs)).numpy(), rtol=1e-10)
        with h5py.File(dm_file) as f:  # plain h5py reads it
            assert f["configs"].shape == (32, 4, 4)
        if extra:  # chain-interleaved: along each chain a state repeats exactly when a proposal was rejected
            S = ens.by_chain(ens.action)
            repeats = int((S[1:] == S[:-1]).sum())
            assert repeats == round((1 - ens.attrs["acceptance"]) * (len(S) - 1) * 2)
        else:  # batches of 12 draw the same samples as one batch (Philox streams per sample), to
            # float32 rounding of the network (bitwise with 2 threads, 2e-6 apart with one)
            one = tmp_path / "one-batch.h5"
            assert main(["generate", str(model), "-n", "32", "-o", str(one), "--no-progress"]) == 0
            np.testing.assert_allclose(read_run(one).configs, ens.configs, rtol=2e-5, atol=1e-6)
            # and they are the reverse SDE's samples of y = phi / c, scaled back to phi
            from lftaccel.models.diffusion.model_file import load_model

            score, sde, c, _ = load_model(model)
            assert abs(c - 1.0) > 0.05  # (else a missing scale would pass unseen)
            y = diffusion.reverse_sample(score, sde, (32, 4, 4), n_steps=500, seed=0)
            np.testing.assert_allclose(ens.configs, (c * y).numpy(), rtol=2e-5, atol=1e-6)
        capsys.readouterr()
        assert main(["measure", str(dm_file)]) == 0
        out = capsys.readouterr().out
        assert "|M|" in out
        # independence-Metropolis chains: burn-in dropped (1 of 16), chains' spread in the errors
        assert ("independence Metropolis: the first 1 of each chain's 16 dropped" in out) == bool(extra)
        # the header shows the steps; plain draws, independent, have no acceptance
        header = next(line for line in out.splitlines() if line.startswith("sampler "))
        assert (("'ode_steps': 8" in header and "acceptance" in header) if extra
                else ("'sde_steps': 500" in header and "acceptance" not in header)), header
        assert main(["measure", str(dm_file), "--json"]) == 0
        acceptance = json.loads(capsys.readouterr().out)["acceptance"]
        assert acceptance == pytest.approx(ens.attrs["acceptance"]) if extra else acceptance is None
    # killed after its first batch, generate --exact resumes to the file of the uninterrupted run
    from lftaccel.models.diffusion import flow_ode

    sample, calls = flow_ode.ODESampler.sample, []

    def dies_on_the_second_batch(self, k):
        calls.append(k)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return sample(self, k)

    killed = tmp_path / "killed.h5"
    args = ["generate", str(model), "-n", "32", "-o", str(killed), "--no-progress", "--batch-size", "12", "--exact",
            "--ode-steps", "8", "--chains", "2"]
    monkeypatch.setattr(flow_ode.ODESampler, "sample", dies_on_the_second_batch)
    assert main(args) == 130 and not killed.exists() and (tmp_path / "killed.h5.partial").exists()
    monkeypatch.undo()
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # not silently restarted
    assert sorted(f.name for f in (tmp_path / "killed.h5.partial").iterdir()) == ["batch-000000.pt", "state.pt"]
    assert main(args + ["--resume"]) == 0
    np.testing.assert_array_equal(read_run(killed).configs, read_run(tmp_path / "diffusion-exact.h5").configs)
    assert not (tmp_path / "killed.h5.partial").exists()
    assert main(["generate", str(model), "-n", "8", "-o", str(dm_file)]) == 2  # no silent overwrite
    assert main(["generate", str(model), "-n", "9", "--exact", "-o", str(tmp_path / "z.h5")]) == 2
    assert "--chains" in capsys.readouterr().err
    assert main(["generate", str(run), "-n", "8", "-o", str(tmp_path / "x.h5")]) == 2
    assert "not a diffusion model file" in capsys.readouterr().err
    # refused before any sampling, in one line naming the option
    for args, message in ((["-n", "8", "-o", str(model)], "is the model file"),
                          (["-n", "4", "-o", str(tmp_path / "n4.h5")], "-n 4 must give at least 5"),
                          (["-n", "8", "-o", str(tmp_path / "nodir" / "x.h5")], "does not exist"),
                          (["-n", "8", "-o", str(tmp_path / "d.h5"), "--device", "bogus"], "--device 'bogus'"),
                          (["-n", "8", "-o", str(tmp_path / "d.h5"), "--chains", "2"], "--chains applies with --exact"),
                          (["-n", "8", "-o", str(tmp_path / "d.h5"), "--exact", "--chains", "2", "--sde-steps", "9"],
                           "--sde-steps applies without --exact"),
                          (["-n", "8", "-o", str(tmp_path / "d.h5"), "--resume", "--overwrite"],
                           "give --resume (continue the interrupted run) or --overwrite")):
        assert main(["generate", str(model), *args]) == 2
        assert message in capsys.readouterr().err
    assert model.exists() and not (tmp_path / "n4.h5").exists()
    for args, message in ((["--emb-dim", "7"], "--emb-dim must be even"),
                          (["-o", str(tmp_path / "nodir" / "m.pt")], "does not exist")):
        assert main(["train", "diffusion", str(run), "-o", str(tmp_path / "m2.pt"), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["train", "diffusion", str(model), "-o", str(tmp_path / "y.pt")]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert main(train) == 2 and "exists" in capsys.readouterr().err  # no silent overwrite
