"""Neural MCMC: exact on a known Gaussian target with a deliberately imperfect proposal."""

import json
import math

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel.analysis import estimate, primary
from lftaccel.mcmc import nmcmc


def _gaussian_proposals(n, mu, s, seed):
    """Proposals from N(mu, s^2) for the target p(x) ∝ exp(-x^2 / 2), i.e. S = x^2 / 2."""
    rng = np.random.default_rng(seed)
    x = mu + s * rng.standard_normal(n)
    log_q = -0.5 * ((x - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    return x, log_q, 0.5 * x * x


def test_independence_metropolis_is_exact_with_an_imperfect_proposal():
    x, log_q, S = _gaussian_proposals(40000, 0.4, 1.3, seed=11)
    chain = nmcmc.independence_metropolis(S, log_q, seed=3, n_chains=4)
    assert 0.5 < chain.acceptance < 0.95  # imperfect, yet usable
    for name, v, exact in (("x", x, 0.0), ("x^2", x * x, 1.0), ("x^4", x ** 4, 3.0)):
        est = estimate(primary(chain.take(v), name), name)
        assert abs(est.value - exact) < 3 * est.error, (name, est)
        assert est.tau_int > 0.5  # rejections correlate the chain
    # the raw proposals are biased: <x> = 0.4 is many sigma away from 0
    assert abs(x.mean()) > 20 * x.std() / math.sqrt(len(x))


def test_reweighting_is_exact_with_an_imperfect_proposal():
    x, log_q, S = _gaussian_proposals(40000, 0.4, 1.3, seed=12)
    lw = nmcmc.log_weights(S, log_q)
    for name, v, exact in (("x", x, 0.0), ("x^2", x * x, 1.0)):
        est = estimate(nmcmc.reweight(v, lw, name), name)
        assert abs(est.value - exact) < 3 * est.error, (name, est)


def test_perfect_proposal_accepts_everything_and_has_ess_one():
    x, log_q, S = _gaussian_proposals(1000, 0.0, 1.0, seed=13)
    chain = nmcmc.independence_metropolis(S, log_q, seed=0)
    assert chain.acceptance == 1.0
    assert chain.ess == pytest.approx(1.0, abs=1e-12)
    assert chain.longest_rejection_run() == 0


def test_ess_by_hand():
    # weights 1, 1, 2, 0: (sum w)^2 / (N sum w^2) = 16 / (4 * 6)
    lw = np.log(np.array([1.0, 1.0, 2.0, 1e-300])) + 5.0
    assert nmcmc.ess(lw) == pytest.approx(16 / 24, rel=1e-12)
    assert nmcmc.ess(torch.tensor([0.0, 0.0])) == 1.0


def test_broken_proposals_get_zero_weight_and_are_never_accepted():
    # The chain starts on broken proposals (NaN and infinite action): it must leave them for
    # the first finite one with certainty, and never return to a broken one. Left as NaN, the
    # first weight would make every later ratio NaN and the chain would stay on proposal 0.
    S = np.array([np.nan, np.inf, 0.0, np.nan, 1.0, np.inf, 0.5, np.nan, 0.2])
    log_q = np.zeros(len(S))
    with pytest.warns(RuntimeWarning):
        lw = nmcmc.log_weights(S, log_q)
    broken = [0, 1, 3, 5, 7]
    assert np.isneginf(lw[broken]).all() and np.isfinite(np.delete(lw, broken)).all()
    for seed in range(20):
        with pytest.warns(RuntimeWarning, match="3 of 9 proposals have a NaN action"):  # counted, not silent
            chain = nmcmc.independence_metropolis(S, log_q, seed=seed)
        path = chain.index[:, 0]
        # the chain starts on the first proposal of nonzero weight: a state of probability zero
        # is never measured (a NaN observable there made the whole analysis fail)
        assert not np.isin(path, broken).any(), (seed, path)
        assert (path[:3] == 2).all()
    values = np.where(np.isin(np.arange(len(S)), broken), np.nan, 1.0)
    assert np.isfinite(chain.take(values)).all()
    with pytest.warns(RuntimeWarning):
        lw = nmcmc.log_weights(S, log_q)
    assert nmcmc.reweight(values, lw).value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="chain 0 has no proposal of nonzero weight"):
        nmcmc.independence_metropolis(np.full(4, np.inf), np.zeros(4), seed=0)


def test_chain_is_reproducible_and_seed_dependent():
    x, log_q, S = _gaussian_proposals(2000, 0.5, 1.5, seed=14)
    a = nmcmc.independence_metropolis(S, log_q, seed=7, n_chains=2)
    b = nmcmc.independence_metropolis(S, log_q, seed=7, n_chains=2)
    c = nmcmc.independence_metropolis(S, log_q, seed=8, n_chains=2)
    assert np.array_equal(a.index, b.index) and not np.array_equal(a.index, c.index)
    # chain c of 2 only ever visits its own stream of proposals
    assert a.index[:, 0].max() < 1000 <= a.index[:, 1].min()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="different lengths"):
        nmcmc.log_weights(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="n_chains"):
        nmcmc.independence_metropolis(np.zeros(10), np.zeros(10), seed=0, n_chains=3)
    with pytest.raises(ValueError, match="n_chains"):
        nmcmc.independence_metropolis(np.zeros(10), np.zeros(10), seed=0, n_chains=0)
    with pytest.raises(ValueError, match="values"):
        nmcmc.reweight(np.zeros(3), np.zeros(4))
    for seed in (None, -1, 1.5):
        with pytest.raises(ValueError, match="seed"):
            nmcmc.independence_metropolis(np.zeros(10), np.zeros(10), seed=seed)
    with pytest.raises(TypeError, match="action must be an array of real numbers"):
        nmcmc.log_weights([None] * 4, np.zeros(4))
    with pytest.raises(TypeError, match="log_q must be an array of real numbers"):
        nmcmc.log_weights(np.zeros(2), ["a", "b"])
    chain = nmcmc.independence_metropolis(np.zeros(10), np.zeros(10), seed=0)
    with pytest.raises(ValueError, match="one entry per proposal"):
        chain.take(np.zeros(9))


def test_draw_batches_a_model():
    class Model:
        def sample(self, n):
            x = torch.randn(n, 3)
            return x, -0.5 * (x * x).sum(1) - 1.5 * math.log(2 * math.pi)

    x, log_q, S = nmcmc.draw(Model(), lambda v: 0.5 * (v * v).sum(1), 10, batch_size=4)
    assert x.shape == (10, 3) and log_q.dtype == torch.float64
    lw = nmcmc.log_weights(S, log_q)
    assert np.allclose(lw, 1.5 * math.log(2 * math.pi))


@pytest.mark.parametrize("alpha", [1.5, 4.0])
def test_pareto_k_recovers_the_tail_index_of_pareto_weights(alpha):
    # Lomax weights w = (1 - U)^(-1/alpha) have a generalised Pareto tail of shape k = 1/alpha
    ks = [nmcmc.pareto_k(np.log((1 - np.random.default_rng(s).random(8192)) ** (-1 / alpha))) for s in range(10)]
    assert abs(np.mean(ks) - 1 / alpha) < 0.05, ks
    assert np.std(ks) < 0.1


def test_gpd_shape_on_small_tails():
    # Zhang and Stephens' fit on exact Pareto tails of 20 points (the k-hat tail of 100 weights),
    # k = 0.5: nearly unbiased (mean 0.45, RMS error 0.34 here), where scipy's maximum likelihood,
    # which it replaced, gave a mean of 0.31 and an RMS error of 0.46 on the same tails
    rng = np.random.default_rng(11)
    tails = [np.sort((1 - rng.random(20)) ** -0.5 - 1) for _ in range(200)]  # GPD, k = 0.5, scale 0.5
    zs = np.array([nmcmc.gpd_shape(t) for t in tails])
    assert abs(zs.mean() - 0.5) < 0.08 and np.sqrt(np.mean((zs - 0.5) ** 2)) < 0.4, zs.mean()
    assert nmcmc.gpd_shape(3.0 * tails[0]) == pytest.approx(nmcmc.gpd_shape(tails[0]), abs=1e-12)  # scale-free


def test_gpd_shape_bounded_tails_and_bad_input():
    assert nmcmc.gpd_shape(np.random.default_rng(0).random(500)) == pytest.approx(-1.0, abs=0.15)  # uniform: k = -1
    assert -1.0 < nmcmc.gpd_shape([0.0, 0.0, 0.0, 1.0, 2.0, 3.0]) < 1.0  # ties at the threshold (0.13)
    # a lower quartile below 1e-308 of the maximum: an extreme tail, reported as inf, never NaN
    assert nmcmc.gpd_shape([1e-320, 1e-300, 0.5, 1.0]) == np.inf
    for bad in ([1.0], [0.0, 0.0], [-1.0, 2.0], [1.0, np.nan], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="x must be"):
            nmcmc.gpd_shape(bad)


def test_pareto_k_flat_weights_and_bad_input():
    assert nmcmc.pareto_k(np.zeros(100)) == -np.inf  # q = p: no tail at all
    x, log_q, S = _gaussian_proposals(4000, 0.0, 1.3, seed=2)  # a wider q: bounded weights, k < 0
    chain = nmcmc.independence_metropolis(S, log_q, seed=0, n_chains=4)
    assert chain.pareto_k < 0
    with pytest.raises(ValueError, match="at least 20"):
        nmcmc.pareto_k(np.zeros(10))


def test_chain_and_gamma_errors_hold_at_low_ess():
    """p = N(0, 1)^16, q = N(0, 0.8^2)^16 (too narrow: heavy-tailed weights, ESS ~ 0.1), O = mean x^2
    (exact 1), 8 streams of 512, 40 repetitions: chain_observables' errors (the larger of the Gamma
    method's and the streams' spread, burn-in dropped) match the estimates' actual spread, and so
    do the Gamma method's alone, its fluctuations taken about the mean of all streams (about each
    stream's own mean they were 30 % too small: 0.71 of the spread here)."""
    from lftaccel.reproduce.common import chain_observables

    d, s, n_streams, n = 16, 0.8, 8, 512
    rng = np.random.default_rng(7)
    values, errors, gamma_errors, esses = [], [], [], []
    for rep in range(40):
        x = rng.normal(0.0, s, (n_streams * n, d))
        S, log_q, x2 = 0.5 * (x ** 2).sum(1), -0.5 * (x ** 2).sum(1) / s ** 2, (x ** 2).mean(1)
        chain = nmcmc.independence_metropolis(S, log_q, seed=rep, n_chains=n_streams)
        est = chain_observables({"x2": x2}, chain, lambda m: {"x2": primary(m["x2"], "x2")})["x2"]
        assert est.stream_error is not None and est.error >= est.stream_error
        values.append(est.value)
        errors.append(est.error)
        gamma_errors.append(estimate(primary(chain.take(x2)[n // 10:], "x2"), "x2").error)
        esses.append(chain.ess)
    spread = np.std(values, ddof=1)
    assert 0.05 < np.mean(esses) < 0.2
    assert 0.8 < math.sqrt(np.mean(np.square(errors))) / spread < 1.3
    assert 0.8 < math.sqrt(np.mean(np.square(gamma_errors))) / spread < 1.3
    assert abs(np.mean(values) - 1.0) < 3 * spread / math.sqrt(len(values))


def test_measure_of_an_independence_metropolis_file():
    """A file as `lftaccel generate --exact` writes it (independence-Metropolis chains, step-major)
    is measured with each chain's burn-in dropped and errors no smaller than the chains' spread:
    free field 4x4 at kappa = 0.1 from the product proposal N(0, 1/2) per site."""
    from lftaccel import analysis, exact
    from lftaccel.io import Ensemble, theory_to_dict

    theory, shape, n, n_chains, s = lftaccel.Phi4(0.1, 0.0), (4, 4), 4096, 8, math.sqrt(0.5)
    rng = np.random.default_rng(12)
    x = rng.normal(0.0, s, size=(n, *shape))
    S = theory.action(torch.from_numpy(x)).numpy()
    log_q = (-0.5 * (x**2).sum((1, 2)) / s**2 - 16 * math.log(s * math.sqrt(2 * math.pi)))
    chain = nmcmc.independence_metropolis(S, log_q, seed=3, n_chains=n_chains)
    order = chain.index.reshape(-1)
    settings = {"sampler": "diffusion-exact", "ess": chain.ess, "pareto_k": chain.pareto_k}
    attrs = {"theory_params": json.dumps(theory_to_dict(theory)), "lattice_shape": np.array(shape),
             "n_chains": n_chains, "sampler": "diffusion-exact", "sampler_settings": json.dumps(settings)}
    per_chain = n // n_chains
    ens = Ensemble(configs=x[order], chain=np.tile(np.arange(n_chains), per_chain),
                   update=np.repeat(np.arange(per_chain), n_chains), action=S[order],
                   acceptance_history=np.ones(1), attrs=attrs)
    est = analysis.measure(ens)
    assert est["chi2"].n_samples == n - n_chains * analysis.exact_discard(per_chain)
    assert est["chi2"].stream_error is not None and est["chi2"].error >= est["chi2"].stream_error
    assert est.notes[0].startswith(f"independence Metropolis: the first {per_chain // 10} of each chain's")
    chi2 = exact.free_field(0.1, shape)["chi2"]
    assert abs(est["chi2"].value - chi2) < 3 * est["chi2"].error, (est["chi2"], chi2, chain.ess)
    # a low ESS is flagged
    ens.attrs["sampler_settings"] = json.dumps({**settings, "ess": 0.1})
    assert any(note.startswith("ESS 0.1") for note in analysis.measure(ens).notes)
    ens.attrs["sampler_settings"] = json.dumps({**settings, "ess": None, "pareto_k": 0.7})  # k-hat alone
    assert any(note.startswith("k-hat 0.70: below") for note in analysis.measure(ens).notes)


def test_weights_refuse_inf_and_complex():
    assert nmcmc.ess([0.0, np.nan, 0.0]) == pytest.approx(2 / 3)  # NaN: a zero weight, as in log_weights
    with pytest.raises(ValueError, match=r"\+inf"):
        nmcmc.ess([np.inf, 0.0])
    with pytest.raises(TypeError, match="log_w must be real"):
        nmcmc.ess(np.array([1 + 1j, 0.0]))
    with pytest.raises(TypeError, match="action must be real"):
        nmcmc.log_weights(torch.tensor([1 + 1j]), [0.0])
