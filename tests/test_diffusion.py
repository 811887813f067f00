"""Diffusion SDEs: the closed-form perturbation kernels against direct integration of the SDE's
moments, and reverse-time sampling through the fused kernel with the exact score of Gaussian
data, which must return the data distribution."""

import math

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


@pytest.mark.parametrize("schedule", ["ve", "vp"])
def test_reverse_sampling_with_the_exact_score_returns_the_data(schedule):
    """Data x_0 ~ N(mu, s0^2) per site: p_t = N(m mu, m^2 s0^2 + s^2) and its score is exact, so
    the reverse SDE must end at N(mu, s0^2 + s(eps)^2) up to the Euler-Maruyama error."""
    sde = diffusion.make_sde(schedule)
    mu, s0 = 0.7, 0.5

    def score(x, t):
        m, s = (float(v) for v in sde.kernel(t))
        return -(x - m * mu) / (m * m * s0 * s0 + s * s)

    x = diffusion.reverse_sample(score, sde, (4000, 4, 4), n_steps=1000, eps=1e-3, seed=3)
    eps_m, eps_s = (float(v) for v in sde.kernel(1e-3))
    n = x.numel()
    var_true = s0 * s0 + eps_s ** 2
    assert abs(x.mean().item() - eps_m * mu) < 4 * math.sqrt(var_true / n) + 0.005
    assert abs(x.var().item() / var_true - 1) < 4 * math.sqrt(2 / n) + 0.005  # a score 10 % off: 25 %


def test_reverse_sampling_does_not_depend_on_the_batch():
    sde = diffusion.VESDE()
    score = lambda x, t: -x / (0.25 + float(sde.kernel(t)[1]) ** 2)  # noqa: E731
    whole = diffusion.reverse_sample(score, sde, (6, 3, 3), n_steps=20, seed=1)
    part = diffusion.reverse_sample(score, sde, (2, 3, 3), n_steps=20, seed=1, chain_offset=4)
    torch.testing.assert_close(whole[4:], part, rtol=0, atol=0)


def test_bad_sde_arguments():
    with pytest.raises(ValueError, match="sigma"):
        diffusion.VESDE(0.5)
    with pytest.raises(ValueError, match="beta_max"):
        diffusion.VPSDE(1.0, 0.5)
    with pytest.raises(ValueError, match="schedule"):
        diffusion.make_sde("sub-vp")
    with pytest.raises(ValueError, match="eps"):
        diffusion.reverse_sample(lambda x, t: x, diffusion.VESDE(), (2, 2), eps=1.0)
