"""Spectral reconstruction: forward map, classical methods, chi^2 conventions, bad input."""

import warnings

import numpy as np
import pytest

from lftaccel import spectral as S
from lftaccel.spectral import classical, mock

P25 = np.linspace(0.001, 19.199, 25)
OMEGA = np.linspace(0.04, 20, 500)


def test_quadrature_matches_the_breit_wigner_closed_form():
    for A, M, G in ((1.0, 2.0, 0.5), (0.8, 5.0, 0.5), (1.0, 2.5, 0.1)):
        D = mock.propagator(mock.breit_wigner(A, M, G), P25)
        np.testing.assert_allclose(D, mock.bw_propagator(P25, A, M, G), rtol=1e-11)


def test_riemann_sum_is_not_the_mock_data():
    """The grid sum a method uses differs from the exact propagator (by the grid's
    discretisation), so mock data never come from the reconstruction's own forward map."""
    K = S.kernels.forward_matrix(P25, OMEGA, quadrature="riemann")
    bw = mock.breit_wigner()
    riemann = K @ bw(OMEGA)
    exact = mock.bw_propagator(P25)
    rel = np.abs(riemann / exact - 1)
    assert 1e-6 < rel.max() < 0.1


def test_finite_temperature_kernel():
    K = S.finite_temperature(0.25)
    w = np.array([0.5, 2.0, 50.0])
    tau = np.array([1.0, 2.0])
    expected = np.cosh(w * (tau[:, None] - 2.0)) / np.sinh(w / 0.5)
    np.testing.assert_allclose(K(tau, w), expected, rtol=1e-12)
    assert np.isfinite(K(np.array([0.5]), np.array([2000.0]))).all()  # no overflow
    # symmetric about tau = 1/(2T)
    np.testing.assert_allclose(K(np.array([1.0]), w), K(np.array([3.0]), w), rtol=1e-12)
    with pytest.raises(ValueError, match="tau"):
        K(np.array([5.0]), w)
    # tau = N_t a at T = 1 / (N_t a) rounds past 1/T (N_t = 9, a = 0.1: 0.9 > 0.8999999999999999)
    K9 = S.finite_temperature(1 / (9 * 0.1))
    np.testing.assert_allclose(K9(np.arange(10) * 0.1, w)[-1], K9(np.zeros(1), w)[0], rtol=1e-12)


def test_singular_values_decay_exponentially():
    s = S.singular_values(P25, OMEGA)
    ratios = s[2:20] / s[1:19]
    assert np.all(ratios < 0.4) and s[15] / s[0] < 1e-9  # a factor ~5-10 per index, until float64 rounding


def data(eps=1e-5, seed=0):
    D0 = mock.bw_propagator(P25)
    sigma = mock.relative_noise_sigma(D0, P25, eps) + 1e-12
    return mock.add_noise(D0, sigma, seed), sigma


@pytest.mark.parametrize("method,options", [
    ("tsvd", {}), ("tikhonov", {"regulariser": "identity", "positive": False}), ("tikhonov", {"positive": False}),
    ("tikhonov", {}), ("tikhonov", {"regulariser": "identity", "choose": "gcv", "positive": False})])
def test_classical_methods_recover_a_broad_peak(method, options):
    D, sigma = data()
    res = S.reconstruct(P25, D, sigma, OMEGA, method, **options)
    truth = mock.breit_wigner()(OMEGA)
    rel = np.linalg.norm(res.rho - truth) / np.linalg.norm(truth)
    assert rel < 0.5, rel
    assert abs(OMEGA[np.argmax(res.rho)] - OMEGA[np.argmax(truth)]) < 0.2
    if method == "tikhonov" and options.get("positive", True):
        assert (res.rho >= 0).all() and res.band is None
    else:
        assert res.band.shape == res.rho.shape and (res.band > 0).all()


def test_discrepancy_principle_meets_its_chi2_target():
    D, sigma = data(1e-3)
    n = len(P25)
    res = S.reconstruct(P25, D, sigma, OMEGA, "tikhonov", regulariser="identity", positive=False)
    assert res.chi2 == pytest.approx(n + 2 * np.sqrt(2 * n), rel=1e-6)  # the default target
    res = S.reconstruct(P25, D, sigma, OMEGA, "tikhonov", regulariser="identity", positive=False, tau=1.0)
    assert res.chi2_per_point == pytest.approx(1.0, rel=1e-6)
    t = S.reconstruct(P25, D, sigma, OMEGA, "tsvd", tau=1.0)
    k = t.diagnostics["rank"]
    assert t.chi2 <= n < t.diagnostics["chi2_by_rank"][k - 1]  # the smallest rank that fits


def test_chi2_uses_the_full_covariance():
    D, sigma = data(1e-3)
    prob_diag = S.Problem.build(P25, D, sigma, OMEGA)
    prob_cov = S.Problem.build(P25, D, cov=np.diag(sigma**2), omega=OMEGA)
    rho = mock.breit_wigner()(OMEGA)
    assert prob_cov.chi2(rho) == pytest.approx(prob_diag.chi2(rho), rel=1e-10)
    # correlated errors: chi2 = r^T C^-1 r
    rng = np.random.default_rng(1)
    B = rng.normal(size=(25, 25)) * sigma[:, None] * 0.2
    C = np.diag(sigma**2) + B @ B.T
    r = prob_diag.K @ rho - D
    assert S.Problem.build(P25, D, cov=C, omega=OMEGA).chi2(rho) == pytest.approx(r @ np.linalg.solve(C, r),
                                                                                   rel=1e-8)


@pytest.mark.parametrize("kwargs,message", [
    ({"p": P25[:10]}, "different lengths"),
    ({"sigma": -np.ones(25)}, "sigma must be finite and > 0"),
    ({"D": np.full(25, np.nan)}, "NaN"),
    ({"p": P25[:2], "D": np.ones(2), "sigma": np.ones(2)}, "at least 3"),
    ({"method": "magic"}, "method must be one of"),
    ({"omega": np.array([1.0, 0.5, 2.0])}, "increasing"),
    ({"sigma": np.eye(25)}, r"sigma must be 1-d, one value per data point, got shape \(25, 25\); a covariance"),
    ({"D": np.ones((25, 2))}, r"D must be 1-d, one value per data point, got shape \(25, 2\)"),
    ({"D": np.ones(25) * (1 + 1e-3j)}, "D must be real, got complex values"),
    ({"D": np.array(["1.0"] * 25)}, "D must be an array of real numbers, got dtype <U3"),
    ({"p": [None] * 25}, "p must be an array of real numbers, got dtype object"),
])
def test_bad_input(kwargs, message):
    D, sigma = data()
    args = {"p": P25, "D": D, "sigma": sigma, "omega": OMEGA, "method": "tsvd"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        S.reconstruct(args.pop("p"), args.pop("D"), args.pop("sigma"), args.pop("omega"), args.pop("method"))


def test_a_scalar_sigma_is_every_points_error_and_a_column_is_a_vector():
    D, sigma = data()
    one = S.reconstruct(P25, D, 1e-3, OMEGA, "tsvd")
    np.testing.assert_array_equal(one.rho, S.reconstruct(P25, D, np.full(25, 1e-3), OMEGA, "tsvd").rho)
    np.testing.assert_array_equal(one.rho, S.reconstruct(P25, D, np.array([1e-3]), OMEGA, "tsvd").rho)
    col = S.reconstruct(P25[:, None], D[:, None], sigma[None, :], OMEGA, "tsvd")
    np.testing.assert_array_equal(col.rho, S.reconstruct(P25, D, sigma, OMEGA, "tsvd").rho)


def test_regulariser_matrix_is_invertible_second_difference():
    L = classical.regulariser_matrix(6, "second-derivative")
    assert np.linalg.matrix_rank(L) == 6
    np.testing.assert_array_equal(L[2, 1:4], [1, -2, 1])


P100 = 0.2 * np.arange(1, 101)


@pytest.mark.parametrize("alpha", ["marginal", "chi2-kink"])
def test_maxent_recovers_a_broad_peak(alpha):
    D, sigma = data(1e-4)
    res = S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha=alpha)
    truth = mock.breit_wigner()(OMEGA)
    assert (res.rho > 0).all()
    assert np.linalg.norm(res.rho - truth) / np.linalg.norm(truth) < 0.5
    assert abs(OMEGA[np.argmax(res.rho)] - OMEGA[np.argmax(truth)]) < 0.2
    assert res.band.shape == res.rho.shape and (res.band > 0).all()
    assert 0.3 < res.chi2_per_point < 20


def test_maxent_resolves_two_peaks_and_weights_alpha_by_its_posterior():
    spec = 0.8 * mock.breit_wigner(1, 2, 0.5) + mock.breit_wigner(1, 5, 0.5)
    D0 = mock.propagator(spec, P100)
    sigma = mock.relative_noise_sigma(D0, P100, 1e-4)
    res = S.reconstruct(P100, mock.add_noise(D0, sigma, 1), sigma, OMEGA, "mem", alpha="marginal")
    w = res.diagnostics["weights"]
    assert w.sum() == pytest.approx(1.0) and w.max() < 1.0
    rho = res.rho
    maxima = [i for i in range(1, len(rho) - 1) if rho[i] > rho[i - 1] and rho[i] > rho[i + 1]]
    peaks = sorted(OMEGA[i] for i in sorted(maxima, key=lambda i: -rho[i])[:2])  # the two largest
    assert abs(peaks[0] - 2.0) < 0.4 and abs(peaks[1] - 5.0) < 0.6, peaks
    truth = spec(OMEGA)
    assert ((rho - truth) ** 2).sum() < 5.0


def test_maxent_user_default_model():
    D, sigma = data(1e-3)
    with pytest.raises(ValueError, match="default_model"):
        S.reconstruct(P25, D, sigma, OMEGA, "mem", default_model=-np.ones(500))
    res = S.reconstruct(P25, D, sigma, OMEGA, "mem", default_model=np.full(500, 0.05))
    assert res.diagnostics["default_level"] == pytest.approx(0.05)
    # the model is the prior: one shaped like the truth beats the flat one, a wrong one loses
    truth = mock.breit_wigner()(OMEGA)
    err = {}
    for name, m in (("flat", None), ("truth-like", np.maximum(truth, 1e-4)),
                    ("wrong", np.maximum(mock.breit_wigner(1.0, 8.0, 0.5)(OMEGA), 1e-4))):
        err[name] = ((S.reconstruct(P25, D, sigma, OMEGA, "mem", default_model=m).rho - truth) ** 2).sum()
    assert err["truth-like"] < 0.5 * err["flat"] and err["wrong"] > err["flat"], err


@pytest.mark.filterwarnings("ignore::lftaccel.spectral.MisfitWarning")  # alpha = 1e12 is far from the data, as meant
def test_maxent_fixed_alpha_follows_the_path_and_orders_chi2():
    """A numeric alpha is reached along the large -> small alpha path: from a cold start at the
    default model Bryan's Newton stopped far from the maximum on precise data. Larger alpha
    means more entropy and a larger chi^2; the largest gives back the default model."""
    D, sigma = data(1e-4)
    fits = {a: S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha=a) for a in (1e12, 1e3, 1.0)}
    path = fits[1.0].diagnostics["alphas"]
    assert path[0] == pytest.approx(1e6) and path[-1] == pytest.approx(1.0) and len(path) == 40
    assert fits[1e12].chi2 > fits[1e3].chi2 > fits[1.0].chi2
    m = fits[1e12].diagnostics["default_level"]
    assert np.abs(fits[1e12].rho / m - 1).max() < 0.05
    assert fits[1.0].chi2_per_point < 3 and fits[1.0].diagnostics["alpha"] == 1.0
    truth = mock.breit_wigner()(OMEGA)
    assert ((fits[1.0].rho - truth) ** 2).sum() < 1.5


def test_maxent_converges_on_precise_data():
    """Lorentzian, N_p = 25, eps = 1e-5 (b ~ 1e9 in whitened units). Bryan's Newton iteration
    in singular space stalled here (no alpha converged; chi^2/N 13, sum (Delta rho)^2 2.9); the
    Newton iteration on the dual converges."""
    spec = mock.lorentzian(1.0, 4.0, 0.3)
    D0 = mock.propagator(spec, P25)
    sigma = mock.relative_noise_sigma(D0, P25, 1e-5)
    D = mock.add_noise(D0, sigma, 5000)
    prob = S.Problem.build(P25, D, sigma, OMEGA)
    dw = S.kernels.grid_weights(OMEGA)
    for alpha in (100.0, 1.0, 1e-4):
        res = S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha=alpha)
        assert res.diagnostics["converged"]
        # the residual of rho is the dual's: a solve that stopped on the Newton decrement alone
        # left |A rho - b - lam| ~ 100 at alpha = 1e-4 (chi^2/N 364 against |lam|^2/N 0.53)
        assert res.chi2 == pytest.approx(res.diagnostics["lam"] @ res.diagnostics["lam"], rel=0.02)
        # Ten more Newton steps on the dual, solved here as least squares (min |B^T x|^2 +
        # |x - grad|^2), move rho by nothing that matters. (The force balance alpha dw ln(rho/m)
        # = -A^T (A rho - b) is no test here: A^T amplifies the rounding of A rho - b ~ 1e9.)
        lam, c, m = res.diagnostics["lam"], alpha * dw, res.diagnostics["default_level"]
        for _ in range(10):
            rho = m * np.exp(-(prob.A.T @ lam) / c)
            grad = prob.A @ rho - prob.b - lam
            stacked = np.vstack([(prob.A * np.sqrt(rho / c)).T, np.eye(prob.n)])
            lam = lam + np.linalg.lstsq(stacked, np.concatenate([np.zeros(len(OMEGA)), grad]), rcond=None)[0]
        rho = m * np.exp(-(prob.A.T @ lam) / c)
        assert np.abs(rho - res.rho).max() < 1e-7 * rho.max()
        if alpha >= 1:  # below, chi^2 of an unpolished iterate scatters with rounding (see mem._solve)
            assert prob.chi2(rho) == pytest.approx(res.chi2, rel=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        marginal = S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha="marginal")
    assert marginal.diagnostics["converged"] and 0.3 < marginal.chi2_per_point < 1.5
    assert ((marginal.rho - spec(OMEGA)) ** 2).sum() < 1.0  # 0.68 measured


# log10 alpha and log10 chi^2 along the scan of the earlier, stalled MEM solver on the
# Lorentzian, N_p = 25, eps = 1e-5: no plateau. A free logistic fit put the kink at alpha ~ 1e45.
STALLED_ALPHAS = np.logspace(6, -4, 40)
STALLED_CHI2 = np.array([8.806e8, 3.417e8, 9.671e7, 5.227e7, 2.207e7, 8.396e6, 2.93e6, 9.264e5, 2.841e5, 1.21e5,
                         8.904e4, 7.042e4, 6.57e4, 5.681e4, 4.063e4, 3.732e4, 3.201e4, 2.444e4, 1.607e4, 1.484e4,
                         1.306e4, 1.087e4, 8810, 7418, 6364, 4611, 4214, 3540, 2523, 1389, 1232, 1013, 764.3,
                         566.3, 463.1, 395.4, 382.5, 360.6, 323.9, 316.0])


def test_maxent_band_is_the_propagated_noise():
    """At a fixed alpha the band is the linear response of the maximum to the whitened data:
    it equals the finite-difference Jacobian's row norms, and the spread of rho over noise
    seeds (the posterior width it replaced was ~20x that spread)."""
    import copy

    from lftaccel.spectral import mem
    from lftaccel.spectral.kernels import grid_weights

    D0 = mock.bw_propagator(P25)
    sigma = mock.relative_noise_sigma(D0, P25, 1e-3) + 1e-12
    res = S.reconstruct(P25, mock.add_noise(D0, sigma, 0), sigma, OMEGA, "mem", alpha=10.0)
    prob = S.Problem.build(P25, mock.add_noise(D0, sigma, 0), sigma, OMEGA)
    m, lam, h = np.full(len(OMEGA), res.diagnostics["default_level"]), res.diagnostics["lam"], 1e-3
    J = []
    for i in range(len(P25)):
        rho = []
        for sign in (1, -1):
            q = copy.copy(prob)
            q.b = prob.b.copy()
            q.b[i] += sign * h
            _, r, ok, _ = mem._solve(q, m, grid_weights(OMEGA), 10.0, lam)
            assert ok
            rho.append(r)
        J.append((rho[0] - rho[1]) / (2 * h))
    np.testing.assert_allclose(res.band, np.sqrt(np.sum(np.square(J), axis=0)), rtol=1e-6, atol=1e-6 * res.band.max())
    rhos = [S.reconstruct(P25, mock.add_noise(D0, sigma, s), sigma, OMEGA, "mem", alpha=10.0).rho for s in range(1, 41)]
    ratio = np.sqrt(np.mean(res.band ** 2) / np.mean(np.std(rhos, axis=0, ddof=1) ** 2))
    assert 0.75 < ratio < 1.3, ratio  # 1.01 measured


def test_maxent_chi2_kink_fit():
    """The kink of a clean logistic is d - 2.5 / c; on a curve without a plateau the bounded fit
    keeps the step's centre inside the scan, and the kink below the steep fall."""
    x = np.log10(np.logspace(6, -4, 40))
    y = 0.5 + 7.0 / (1 + np.exp(-1.3 * (x - 3.0)))
    x_kink, fallback = S.mem._kink(x, y)
    assert not fallback and x_kink == pytest.approx(3.0 - 2.5 / 1.3, abs=1e-6)
    x_kink, fallback = S.mem._kink(np.log10(STALLED_ALPHAS), np.log10(STALLED_CHI2))
    assert not fallback and x_kink < 3.5  # the free fit: 45, clipped to 6 (rho = the default model)


def test_maxent_posterior_edge_warnings(monkeypatch):
    """The marginal posterior must fall off inside the scan: still rising at the bottom of
    alpha_range (not allowed to continue below) or at its top, it warns."""
    D, sigma = data(1e-4)
    kink = S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha="chi2-kink", alpha_range=(1e3, 1e6))
    fixed = S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha=kink.diagnostics["alpha"], alpha_range=(1e3, 1e6))
    np.testing.assert_allclose(kink.rho, fixed.rho, rtol=1e-6)
    monkeypatch.setattr(S.mem, "EXTEND_DECADES", 0)
    with pytest.warns(RuntimeWarning, match="smallest alpha"):
        S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha="marginal", alpha_range=(1e3, 1e6))
    with pytest.warns(RuntimeWarning, match="largest alpha"):
        S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha="marginal", alpha_range=(1e-4, 1e-1))


@pytest.mark.parametrize("kw, name", [({"alpha": -1.0}, "alpha"), ({"alpha": "bryan"}, "alpha"),
                                      ({"alpha": True}, "alpha"), ({"n_alpha": 3}, "n_alpha"),
                                      ({"alpha_range": (1.0, 0.1)}, "alpha_range"),
                                      ({"alpha_range": (0.0, 1.0)}, "alpha_range"),
                                      ({"alpha_range": (1.0, 2.0, 3.0)}, "alpha_range"),
                                      ({"alpha": 10**400}, "alpha"), ({"alpha": np.bool_(True)}, "alpha")])
def test_maxent_bad_options(kw, name):
    D, sigma = data(1e-3)
    with pytest.raises(ValueError, match=name):
        S.reconstruct(P25, D, sigma, OMEGA, "mem", **kw)


def test_maxent_alpha_accepts_numpy_numbers():
    D, sigma = data(1e-3)
    for alpha in (np.int64(5), np.array(5.0)):
        assert S.reconstruct(P25, D, sigma, OMEGA, "mem", alpha=alpha).diagnostics["alpha"] == 5.0


def test_linear_quadrature_beats_the_riemann_sum():
    """The hat-function forward map integrates the kernel against piecewise-linear rho
    accurately; the Riemann sum's error at small p is larger."""
    bw = mock.breit_wigner()
    exact = mock.propagator(bw, P25, omega_max=20.0) - mock.propagator(bw, P25, omega_max=0.04)
    err = {q: np.abs(S.kernels.forward_matrix(P25, OMEGA, quadrature=q) @ bw(OMEGA) / exact - 1).max()
           for q in ("linear", "riemann")}
    assert err["linear"] < 1e-4 and err["linear"] < err["riemann"] / 5, err
    with pytest.raises(ValueError, match="quadrature"):
        S.kernels.forward_matrix(P25, OMEGA, quadrature="simpson")


def test_linear_quadrature_on_a_grid_from_zero():
    """On a grid from omega = 0 the first cell holds the Kallen-Lehmann peak at w = p for p
    below its width: a graded rule there gives the hat's integral to 1e-12 (one 8-point rule
    was 4 % off at p = 0.001). A kernel that diverges at 0 (finite T, or p = 0) is refused:
    the hat at 0 has no finite integral against it."""
    from scipy import integrate

    omega = np.linspace(0, 20, 501)
    p = np.array([0.001, 0.01, 0.5])
    M = S.kernels.forward_matrix(p, omega)
    h = omega[1]
    for i, pi in enumerate(p):
        exact, _ = integrate.quad(lambda w, pi=pi: S.kallen_lehmann([pi], [w])[0, 0] * (1 - w / h), 0, h,
                                  points=[pi] if pi < h else None, epsabs=0, epsrel=1e-13, limit=200)
        assert abs(M[i, 0] / exact - 1) < 1e-12
    with pytest.raises(ValueError, match="diverges at omega = 0"):
        S.kernels.forward_matrix([0.0, 1.0], omega)
    with pytest.raises(ValueError, match="diverges at omega = 0"):
        S.kernels.forward_matrix([0.5], omega, S.finite_temperature(1.0))


def test_user_kernel_must_return_n_p_by_n_omega():
    transposed = lambda p, w: S.kallen_lehmann(p, w).T  # noqa: E731
    for quadrature in ("linear", "riemann"):
        with pytest.raises(ValueError, match=r"returned shape \(\d+, 25\); a callable kernel is called with the "
                                             r"1-d arrays p \(25,\) and omega \(\d+,\) and must return the "
                                             r"\(25, \d+\) matrix"):
            S.kernels.forward_matrix(P25, OMEGA, transposed, quadrature)
    # an elementwise formula fails inside the user's function: the message says what is expected
    elementwise = lambda p, w: w / (np.pi * (w**2 + p**2))  # noqa: E731
    with pytest.raises(ValueError, match=r"the kernel raised ValueError: operands could not be broadcast.*"
                                         r"lambda p, w: f\(p\[:, None\], w\[None, :\]\)"):
        S.kernels.forward_matrix(P25, OMEGA, elementwise, "riemann")
    outer = lambda p, w: elementwise(p[:, None], w[None, :])  # noqa: E731
    np.testing.assert_allclose(S.kernels.forward_matrix(P25, OMEGA, outer), S.kernels.forward_matrix(P25, OMEGA),
                               rtol=1e-13)
    # a matrix holds its own weights: another quadrature is refused, not ignored
    with pytest.raises(ValueError, match="quadrature='riemann' does not apply to a kernel matrix"):
        S.kernels.forward_matrix(P25, OMEGA, np.ones((25, 500)), "riemann")


def test_finite_temperature_kernel_is_named_and_refuses_negative_frequencies():
    K = S.finite_temperature(1 / 16)
    tau = np.arange(1.0, 16.0)
    with pytest.raises(ValueError, match=r"omega must be >= 0 for finite_temperature\(T=0.0625\) .* "
                                         r"got omega\[0\] = -5"):
        S.kernels.forward_matrix(tau, np.linspace(-5.0, 5.0, 41), K)
    with pytest.raises(ValueError, match=r"diverges at omega = 0 \(tau = 1\)"):
        S.kernels.forward_matrix(tau, np.linspace(0.0, 5.0, 41), K)
    with pytest.raises(TypeError, match=r"needs its temperature: pass finite_temperature\(T\)"):
        S.kernels.forward_matrix(tau, OMEGA, S.finite_temperature)
    with pytest.raises(ValueError, match=r"the finite-temperature kernel is finite_temperature\(T\)"):
        S.kernels.forward_matrix(tau, OMEGA, "finite-temperature")
    # the normalisation as documented: at T -> 0 the Fourier transform of the kernel in tau is
    # 2 pi times the Kallen-Lehmann kernel, so that of G(tau) is 2 pi D(p)
    from scipy.integrate import quad

    K0, p = S.finite_temperature(1 / 200), 0.5
    for w in (0.5, 2.0, 5.0):
        ft = 2 * quad(lambda t, w=w: np.cos(p * t) * K0(np.array([t]), np.array([w]))[0, 0], 0, 100, limit=400)[0]
        assert ft == pytest.approx(2 * np.pi * S.kallen_lehmann(p, w), rel=1e-8)


def test_every_method_warns_when_its_result_misses_the_data():
    D, sigma = data(1e-3)
    low = np.linspace(0.04, 0.3, 50)  # stops far below the spectrum at omega ~ 2
    for method in ("tsvd", "tikhonov", "mem"):
        with pytest.warns(S.MisfitWarning, match=rf"{method}: chi\^2/N_p = .*does not reproduce the data"):
            res = S.reconstruct(P25, D, sigma, low, method)
        assert res.chi2_per_point > S.CHI2_MISFIT
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.MisfitWarning)
        assert S.reconstruct(P25, D, sigma, OMEGA, "tikhonov").chi2_per_point < S.CHI2_MISFIT


def test_mock_propagator_refuses_a_divergent_integral():
    """At p = 0 the Kallen-Lehmann kernel is 1/(pi w): D(0) diverges where rho(0) != 0, and
    the quadrature must say so instead of returning quad's last estimate."""
    with pytest.raises(ValueError, match="does not converge"):
        mock.propagator(mock.lorentzian(), [0.0, 1.0])
    # rho ~ w at 0 (Breit-Wigner): finite, and the closed form
    np.testing.assert_allclose(mock.propagator(mock.breit_wigner(), [0.0]), mock.bw_propagator(np.zeros(1)),
                               rtol=1e-11)
    with pytest.raises(ValueError, match="mu must be finite"):
        mock.gaussian(mu=float("nan"))


def test_spectral_command(tmp_path, capsys):
    from lftaccel.cli import main

    D, sigma = data(1e-3)
    csv = tmp_path / "data.csv"
    np.savetxt(csv, np.column_stack([P25, D, sigma]), delimiter=",", header="p,D,sigma", comments="")
    out = tmp_path / "rho.csv"
    assert main(["spectral", str(csv), "--method", "tsvd", "-o", str(out), "--plot", str(tmp_path / "r.png")]) == 0
    rho = np.genfromtxt(out, delimiter=",", names=True)
    assert rho.dtype.names == ("omega", "rho", "rho_err") and len(rho) == 500
    assert (tmp_path / "r.png").exists()
    # correlator samples: mean and full covariance
    rng = np.random.default_rng(0)
    samples = mock.bw_propagator(P25) + 1e-3 * rng.standard_normal((200, 25)) * mock.bw_propagator(P25)
    scsv = tmp_path / "samples.csv"
    np.savetxt(scsv, np.vstack([P25, samples]), delimiter=",")
    assert main(["spectral", str(scsv), "--samples", "--method", "tsvd", "-o", str(out), "--overwrite"]) == 0
    rho = np.genfromtxt(out, delimiter=",", names=True)
    hartlap = (200 - 1) / (200 - 25 - 2)  # the unbiased inverse covariance
    want = S.reconstruct(P25, samples.mean(0), None, OMEGA, "tsvd", cov=np.cov(samples.T) / 200 * hartlap)
    np.testing.assert_allclose(rho["rho"], want.rho, rtol=1e-6, atol=1e-9)
    diagonal = S.reconstruct(P25, samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples)), OMEGA, "tsvd")
    assert np.abs(rho["rho"] - diagonal.rho).max() > 1e-3  # the off-diagonal covariance enters


def test_samples_covariance_gives_the_truth_its_expected_chi2(tmp_path):
    """chi^2 of the true propagator under the covariance read from N correlated samples of n
    points averages n: the inverse of a sample covariance overestimates the true inverse by
    (N - 1) / (N - n - 2), which the reader takes out (at N = 2n the raw one gave ~2.4 n)."""
    n, N, reps = 8, 16, 300
    rng = np.random.default_rng(3)
    truth = np.linspace(1.0, 0.2, n)
    C = 1e-4 * 0.6 ** np.abs(np.subtract.outer(np.arange(n), np.arange(n)))  # correlated points
    L = np.linalg.cholesky(C)
    chi2 = []
    for _ in range(reps):
        rows = truth + rng.standard_normal((N, n)) @ L.T
        csv = tmp_path / "s.csv"
        np.savetxt(csv, np.vstack([np.arange(1, n + 1), rows]), delimiter=",")
        with pytest.warns(UserWarning, match="poorly determined"):  # N = 2n < 4n
            _, mean, _, cov = S.read_propagator(csv, samples=True)
        d = mean - truth
        chi2.append(d @ np.linalg.solve(cov, d))
    chi2 = np.array(chi2)
    assert abs(chi2.mean() - n) < 4 * chi2.std() / np.sqrt(reps)


def test_covariance_of_mean_refuses_what_cannot_give_one():
    with pytest.raises(ValueError, match="samples must be a 2-d array"):
        S.covariance_of_mean(np.ones(5))
    with pytest.raises(ValueError, match="5 samples cannot estimate the inverse covariance of 3 points"):
        S.covariance_of_mean(np.random.default_rng(0).standard_normal((5, 3)))


@pytest.mark.parametrize("rows,message", [
    ("p,D,sigma\n1,2,0.1\n2,1,-0.1\n3,0.5,0.1\n", "sigma must be finite and > 0"),
    ("p,D,sigma\n1,2,0.1\n2,nan,0.1\n3,0.5,0.1\n", "line 3: 'nan' is not finite (NaN or inf)"),
    ("p,D,sigma\n1,2,0.1\n2,1,0.1\n", "at least 3"),
    ("p,D,sigma\n1,2,0.1\n2,1\n3,0.5,0.1\n", "different lengths"),
])
def test_spectral_command_bad_data(tmp_path, capsys, rows, message):
    from lftaccel.cli import main

    csv = tmp_path / "bad.csv"
    csv.write_text(rows)
    assert main(["spectral", str(csv), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_spectral_command_reads_columns_by_their_header(tmp_path):
    """The header names the columns (any order, any case); a file without one is refused, not
    read with its first data row taken for the header."""
    from lftaccel.cli import main

    D, sigma = data(1e-3)
    outs = []
    # plain; reordered and quoted; numpy.savetxt's default '# ' header with a byte-order mark and
    # trailing comments
    for k, (header, cols, comments) in enumerate((("p,D,sigma", (P25, D, sigma), ""),
                                                 ('"sigma", "p", "d"', (sigma, P25, D), ""),
                                                 ("p,D,sigma", (P25, D, sigma), "# "))):
        csv, out = tmp_path / f"d{k}.csv", tmp_path / f"o{k}.csv"
        np.savetxt(csv, np.column_stack(cols), delimiter=",", header=header, comments=comments)
        if comments:
            lines = csv.read_text().splitlines()
            csv.write_text("\ufeff" + "\n".join(lines[:3] + [lines[3] + "  # a note"] + lines[4:]) + "\n",
                           encoding="utf-8")
        assert main(["spectral", str(csv), "--method", "tsvd", "-o", str(out)]) == 0
        outs.append(np.genfromtxt(out, delimiter=",", names=True)["rho"])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("text,samples,message", [
    ("1,2,0.1\n2,1,0.1\n3,0.5,0.1\n4,0.2,0.1\n", False,
     "must be the header naming the columns p, D, sigma (or tau, G, sigma), got numbers"),
    ("p,D,err\n1,2,0.1\n2,1,0.1\n3,0.5,0.1\n", False, "must be the header"),
    ("p,D,sigma,x\n1,2,0.1,0\n2,1,0.1,0\n3,0.5,0.1,0\n", False, "must be the header"),
    ("", False, "no data"),
    ("p,D,sigma\n", False, "a header and no data"),
    ("p,D,sigma\n1,2,0.1\n2,x,0.1\n3,0.5,0.1\n", False, "line 3: 'x' is not a number"),
    ("1,2,3\n2,1,0.5\n", False, "or if the rows are samples of D(p) after a row of momenta"),
    ("p,D,sigma\n1,2,0.1\n2,1,0.1\n3,0.5,0.1\n", True, "is not a number (a samples file starts with its row"),
    ("# p,D,sigma\n" + "".join(f"{k},{1 / k},0.01\n" for k in range(1, 9)), True,
     "line 1: the header names the columns p, D, sigma: read the file without samples=True (--samples)"),
    ("1,2,3\n" + "1,0.5,inf\n" * 7, True, "line 2: 'inf' is not finite"),
    # every sample equal at p = 2: that point has no error
    ("1,2,3\n" + "".join(f"{1 + 0.01 * k},{0.7 + 0.02 * k},{0.3 - 0.001 * k * k}\n" for k in range(5)), True,
     "5 samples cannot estimate the inverse covariance of 3 points (need at least 6"),
    ("1,2,3\n" + "".join(f"{1 + 0.01 * k},0.7,{0.3 - 0.001 * k * k}\n" for k in range(6)), True,
     "do not vary at p = 2"),
])
def test_spectral_command_bad_files(tmp_path, capsys, text, samples, message):
    from lftaccel.cli import main

    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    assert main(["spectral", str(csv), "-o", str(tmp_path / "o.csv")] + (["--samples"] if samples else [])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_spectral_command_refuses_before_reading_the_data(tmp_path, capsys):
    from lftaccel.cli import main

    (tmp_path / "rho.csv").write_text("an earlier result")
    assert main(["spectral", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "rho.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read " in err[0] and "missing.csv: no such file" in err[0], err

    p = np.array([1.0, 2.0, 4.0])  # few samples: reading them warns
    samples = mock.bw_propagator(p) * (1 + 1e-3 * np.random.default_rng(1).standard_normal((10, 3)))
    csv = tmp_path / "samples.csv"
    np.savetxt(csv, np.vstack([p, samples]), delimiter=",")
    assert main(["spectral", str(csv), "--samples", "-o", str(csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input data file" in err[0], err


def test_spectral_command_warns_in_one_line_of_few_samples(tmp_path, capsys):
    from lftaccel.cli import main

    rng = np.random.default_rng(1)
    p = np.array([1.0, 2.0, 4.0])
    samples = mock.bw_propagator(p) * (1 + 1e-3 * rng.standard_normal((10, 3)))  # N = 10 < 4 n
    csv = tmp_path / "samples.csv"
    np.savetxt(csv, np.vstack([p, samples]), delimiter=",")
    assert main(["spectral", str(csv), "--samples", "--method", "tsvd", "-o", str(tmp_path / "o.csv")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lftaccel spectral: warning: 10 samples for 3 points"), err


@pytest.mark.parametrize("args,message", [
    (["-o", "{tmp}/missing/rho.csv"], "does not exist"),
    (["-o", "{tmp}"], "is a directory"),
    (["-o", "{tmp}/rho.csv", "--plot", "{tmp}/rho.xyz"], "must end in one of"),
    (["-o", "{tmp}/rho.csv", "--plot", "{tmp}/missing/rho.png"], "does not exist"),
    (["-o", "{tmp}/rho.csv", "--omega-max", "inf"], "--omega-max must be finite and above --omega-min 0.04"),
    (["-o", "{tmp}/rho.csv", "--omega-min", "5", "--omega-max", "3"], "above --omega-min 5"),
    (["-o", "{tmp}/rho.csv", "--omega-min", "-1"], "--omega-min must be finite and >= 0"),
    (["-o", "{tmp}/rho.csv", "--n-omega", "2"], "--n-omega must be at least 3"),
    (["-o", "{tmp}/rho.png", "--plot", "{tmp}/rho.png"], "is the -o file"),
    (["-o", "{tmp}/rho.csv", "--plot", "{tmp}/./rho.csv"], "is the -o file"),
    (["-o", "{tmp}/data.csv"], "is the input data file"),
    (["-o", "{tmp}/data.csv", "--overwrite"], "is the input data file"),
    (["-o", "{tmp}/rho.csv", "--plot", "{tmp}/data.csv"], "is the input data file"),
])
def test_spectral_command_checks_its_outputs_before_the_fit(tmp_path, capsys, args, message):
    from lftaccel.cli import main

    D, sigma = data(1e-3)
    csv = tmp_path / "data.csv"
    np.savetxt(csv, np.column_stack([P25, D, sigma]), delimiter=",", header="p,D,sigma", comments="")
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["spectral", str(csv), "--method", "tsvd", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rho.csv").exists()
    assert csv.read_text().startswith("p,D,sigma\n")  # the data untouched


def test_spectral_command_replaces_a_result_only_when_told(tmp_path, capsys):
    from lftaccel.cli import main

    D, sigma = data(1e-3)
    csv, out = tmp_path / "data.csv", tmp_path / "rho.csv"
    np.savetxt(csv, np.column_stack([P25, D, sigma]), delimiter=",", header="p,D,sigma", comments="")
    out.write_text("an earlier result\n")
    assert main(["spectral", str(csv), "--method", "tsvd", "-o", str(out)]) == 2
    assert "rho.csv exists: pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "an earlier result\n"
    args = ["spectral", str(csv), "--method", "tsvd", "-o", str(out), "--overwrite", "--omega-min", "0.5",
            "--omega-max", "10", "--n-omega", "96"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""  # a fit within the errors: no warning
    rho = np.genfromtxt(out, delimiter=",", names=True)
    np.testing.assert_allclose(rho["omega"], np.linspace(0.5, 10, 96))


def test_spectral_command_warns_when_rho_misses_the_data(tmp_path, capsys):
    from lftaccel.cli import main

    D, sigma = data(1e-3)  # a spectrum at omega ~ 2, and a grid that stops below it
    csv = tmp_path / "data.csv"
    np.savetxt(csv, np.column_stack([P25, D, sigma]), delimiter=",", header="p,D,sigma", comments="")
    assert main(["spectral", str(csv), "--method", "tsvd", "-o", str(tmp_path / "rho.csv"), "--omega-max", "0.3"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lftaccel spectral: warning: chi2/N_p = "), err
    assert "does not reproduce the data" in err[0] and "(0.04 .. 0.3)" in err[0]


def test_kallen_lehmann_needs_non_negative_momenta_and_frequencies():
    D, sigma = data()
    with pytest.raises(ValueError, match="p must be >= 0"):
        S.reconstruct(-P25, D, sigma, OMEGA, "tsvd")
    with pytest.raises(ValueError, match="omega must be >= 0"):
        S.reconstruct(P25, D, sigma, np.linspace(-1, 20, 500), "tsvd")
    with pytest.raises(ValueError, match="below 1e150"):
        S.reconstruct(P25, D, sigma, np.linspace(0.04, 1e200, 50), "tsvd")
    with pytest.raises(ValueError, match="quadrature"):
        S.reconstruct(P25, D, sigma, OMEGA, "tsvd", kernel=S.kernels.forward_matrix(P25, OMEGA),
                      quadrature="simpson")


def test_nn_list_recovers_a_broad_peak_with_an_ensemble_band():
    D, sigma = data(1e-3)
    res = S.reconstruct(P25, D, sigma, OMEGA, "nn", iters=1000, stages=2, n_ensemble=2)
    truth = mock.breit_wigner()(OMEGA)
    assert (res.rho >= 0).all() and res.rho[0] < 0.05
    assert np.linalg.norm(res.rho - truth) / np.linalg.norm(truth) < 0.5
    assert abs(OMEGA[np.argmax(res.rho)] - OMEGA[np.argmax(truth)]) < 0.3
    assert res.band is not None and (res.band > 0).all() and res.diagnostics["members"].shape == (2, 500)
    # the mean of 2 members on resampled data: their spread, and 1/2 of the resampling noise besides
    np.testing.assert_allclose(res.band, res.diagnostics["members"].std(0, ddof=1) * np.sqrt(1.5), rtol=1e-12)
    assert res.chi2_per_point < 10


def test_nn_options_are_checked():
    D, sigma = data(1e-3)
    for kwargs, message in (({"depth": 4}, "depth"), ({"activation": "relu"}, "activation"),
                            ({"optimizer": "sgd"}, "optimizer"), ({"n_ensemble": 0}, "n_ensemble"),
                            ({"smoothness": "tv"}, "smoothness"), ({"depth": 1, "width": 0}, "width"),
                            ({"depth": 1, "width": 2.5}, "width"), ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"),
                            ({"f0": float("nan")}, "f0"), ({"seed": -1}, "seed"), ({"resample": "no"}, "resample"),
                            ({"progress": "x"}, "progress"), ({"smooth": "1"}, "smooth"),
                            ({"n_ensemble": 2, "resample": False}, "all would be the same fit")):
        with pytest.raises(ValueError, match=message):
            S.reconstruct(P25, D, sigma, OMEGA, "nn", iters=1, **kwargs)
    with pytest.raises(ValueError, match="width"):
        S.reconstruct(P25, D, sigma, OMEGA, "p2p", iters=1, width=0)


def test_nn_fits_are_reproducible_and_leave_the_caller_alone():
    """A network fit gives the same rho whatever torch's thread count (the fits run on one:
    L-BFGS amplified a matrix product's last-bit differences into chi^2 16.1 against 20.5),
    and leaves the caller's random generator and thread count as they were."""
    import torch

    D, sigma = data(1e-3)
    short = dict(depth=1, iters=200, stages=2, n_ensemble=2)
    threads = torch.get_num_threads()
    rhos = []
    for n in (2, 1):
        torch.set_num_threads(n)
        torch.manual_seed(123)
        rhos.append(S.reconstruct(P25, D, sigma, OMEGA, "nn", **short).rho)
        assert torch.get_num_threads() == n
        after = torch.rand(3)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(3))
    torch.set_num_threads(threads)
    np.testing.assert_array_equal(rhos[0], rhos[1])


def test_nn_divergence_is_an_error_and_a_fit_far_off_warns():
    D, sigma = data(1e-3)
    with pytest.raises(FloatingPointError, match="lower lr"):
        S.reconstruct(P25, D, sigma, OMEGA, "nn", depth=1, optimizer="adam", lr=1e300, iters=50, stages=1,
                      n_ensemble=1)
    with pytest.warns(S.MisfitWarning, match="does not reproduce the data"):
        S.reconstruct(P25, D, sigma, OMEGA, "nn", iters=5, stages=1, n_ensemble=1)
    for scale in (0.0, -1.0, float("nan"), float("inf"), "4", True, 1e-320):
        with pytest.raises(ValueError, match="scale"):
            S.reconstruct(P25, D, sigma, OMEGA, "p2p", iters=1, scale=scale)


@pytest.mark.parametrize("method,kwargs", [("nn", {"depth": 2, "activation": "linear"}),
                                           ("nn", {"depth": 1, "optimizer": "adam"}), ("p2p", {"depth": 2})])
def test_network_representations_train(method, kwargs):
    """Training lowers chi^2 well below that of the same network untrained (the same seed
    builds the same initial weights as the fit's first member)."""
    import torch

    D, sigma = data(1e-3)
    prob = S.Problem.build(P25, D, sigma, OMEGA)
    torch.manual_seed(0)
    if method == "nn":
        untrained = S.nn.ListNet(len(OMEGA), kwargs["depth"], 64, kwargs.get("activation", "elu"), -3.0)
    else:
        untrained = S.nn.PointNet(kwargs["depth"], 64, OMEGA.max() / 5)
    with torch.no_grad():
        start = prob.chi2(untrained(torch.as_tensor(OMEGA)).numpy())
    res = S.reconstruct(P25, D, sigma, OMEGA, method, iters=150, stages=1, n_ensemble=1, **kwargs)
    assert (res.rho >= 0).all() and res.band is None
    if method == "p2p":  # the default input scale follows the grid
        assert res.diagnostics["scale"] == OMEGA.max() / 5
    # chi^2 starts at ~1e11. In 150 iterations L-BFGS brings it down by > 1e7 (measured 5e-8,
    # 2e-10 of the start); Adam on this stiff chi^2 creeps (1e-4, chi^2/N still ~6e5: why
    # L-BFGS is the default).
    assert res.chi2 < (1e-2 if kwargs.get("optimizer") == "adam" else 1e-6) * start


def test_p2p_warmup_gets_past_the_stiff_point():
    """At eps = 1e-4 the point at p = 0.001 has sigma ~1e-3 of its neighbours'. From its random
    start p2p fits that point and stalls far above the data (measured chi^2/N 123); the warm-up
    on the softened covariance reaches the data (1.24) and rho (sum (Delta rho)^2 1.9 -> 0.20)."""
    D0 = mock.bw_propagator(P25)
    sigma = mock.relative_noise_sigma(D0, P25, 1e-4)
    D = mock.add_noise(D0, sigma, 0)
    truth = mock.breit_wigner()(OMEGA)
    small = dict(depth=2, width=32, iters=500, stages=2, n_ensemble=1, resample=False)
    cold = S.reconstruct(P25, D, sigma, OMEGA, "p2p", warmup=False, **small)
    warm = S.reconstruct(P25, D, sigma, OMEGA, "p2p", **small)
    assert cold.chi2_per_point > 30 and "warmup_history" not in cold.diagnostics
    assert warm.chi2_per_point < 3 and len(warm.diagnostics["warmup_history"]) == 1
    assert ((warm.rho - truth) ** 2).sum() < 0.5 < ((cold.rho - truth) ** 2).sum()
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="warmup"):
            S.reconstruct(P25, D, sigma, OMEGA, "p2p", warmup=bad, iters=1)


def test_neural_fits_show_progress(capsys):
    """A reconstruction of minutes shows a bar: member, stage weight and chi^2/N_p. The command
    turns it on for nn and p2p (--no-progress off), the library leaves it off."""
    D, sigma = data(1e-2)
    short = dict(iters=50, stages=1, n_ensemble=2)
    quiet = S.reconstruct(P25, D, sigma, OMEGA, "nn", **short)
    assert "member" not in capsys.readouterr().err
    shown = S.reconstruct(P25, D, sigma, OMEGA, "nn", progress=True, **short)
    err = capsys.readouterr().err
    assert "nn member 2/2" in err and "chi2_per_point" in err
    np.testing.assert_array_equal(shown.rho, quiet.rho)


def test_list_warms_up_only_a_member_that_ends_above_its_target():
    """The list's default warmup='auto': where the plain fit meets the discrepancy target the
    result is the plain fit's, bit for bit; where it ends above (eps = 1e-5, a short schedule)
    the member is fitted again after the warm-up and kept where it meets the target (measured 9.0e5 ->
    23 against a target of 39)."""
    D0 = mock.bw_propagator(P25)
    short = dict(iters=500, stages=2, n_ensemble=1, resample=False)
    for eps, refitted in ((1e-2, False), (1e-5, True)):
        sigma = mock.relative_noise_sigma(D0, P25, eps)
        D = mock.add_noise(D0, sigma, 0)
        plain = S.reconstruct(P25, D, sigma, OMEGA, "nn", warmup=False, **short)
        auto = S.reconstruct(P25, D, sigma, OMEGA, "nn", **short)
        target = auto.diagnostics["target_chi2"]
        assert (plain.chi2 > target) == refitted
        assert (auto.diagnostics["warmup_history"][0] is not None) == refitted
        if refitted:
            assert auto.chi2 < plain.chi2
        else:
            np.testing.assert_array_equal(auto.rho, plain.rho)


def test_warmup_fits_each_members_resample_from_its_own_start(monkeypatch):
    """With a full covariance and resampled members (the fits replaced by a recorder): the
    warm-up sees the member's resampled data under the softened covariance, the fit after it the
    same data under the real one, and 'auto' refits a member above its target from the same
    initialisation and the same resample (here the refit is no better, so it is not kept)."""
    import torch

    rng = np.random.default_rng(5)
    p = P25[:9]
    D = mock.bw_propagator(p)
    X = rng.standard_normal((9, 9))
    cov = (X @ X.T + 9 * np.eye(9)) * 1e-10
    prob = S.Problem.build(p, D, omega=OMEGA, cov=cov)
    L, L_soft = S.nn._softened(prob)
    calls = []

    def record(model, A, b, *args, **kwargs):
        start = torch.cat([q.detach().ravel().clone() for q in model.parameters()])
        calls.append((model, np.asarray(A), np.asarray(b), start))
        return np.zeros(len(OMEGA)), []  # rho = 0 misses the data: chi^2 above any target

    monkeypatch.setattr(S.nn, "_fit", record)
    res = S.nn.p2p(prob, n_ensemble=2, depth=1, warmup=True)
    assert len(calls) == 4 and res.diagnostics["warmup_tried"] == [True, True]
    for (m1, A1, b1, _), (m2, A2, b2, _) in (calls[0:2], calls[2:4]):
        z = b2 - prob.b  # the member's whitened resample
        assert m1 is m2 and np.abs(z).max() > 0.1
        np.testing.assert_allclose(A1, np.linalg.solve(L_soft, prob.K), rtol=1e-10)
        np.testing.assert_allclose(L_soft @ b1, D + L @ z, rtol=1e-10)
        np.testing.assert_array_equal(A2, prob.A)
    assert not np.allclose(calls[1][2], calls[3][2])  # two members, two resamples
    calls.clear()
    res = S.nn.p2p(prob, n_ensemble=2, depth=1, warmup="auto")
    assert len(calls) == 6  # per member: the plain fit, then the warm-up and the fit after it
    for plain, soft, after in (calls[0:3], calls[3:6]):
        assert plain[0] is not soft[0] and soft[0] is after[0]
        np.testing.assert_array_equal(plain[3], soft[3])  # the same initial network
        np.testing.assert_array_equal(plain[2], after[2])  # the same resampled data
    assert res.diagnostics["warmup_tried"] == [True, True]
    assert res.diagnostics["warmup_history"] == [None, None]  # tried, not meeting the target: not kept


def test_auto_keeps_a_refit_only_where_it_meets_the_target(monkeypatch):
    """'auto' keeps the refit after the warm-up only if its chi^2 meets the discrepancy target: a
    refit that ends above the target as well is dropped even with a lower chi^2 (on the narrow
    BW at eps = 1e-5 such refits traded 5 % of chi^2 for a spike). The fits are replaced by
    scaled copies of a rho that fits the data exactly, so chi^2 = (s - 1)^2 |b|^2 is set."""
    p = P25[:9]
    rho_t = mock.breit_wigner(1.0, 2.0, 0.5)(OMEGA)
    sigma = 1e-3 * np.ones(9)
    prob = S.Problem.build(p, np.zeros(9), sigma, OMEGA)
    prob = S.Problem.build(p, prob.K @ rho_t, sigma, OMEGA)  # data the grid's rho_t fits exactly
    target = classical.discrepancy_target(9, None)
    b2 = float(prob.b @ prob.b)
    scale = lambda chi2: 1.0 + np.sqrt(chi2 / b2)  # noqa: E731
    for refit_chi2, kept in ((2.0 * target, False), (0.5 * target, True)):
        returns = iter([scale(100.0 * target), 1.0, scale(refit_chi2)])  # plain, warm-up, refit

        def fake_fit(*args, returns=returns, **kwargs):
            return next(returns) * rho_t, [(0.0, 0.0, 0.0, 0.0)]

        monkeypatch.setattr(S.nn, "_fit", fake_fit)
        res = S.nn.nn(prob, n_ensemble=1, resample=False)
        assert res.diagnostics["warmup_tried"] == [True]
        assert (res.diagnostics["warmup_history"][0] is not None) == kept
        np.testing.assert_allclose(res.chi2, refit_chi2 if kept else 100.0 * target, rtol=1e-8)


def test_warmup_softens_the_covariance_by_its_median_variance():
    rng = np.random.default_rng(3)
    sigma = 10.0 ** rng.uniform(-8, -3, 7)
    X = rng.standard_normal((7, 7))
    cov = X @ X.T + np.eye(7)
    for s, c in ((sigma, None), (None, cov)):
        prob = S.Problem.build(P25[:7], mock.bw_propagator(P25[:7]), s, OMEGA, cov=c)
        C = np.diag(sigma ** 2) if c is None else c
        L, L_soft = S.nn._softened(prob)
        np.testing.assert_allclose(L @ L.T, C, rtol=1e-12, atol=1e-12 * C.max())
        np.testing.assert_allclose(L_soft @ L_soft.T, C + np.median(np.diag(C)) * np.eye(7), rtol=1e-12,
                                   atol=1e-12 * C.max())


@pytest.mark.parametrize("shape", ["non_positive", "resonance_plus_continuum"])
def test_the_lattice_like_mock_shapes(shape):
    """The mock data's quadrature holds on these shapes (against a trapezoid sum). The
    non-positive spectrum: unconstrained Tikhonov finds the peak and the negative region near
    omega = 4.5, while a positive fit misses the data by far. Resonance plus continuum: the
    default (positive) Tikhonov on a grid wide enough for the continuum finds the resonance."""
    spec = getattr(mock, shape)()
    p = 0.2 * np.arange(1, 101)
    D0 = mock.propagator(spec, p)
    fine = np.linspace(0.0, 200.0, 400001)  # trapezoid up to 200, the tail beyond from the quadrature
    few = p[::11]
    trap = np.trapezoid(S.kernels.kallen_lehmann(few, fine) * spec(fine), fine, axis=1)
    tail = D0[::11] - mock.propagator(spec, few, omega_max=200.0)
    np.testing.assert_allclose(D0[::11], trap + tail, rtol=1e-6)
    sigma = mock.relative_noise_sigma(D0, p, 1e-5)
    D = mock.add_noise(D0, sigma, 0)
    if shape == "non_positive":
        res = S.reconstruct(p, D, sigma, OMEGA, "tikhonov", positive=False)
        truth = spec(OMEGA)
        assert abs(OMEGA[np.argmax(res.rho)] - OMEGA[np.argmax(truth)]) < 0.2 and res.chi2_per_point < 2
        assert truth.min() < 0 and res.rho[np.abs(OMEGA - 4.5) < 0.5].min() < 0.5 * truth.min()
        # a positive representation cannot fit these data at all, and says so
        with pytest.warns(S.MisfitWarning):
            assert S.reconstruct(p, D, sigma, OMEGA, "tikhonov").chi2_per_point > 100
    else:  # the continuum reaches far above 20: a wider grid, or the fit piles weight at its end
        wide = np.linspace(0.04, 60.0, 750)
        res = S.reconstruct(p, D, sigma, wide, "tikhonov")
        assert abs(wide[np.argmax(res.rho)] - 1.5) < 0.15 and res.chi2_per_point < 2


def test_positive_tikhonov_meets_the_discrepancy_target_when_positivity_lowers_chi2():
    # Here the non-negative fit at the unconstrained lambda already has chi^2 below the target
    # (17.2 against 21.8): the search used to stop there, at the top of its bracket.
    from lftaccel.spectral.problem import Problem

    p, omega = np.linspace(0.05, 10, 12), np.linspace(0.04, 20, 120)
    D0 = mock.bw_propagator(p)
    sigma = mock.relative_noise_sigma(D0, p, 1e-3)
    prob = Problem.build(p, mock.add_noise(D0, sigma, 0), sigma=sigma, omega=omega)
    for reg in ("identity", "second-derivative"):
        res = classical.tikhonov(prob, regulariser=reg, positive=True)
        assert res.chi2 == pytest.approx(res.diagnostics["chi2_target"], rel=1e-3)
        assert (res.rho >= 0).all()


def test_spectral_command_reads_a_correlator_in_euclidean_time(tmp_path, capsys):
    from lftaccel.cli import main

    T, tau = 1 / 16, np.arange(1.0, 16.0)
    bw = mock.breit_wigner(1.0, 1.0, 0.15)
    G = mock.propagator(bw, tau, kernel=S.finite_temperature(T))
    sigma = 1e-3 * G
    csv = tmp_path / "g.csv"
    np.savetxt(csv, np.column_stack([tau, mock.add_noise(G, sigma, 0), sigma]), delimiter=",",
               header="tau,G,sigma", comments="")
    out = tmp_path / "rho.csv"
    args = ["spectral", str(csv), "--temperature", str(T), "--omega-min", "0.001", "--omega-max", "6",
            "--n-omega", "300", "--method", "tikhonov", "-o", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    rho = np.genfromtxt(out, delimiter=",", names=True)
    assert abs(rho["omega"][np.argmax(rho["rho"])] - 1.0) < 0.1  # the peak at M = 1
    # the same through Python, with the kernel named
    p, D, s, _ = S.read_propagator(csv)
    ref = S.reconstruct(p, D, s, np.linspace(0.001, 6, 300), "tikhonov", kernel=S.finite_temperature(T))
    np.testing.assert_allclose(rho["rho"], ref.rho, rtol=1e-9, atol=1e-12)
    for bad, message in ((["--temperature", "0"], "--temperature must be finite and > 0"),
                         (["--temperature", "0.0625", "--omega-min", "0"], "--omega-min must be above 0")):
        assert main(["spectral", str(csv), "-o", str(tmp_path / "x.csv")] + bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
