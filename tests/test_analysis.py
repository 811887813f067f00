"""lftaccel.analysis on synthetic measurements whose answers are known exactly: the
Gamma-method errors over several chains, the derived phi^4 observables' limits, and the
oscillator's effective-mass gaps where the correlator does not decay."""
import numpy as np
import pyerrors as pe
import pytest
import torch

from lftaccel import analysis
from lftaccel.theories import Oscillator


def ar1(rng, n, chains, a):
    """Independent stationary AR(1) chains (n, chains) of unit variance and mean 0; the
    mean's tau_int is (1 + a) / (2 (1 - a))."""
    x = np.empty((n, chains))
    x[0] = rng.standard_normal(chains)
    for t in range(1, n):
        x[t] = a * x[t - 1] + np.sqrt(1 - a * a) * rng.standard_normal(chains)
    return x


def pulls(n, chains, a, reps, seed):
    rng = np.random.default_rng(seed)
    out, taus = [], []
    for _ in range(reps):
        e = analysis.estimate(analysis.primary(ar1(rng, n, chains, a), "x"), "x")
        out.append(e.value / e.error)
        taus.append(e.tau_int)
    return np.array(out), np.array(taus)


@pytest.mark.parametrize("n,chains", [(62, 16), (40, 50), (1000, 1)])
def test_errors_hold_over_many_short_chains(n, chains):
    # tau_int = 9.5. About each chain's own mean (pyerrors' replica default) the spread of the
    # pulls was 1.73 for 16 chains of 62 and 2.4 for 50 of 40; it must be ~1 (200 repetitions:
    # the spread of a spread is ~0.05).
    p, taus = pulls(n, chains, 0.9, 200, seed=n + chains)
    assert 0.85 < p.std() < 1.2, p.std()
    assert abs(p.mean()) < 0.25
    assert 6.5 < taus.mean() < 12.5, taus.mean()


def test_one_chain_is_pyerrors_plain():
    x = ar1(np.random.default_rng(3), 500, 1, 0.6)
    ours = analysis.estimate(analysis.primary(x, "x"), "x")
    plain = pe.Obs([x[:, 0]], ["run|r0"])
    plain.gamma_method()
    assert ours.value == pytest.approx(plain.value, rel=1e-14)
    assert ours.error == pytest.approx(plain.dvalue, rel=1e-12)
    assert ours.tau_int == pytest.approx(plain.e_tauint["run"], rel=1e-12)


def test_chains_offset_from_each_other_widen_the_error():
    # Two chains that sit apart (not thermalised, or a broken phase) must show it in the error:
    # about each chain's mean the offset vanished from the error altogether.
    rng = np.random.default_rng(4)
    x = 0.01 * rng.standard_normal((100, 2)) + np.array([-1.0, 1.0])
    e = analysis.estimate(analysis.primary(x, "x"), "x")
    assert e.error > 0.2


def phi4_obs(M_per_config, chains=2, L=4):
    """phi^4 observables from constant fields phi(x) = M (one per configuration)."""
    M = np.asarray(M_per_config, dtype=float)
    configs = np.broadcast_to(M[:, None, None], (len(M), L, L)).copy()
    meas = analysis.phi4_measurements(configs)
    n = len(M) // chains
    return analysis.phi4_observables({k: v.reshape(n, chains, *v.shape[1:]) for k, v in meas.items()}, (L, L))


def test_binder_two_state_and_degenerate_limits():
    # |M| fixed: <M^4> = <M^2>^2, U_L = 2/3 exactly; chi2 = V (m0^2 - <M>^2).
    rng = np.random.default_rng(5)
    M = 0.7 * rng.choice([-1.0, 1.0], size=40)
    obs = phi4_obs(M)
    U = analysis.estimate(obs["U_L"], "U_L")
    assert U.value == pytest.approx(2 / 3, abs=1e-12)
    chi2 = analysis.estimate(obs["chi2"], "chi2")
    assert chi2.value == pytest.approx(16 * (0.49 - M.mean() ** 2), rel=1e-10)
    # M = 0 everywhere: U_L is 0/0, omitted (it was NaN); the rest are 0.
    obs = phi4_obs(np.zeros(20))
    assert "U_L" not in obs
    assert analysis.estimate(obs["chi2"], "chi2").value == 0


def osc_obs(paths, n_slices, chains=1, window=None):
    th = Oscillator(beta=8.0, m=0.5, lam=1.0, f=1.0)
    meas = analysis.oscillator_measurements(paths)
    n = len(paths) // chains
    return analysis.oscillator_observables({k: v.reshape(n, chains, *v.shape[1:]) for k, v in meas.items()},
                                           th, n_slices, window)


def test_constant_paths_have_no_gap_and_do_not_raise():
    # (pyerrors raised 'm_eff is undefined at all timeslices' from inside measure)
    for value in (0.0, 1.0):
        obs = osc_obs(np.full((10, 16), value), 16)
        assert "E1-E0" not in obs and "E2-E0" not in obs and "E0" in obs


def test_a_correlator_rising_in_the_window_gives_no_gap():
    # G2(t) = cosh(m (t - N/2)) (times per-configuration noise), m = 0.5 per slice: the gap is
    # m / a = 1 with a = beta / N = 0.5. With G2(3) raised above G2(2) the cosh effective mass
    # has no root at t = 2; fsolve used to return a non-root there and it was averaged in.
    N, rng = 16, np.random.default_rng(6)
    C = np.cosh(0.5 * (np.arange(N) - N / 2))
    noise = 1 + 1e-3 * rng.standard_normal((40, 1, 1))
    meas = {"x2": rng.uniform(0.5, 1.5, (40, 1)), "x4": rng.uniform(0.5, 2.5, (40, 1)), "g2": C * noise,
            "g4": C * noise}
    th = Oscillator(beta=8.0, m=0.5, lam=1.0, f=1.0)
    gap = analysis.estimate(analysis.oscillator_observables(meas, th, N, window=(1, 4))["E1-E0"], "gap")
    assert gap.value == pytest.approx(1.0, abs=1e-3)
    bumped = C.copy()
    bumped[3] = 1.1 * C[2]
    meas["g2"] = bumped * noise
    assert "E1-E0" not in analysis.oscillator_observables(meas, th, N, window=(1, 4))


def test_a_given_window_averages_its_masses_plainly():
    """With a window the gap is the plain mean of the slices' cosh effective masses, the
    target an exact reference over the window computes; inverse-variance weights (noise
    growing with t, as a real correlator's relative error does) made it lean to the first
    slices (found by an audit of the oscillator reproduction)."""
    from scipy.optimize import brentq

    N, rng = 16, np.random.default_rng(7)
    t = np.arange(N)
    C = np.cosh(0.5 * (t - N / 2)) + 0.02 * np.cosh(1.5 * (t - N / 2))  # masses fall toward 0.5 with t
    noise = 1 + 1e-3 * rng.standard_normal((400, 1, N)) * (1 + 4 * t)
    meas = {"x2": rng.uniform(0.5, 1.5, (400, 1)), "x4": rng.uniform(0.5, 2.5, (400, 1)), "g2": C * noise,
            "g4": C * noise}
    th = Oscillator(beta=8.0, m=0.5, lam=1.0, f=1.0)
    a = th.spacing(N)

    def mass(k):  # the noiseless cosh effective mass at slice k
        return brentq(lambda m: C[k] / C[k + 1] - np.cosh(m * (k - N / 2)) / np.cosh(m * (k + 1 - N / 2)), 1e-6, 5)

    masses = [mass(k) for k in (1, 2, 3)]
    assert masses[0] - masses[2] > 0.05  # (the masses differ: weights would move the result)
    gap = analysis.estimate(analysis.oscillator_observables(meas, th, N, window=(1, 4))["E1-E0"], "gap")
    assert abs(gap.value - np.mean(masses) / a) < 3 * gap.error + 1e-3, (gap, np.mean(masses) / a)


def test_bad_measurements_are_named():
    with pytest.raises(ValueError, match="n_slices = 8 does not match"):
        osc_obs(np.random.default_rng(7).standard_normal((10, 16)), 8)
    with pytest.raises(TypeError, match="x: measurements must be real"):
        analysis.primary(np.ones(6) * 1j, "x")
    with pytest.raises(TypeError, match="x: measurements must be real"):
        analysis.primary(["a"] * 6, "x")
    with pytest.raises(ValueError, match="one chain"):
        analysis.primary(np.zeros((10, 0)), "x")


def test_table_marks_errors_from_few_effective_samples():
    rng = np.random.default_rng(8)
    short = analysis.estimate(analysis.primary(ar1(rng, 100, 1, 0.9), "x"), "x")  # ~7 effective samples
    long = analysis.estimate(analysis.primary(ar1(rng, 250, 40, 0.9), "y"), "y")  # ~500
    assert short.n_samples == 100 and short.n_effective == pytest.approx(100 / (2 * short.tau_int))
    assert short.n_effective < analysis.FEW_EFFECTIVE < long.n_effective
    table = analysis.format_table({"x": short, "y": long}).splitlines()
    assert table[1].endswith(" *") and not table[2].endswith("*") and "effective samples" in table[-1]
    assert "effective" not in analysis.format_table({"y": long})


def _cosh_meas(N, m1, m2, noise2, n=40, seed=3):
    """Synthetic measurements: G2 = cosh(m1 (t - N/2)) with 0.1 % noise per slice, G4 = cosh(m2 (t - N/2)) /
    cosh(m2 N/2) plus additive noise of size noise2, <x^2> = 0 (so G4 is the connected one)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    g2 = np.cosh(m1 * (t - N / 2)) * (1 + 1e-3 * rng.standard_normal((n, 1, N)))
    g4 = np.cosh(m2 * (t - N / 2)) / np.cosh(m2 * N / 2) + noise2 * rng.standard_normal((n, 1, N))
    return {"x2": np.zeros((n, 1)), "x4": np.ones((n, 1)), "g2": g2, "g4": g4}


def test_each_gap_takes_its_own_window():
    # N = 64: the default window is t = 4..7 (N/16 to N/8). G4 decays by e^-1.5 a slice from
    # ~e^-42 at t = 4; with noise 3 % of G4(4) per configuration (0.5 % on the mean of 40) it is
    # significant (> 5 errors) up to t = 6 only, so E2 - E0 takes t = 4, 5; E1 - E0 all four.
    N, m1, m2 = 64, 0.3, 1.5
    G4_4 = np.cosh(m2 * (4 - N / 2)) / np.cosh(m2 * N / 2)
    meas = _cosh_meas(N, m1, m2, 0.03 * G4_4)
    th = Oscillator(beta=8.0, m=0.5, lam=1.0, f=1.0)
    a = th.spacing(N)
    notes = []
    obs = analysis.oscillator_observables(meas, th, N, notes=notes)
    assert notes == ["E1-E0: cosh effective masses at t = 4..7, inverse-variance weighted",
                     "E2-E0: cosh effective masses at t = 4..5, inverse-variance weighted"]
    e1, e2 = (analysis.estimate(obs[k], k) for k in ("E1-E0", "E2-E0"))
    assert e1.value == pytest.approx(m1 / a, rel=1e-2)
    # the plateau average weighs each slice's mass by its inverse variance
    G2 = [analysis.primary(meas["g2"][:, :, t], "G2") for t in range(N)]
    masses = [pe.Corr(G2).m_eff(variant="cosh")[t] for t in range(4, 8)]
    for m in masses:
        m.gamma_method()
    w = np.array([1 / m.dvalue**2 for m in masses])
    assert np.ptp([m.value for m in masses]) > 3 * e1.error * a  # slices that differ: the weights matter
    assert e1.value == pytest.approx(np.dot(w, [m.value for m in masses]) / w.sum() / a, rel=1e-12)
    assert abs(e2.value - m2 / a) < 3 * e2.error and e2.error < 0.05 * m2 / a
    # The old shared window (4, 8) reached G4(8), which here is noise
    g4_8 = analysis.primary(meas["g4"][:, :, 8], "G4(8)")
    g4_8.gamma_method()
    assert abs(g4_8.value) < 2 * g4_8.dvalue


def test_a_gap_falls_back_to_earlier_slices_or_says_why():
    N, m1, m2 = 64, 0.3, 1.5
    th = Oscillator(beta=8.0, m=0.5, lam=1.0, f=1.0)
    # Noise at 20 % of G4(3) (3.2 % on the mean of 40): G4(4) = 0.22 G4(3) is 7 errors, G4(5) 1.5,
    # so the window from t = 4 is empty, and the latest usable slice before it, t = 3, is taken.
    G4_3 = np.cosh(m2 * (3 - N / 2)) / np.cosh(m2 * N / 2)
    notes = []
    obs = analysis.oscillator_observables(_cosh_meas(N, m1, m2, 0.2 * G4_3), th, N, notes=notes)
    assert notes[1] == "E2-E0: cosh effective masses at t = 3"
    e2 = analysis.estimate(obs["E2-E0"], "E2-E0")
    assert abs(e2.value - m2 / th.spacing(N)) < 3 * e2.error
    # Pure noise: no slice is usable, and the note says so.
    meas = _cosh_meas(N, m1, m2, 0.0)
    meas["g4"] = np.random.default_rng(4).standard_normal((40, 1, N))
    notes = []
    assert "E2-E0" not in analysis.oscillator_observables(meas, th, N, notes=notes)
    assert notes[1].startswith("E2-E0: no estimate (the correlator is not above 5 errors and decaying")


def test_split_rhat_flags_a_chain_that_sits_elsewhere():
    rng = np.random.default_rng(11)
    x = ar1(rng, 400, 8, 0.5)  # tau_int 1.5, 400 per chain: the chains agree
    assert analysis.split_rhat(x) < 1.02
    stuck = x.copy()
    stuck[:, 3] += 2.0  # one chain in another sector, two standard deviations away
    assert analysis.split_rhat(stuck) > 1.1
    drifting = x + np.linspace(0, 3, 400)[:, None]  # still thermalising: the halves differ
    assert analysis.split_rhat(drifting) > 1.1
    assert analysis.split_rhat(x[:3]) is None and analysis.split_rhat(np.ones((10, 4))) is None


def test_drift_z_sees_chains_that_relax_together():
    """Geweke's comparison pooled over chains: near 0 for stationary chains, large where every
    chain still relaxes from its start (the chains' spread and split R-hat need not see that)."""
    rng = np.random.default_rng(17)
    x = ar1(rng, 500, 8, 0.5)
    zs = [analysis.drift_z(ar1(rng, 500, 8, 0.5)) for _ in range(40)]
    assert abs(np.mean(zs)) < 0.5 and 0.6 < np.std(zs) < 1.5  # ~N(0, 1) when stationary
    relaxing = x + 1.5 * np.exp(-np.arange(500) / 100.0)[:, None]
    assert analysis.drift_z(relaxing) > analysis.DRIFT_Z
    assert analysis.split_rhat(relaxing) < analysis.RHAT_WARN  # which R-hat misses here
    assert analysis.drift_z(x[:20]) is None and analysis.drift_z(np.ones((100, 4))) is None
    assert analysis.drift_z(relaxing[:, :3]) is None  # too few chains for the Gamma errors of a fifth


def test_measure_notes_a_chain_that_disagrees():
    import json

    import lftaccel
    from lftaccel.io import Ensemble, theory_to_dict

    rng = np.random.default_rng(13)
    n, chains, shape = 64, 4, (4, 4)
    x = rng.standard_normal((n * chains, *shape))
    x[2::chains] += 1.5  # chain 2 sits elsewhere
    th = lftaccel.Phi4(0.1, 0.0)
    attrs = {"theory_params": json.dumps(theory_to_dict(th)), "lattice_shape": np.array(shape),
             "n_chains": chains, "sampler": "hmc"}
    ens = Ensemble(configs=x, chain=np.tile(np.arange(chains), n), update=np.repeat(np.arange(n), chains),
                   action=th.action(torch.from_numpy(x)).numpy(), acceptance_history=np.ones(1), attrs=attrs)
    notes = analysis.measure(ens).notes
    assert len(notes) == 1 and notes[0].startswith("chains disagree (split R-hat > 1.1): ") and " M " in notes[0]
    x[2::chains] -= 1.5  # all four alike: no note
    ens.action = th.action(torch.from_numpy(x)).numpy()
    assert analysis.measure(ens).notes == []
    # chains frozen at different values: R-hat is infinite, not undefined
    frozen = np.repeat(np.arange(4.0)[None], 10, 0)
    assert analysis.split_rhat(frozen) == np.inf and analysis.split_rhat(np.ones((10, 4))) is None


def test_chain_spread_is_the_spread_of_the_chain_means():
    x = ar1(np.random.default_rng(20), 50, 6, 0.5)
    obs = analysis.primary(x, "x")
    assert analysis.chain_spread(obs) == pytest.approx(x.mean(0).std(ddof=1) / np.sqrt(6), rel=1e-12)
    assert analysis.chain_spread(analysis.primary(x[:, :1], "x")) is None
    # of a derived Obs: the linearised chain estimates, whose spread is the same for 2 x + 1
    assert analysis.chain_spread(2 * obs + 1) == pytest.approx(2 * analysis.chain_spread(obs), rel=1e-12)


def _pulls_with_offsets(s, chains, reps, seed):
    rng = np.random.default_rng(seed)
    gamma, final, noted = [], [], 0
    for _ in range(reps):
        x = ar1(rng, 400, chains, 0.5) + s * rng.standard_normal(chains)
        obs = {"M": analysis.primary(x, "M")}
        est = {"M": analysis.estimate(obs["M"], "M")}
        out, apart = analysis.with_chain_spread(est, obs, chains)
        gamma.append(est["M"].value / est["M"].error)
        final.append(out["M"].value / out["M"].error)
        noted += bool(apart)
    return np.std(gamma), np.std(final), noted / reps


def test_chains_apart_beyond_their_autocorrelation_get_the_spread_as_error():
    # Offsets N(0, 0.2^2) between 16 AR(1) chains (tau_int 1.5) of 400, whose means have errors of
    # 0.087: the Gamma window sees little of them; the chains' spread sees all.
    g, f, noted = _pulls_with_offsets(0.2, 16, 100, seed=21)
    assert g > 1.6 and 0.8 < f < 1.2 and noted > 0.8, (g, f, noted)
    # chains that agree: the larger of the two errors is only a little above the Gamma error's
    g, f, noted = _pulls_with_offsets(0.0, 16, 100, seed=22)
    assert 0.85 < g < 1.2 and 0.8 * g < f <= g and noted < 0.05, (g, f, noted)
    # below MIN_CHAINS_FOR_SPREAD the error stays the Gamma method's, and the disagreement is noted
    g, f, noted = _pulls_with_offsets(0.3, 4, 30, seed=23)
    assert f == g and noted > 0.5, (g, f, noted)


def test_estimate_from_the_spread_implies_fewer_effective_samples():
    e = analysis.Estimate("x", 0.0, 2.0, tau_int=1.0, n_samples=400, gamma_error=1.0, stream_error=2.0)
    assert e.n_effective == pytest.approx(200 / 4)
    assert analysis.Estimate("x", 0.0, 1.0, tau_int=1.0, n_samples=400).n_effective == 200


def test_table_marks_rows_built_from_a_rough_magnetisation():
    M = analysis.Estimate("M", 0.0, 0.1, tau_int=40.0, n_samples=3200)  # 40 effective samples
    chi2 = analysis.Estimate("chi2", 3.0, 0.3, tau_int=10.0, n_samples=3200)  # 160 of its own
    action = analysis.Estimate("action/V", 0.5, 0.01, tau_int=10.0, n_samples=3200)
    rows = analysis.format_table({"M": M, "chi2": chi2, "action/V": action}).splitlines()
    assert rows[1].endswith(" *") and rows[2].endswith(" *") and not rows[3].endswith("*")
    assert "of M, for the rows built from it" in rows[-1]
    M.tau_int = 10.0
    assert "*" not in analysis.format_table({"M": M, "chi2": chi2})


def test_constant_measurements_are_said_to_give_no_error():
    with pytest.warns(RuntimeWarning, match="x: the measurements do not fluctuate"):
        e = analysis.estimate(analysis.primary(np.ones((20, 4)), "x"), "x")
    assert e.error == 0
    with pytest.raises(ValueError, match=r"different lengths \[5, 6\]"):
        analysis.primary([np.ones(5), np.ones(6)], "x")


def test_measure_notes_frozen_chains_and_chains_apart():
    import json

    import lftaccel
    from lftaccel.io import Ensemble, theory_to_dict

    rng = np.random.default_rng(24)
    n, chains, shape = 100, 8, (2, 2)
    th = lftaccel.Phi4(0.1, 0.0)
    attrs = {"theory_params": json.dumps(theory_to_dict(th)), "lattice_shape": np.array(shape),
             "n_chains": chains, "sampler": "hmc"}

    def ens_of(x):
        return Ensemble(configs=x, chain=np.tile(np.arange(chains), n), update=np.repeat(np.arange(n), chains),
                        action=th.action(torch.from_numpy(x)).numpy(), acceptance_history=np.ones(1), attrs=attrs)

    frozen = np.repeat(rng.standard_normal((1, *shape)), n * chains, 0)
    m = analysis.measure(ens_of(frozen))
    constant = "measurements constant along every chain: M, slice_corr, action"
    assert any(note.startswith(constant) for note in m.notes), m.notes
    # the chains sit 0.3 apart in M (4 sites: each chain's M has error ~0.05 / tau 0.5): the error of M
    # becomes the spread of the chains, and the note names M
    x = rng.standard_normal((n * chains, *shape)) + np.tile(0.3 * rng.standard_normal(chains), n)[:, None, None]
    m = analysis.measure(ens_of(x))
    assert m["M"].error == m["M"].stream_error > 1.5 * m["M"].gamma_error
    apart = [note for note in m.notes if note.startswith("chains disagree beyond their Gamma errors")]
    assert len(apart) == 1 and "M (spread" in apart[0] and "each of these errors is the chains' spread" in apart[0]


def test_table_marks_an_error_from_the_spread_of_few_chains():
    e = analysis.Estimate("x", 0.0, 2.0, tau_int=0.5, n_samples=8000, gamma_error=1.5, stream_error=2.0, n_streams=8)
    assert e.n_effective > analysis.FEW_EFFECTIVE  # many samples, but an error from 8 chains
    assert analysis.format_table({"x": e}).splitlines()[1].endswith(" *")
    e.n_streams = 16
    assert "*" not in analysis.format_table({"x": e})
    e.n_streams, e.gamma_error = 8, None  # the Gamma error was the larger: it stands
    assert "*" not in analysis.format_table({"x": e})
