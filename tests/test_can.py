"""Continuous autoregressive networks (XY): the mixtures against scipy, the autoregressive
property by perturbation (including the periodic wrap), exact normalisation on 2x2 by
quadrature, cached against uncached sampling, symmetries, training toward the exact 2x2
free energy, seamless resume; and the helicity-modulus convention against d^2 F / d delta^2."""

import copy
import itertools
import math
import sys

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from lftaccel import analysis
from lftaccel.mcmc import nmcmc
from lftaccel.models import can

TWO_PI = 2 * math.pi


def _randomise(model, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _scipy_mixture_pdf(kind, params, phi):
    """The mixture density per radian from scipy, params (K * n_per) for one site."""
    mix = can.make_conditional(kind, len(params) // (3 if kind == "beta" else 4))
    logits, *rest = mix._split(torch.as_tensor(params))
    w = torch.softmax(logits, -1).numpy()
    softplus = lambda v: np.logaddexp(0.0, v) + mix.shape_floor  # noqa: E731
    if kind == "beta":
        a, b = (softplus(r.numpy()) for r in rest)
        return sum(wk * stats.beta.pdf(phi / TWO_PI, ak, bk) / TWO_PI for wk, ak, bk in zip(w, a, b))
    c, s, raw = (r.numpy() for r in rest)
    mu, kappa = np.arctan2(s, c), softplus(raw)
    return sum(wk * stats.vonmises.pdf(phi, kk, loc=mk) for wk, mk, kk in zip(w, mu, kappa))


@pytest.mark.parametrize("kind", ["beta", "vonmises"])
def test_mixture_log_prob_matches_scipy(kind):
    mix = can.make_conditional(kind, 3)
    params = torch.randn(6, mix.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    phi = torch.linspace(0.01, TWO_PI - 0.01, 37, dtype=torch.float64)
    ours = mix.log_prob(params[:, None, :].expand(-1, len(phi), -1), phi.expand(6, -1))
    for i in range(6):
        ref = np.log(_scipy_mixture_pdf(kind, params[i].numpy(), phi.numpy()))
        np.testing.assert_allclose(ours[i].numpy(), ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kind", ["beta", "vonmises"])
def test_mixture_sampler_chi_square(kind):
    """Histogram of 2e5 draws against the scipy density integrated over 40 bins."""
    torch.manual_seed(3)
    mix = can.make_conditional(kind, 3)
    params = torch.randn(mix.n_params, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    n = 200_000
    phi = mix.sample(params.expand(n, -1)).numpy()
    assert phi.min() >= 0 and phi.max() < TWO_PI
    edges = np.linspace(0, TWO_PI, 41)
    counts, _ = np.histogram(phi, edges)
    prob = np.array([integrate.quad(lambda x: _scipy_mixture_pdf(kind, params.numpy(), np.array([x]))[0],
                                    lo, hi, limit=200)[0] for lo, hi in zip(edges[:-1], edges[1:])])
    assert abs(prob.sum() - 1) < 1e-6
    chi2 = ((counts - n * prob) ** 2 / (n * prob)).sum()
    assert stats.chi2.sf(chi2, len(prob) - 1) > 1e-3, chi2


def _params_at(model, theta):
    th = theta.flatten(1)
    return model._params(th - th[:, :1])


@pytest.mark.parametrize("conditional,residual", [("vonmises", True), ("beta", False)])
def test_autoregressive_by_perturbation(conditional, residual):
    """Changing site j changes no conditional at sites <= j, and does change later ones."""
    torch.manual_seed(0)
    model = _randomise(can.CAN((4, 5), conditional=conditional, residual=residual, dtype=torch.float64))
    theta = TWO_PI * torch.rand(3, 4, 5, dtype=torch.float64)
    base = _params_at(model, theta)
    for j in range(1, 20):
        moved = theta.clone().flatten(1)
        moved[:, j] += 0.9
        diff = (_params_at(model, moved.view(3, 4, 5)) - base).abs().amax((0, 2))
        assert torch.all(diff[: j + 1] == 0), j
        if j < 19:
            assert diff[j + 1:].max() > 1e-6, j


def test_last_row_sees_first_row_through_the_boundary():
    """One exclusive 3x3 layer: site (4, 2) reads (0, 2), its periodic neighbour, and (2, 2)
    does not (out of reach); site (0, 2) is read by (1, 2) as usual."""
    torch.manual_seed(0)
    model = _randomise(can.CAN((5, 5), depth=1, first_half_width=1, dtype=torch.float64))
    theta = TWO_PI * torch.rand(2, 5, 5, dtype=torch.float64)
    moved = theta.clone()
    moved[:, 0, 2] += 1.0
    diff = (_params_at(model, moved) - _params_at(model, theta)).abs().amax((0, 2)).view(5, 5)
    assert diff[4, 2] > 1e-6 and diff[1, 2] > 1e-6
    assert diff[2, 2] == 0 and diff[3, 2] == 0


@pytest.mark.parametrize("conditional", ["vonmises", "beta"])
def test_normalised_on_2x2(conditional):
    """Integral of q over the four angles of a 2x2 lattice is 1 (site 0 uniform, so the rest
    is a 3D integral over the relative angles, by Gauss-Legendre in each)."""
    torch.manual_seed(0)
    model = _randomise(can.CAN((2, 2), conditional=conditional, n_components=2, dtype=torch.float64), 0.3)
    if conditional == "beta":
        model.conditional.shape_floor = 2.0  # densities vanishing at the ends: the quadrature converges fast
    x, w = np.polynomial.legendre.leggauss(40)
    nodes, weights = (x + 1) * math.pi, w * math.pi  # on [0, 2 pi)
    grid = np.array(list(itertools.product(nodes, repeat=3)))
    wgt = np.prod(np.array(list(itertools.product(weights, repeat=3))), 1)
    theta = torch.zeros(len(grid), 2, 2, dtype=torch.float64)
    theta.view(-1, 4)[:, 1:] = torch.as_tensor(grid) - math.pi  # relative angles phi - pi
    with torch.no_grad():
        q = torch.exp(model.log_prob(theta)).numpy()
    total = TWO_PI * (wgt * q).sum()
    assert abs(total - 1) < 1e-6, total


@pytest.mark.parametrize("conditional,residual,reflect,dtype,symmetry",
                         [("vonmises", True, False, torch.float64, {}), ("beta", True, False, torch.float64, {}),
                          ("vonmises", False, True, torch.float64, {}), ("vonmises", True, False, torch.float32, {}),
                          ("vonmises", True, True, torch.float64, {"point_group": True, "translations": 2})])
def test_cached_sampling_equals_uncached_and_log_q(conditional, residual, reflect, dtype, symmetry):
    model = _randomise(can.CAN((4, 6), conditional=conditional, residual=residual, reflect=reflect, dtype=dtype,
                               **symmetry), 0.3)
    torch.manual_seed(5)
    a, la = model.sample(16, cache=True)
    torch.manual_seed(5)
    b, lb = model.sample(16, cache=False)
    if dtype == torch.float64:
        assert torch.equal(a, b) and torch.equal(la, lb)
    else:  # the cache sums the same products over subsets of sites: float32 rounding may differ
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        torch.testing.assert_close(la, lb, rtol=0, atol=1e-3)
    tol = {torch.float32: 1e-3, torch.float64: 1e-9 if conditional == "vonmises" else 1e-7}[dtype]
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(a), la, rtol=0, atol=tol)


def test_can_on_device(device):
    """Sampling (cached = uncached), log q and a training step on each device; the CPU and
    CUDA networks agree on the same configurations."""
    cpu = _randomise(can.CAN((4, 6), dtype=torch.float64), 0.3)
    model = copy.deepcopy(cpu).to(device)
    torch.manual_seed(5)
    a, la = model.sample(8, cache=True)
    torch.manual_seed(5)
    b, lb = model.sample(8, cache=False)
    assert a.device.type == torch.device(device).type
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    torch.testing.assert_close(la, lb, rtol=0, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(a), la, rtol=0, atol=1e-9)
        torch.testing.assert_close(cpu.log_prob(a.cpu()), la.cpu(), rtol=0, atol=1e-9)
    res = can.train(model, 0.5, steps=2, batch_size=8, anneal=0.0, progress=False)
    assert res.steps == 2 and np.isfinite(res.history["f"]).all()


def test_symmetries_of_q():
    torch.manual_seed(0)
    model = _randomise(can.CAN((4, 4), reflect=True, dtype=torch.float64), 0.3)
    theta = TWO_PI * torch.rand(8, 4, 4, dtype=torch.float64)
    lq = model.log_prob(theta)
    torch.testing.assert_close(model.log_prob(theta + 1.234), lq, rtol=0, atol=1e-11)
    torch.testing.assert_close(model.log_prob(-theta), lq, rtol=0, atol=1e-11)
    assert (model.log_prob(theta.transpose(1, 2)) - lq).abs().max() > 1e-3  # the raster order breaks it


@pytest.mark.parametrize("shape", [(4, 4), (4, 6)])
def test_lattice_symmetry_average(shape):
    """q_G is invariant under the averaged group (D4, or the axis reflections of a rectangle,
    and the half-lattice translations), is the mean of q over the group's images, and leaves
    the symmetries it does not average broken."""
    torch.manual_seed(0)
    model = _randomise(can.CAN(shape, dtype=torch.float64), 0.3)
    theta = TWO_PI * torch.rand(6, *shape, dtype=torch.float64)
    with torch.no_grad():
        bare = model.log_prob(theta)
        model.point_group, model.translations = True, 2
        lq = model.log_prob(theta)
        H, W = shape
        images = [torch.roll(theta, (a, b), (1, 2)) for a in (0, H // 2) for b in (0, W // 2)]
        if H == W:
            images = [torch.rot90(t, r, (1, 2)) for t in images + [t.transpose(1, 2) for t in images] for r in range(4)]
        else:
            images = [torch.flip(t, d) for t in images for d in ((), (1,), (2,), (1, 2))]
        model.point_group, model.translations = False, 1
        mean_q = torch.stack([model.log_prob(t).exp() for t in images]).mean(0)
        model.point_group, model.translations = True, 2
        torch.testing.assert_close(lq, mean_q.log(), rtol=0, atol=1e-11)
        for t in images:
            torch.testing.assert_close(model.log_prob(t), lq, rtol=0, atol=1e-11)
        assert (model.log_prob(torch.roll(theta, 1, 1)) - lq).abs().max() > 1e-3  # a unit shift is not averaged
        assert (lq - bare).abs().max() > 1e-3


def test_lattice_symmetry_average_is_normalised_on_2x2():
    """As test_normalised_on_2x2 for q_G, by the trapezoid rule: q_G(theta) with theta_0 = 0 is
    periodic in the other angles but, unlike q, not smooth along the cube's axes alone, so
    Gauss-Legendre converges slowly (3e-6 at 32 nodes) and the periodic rule fast (7e-12 at 24)."""
    torch.manual_seed(1)
    model = _randomise(can.CAN((2, 2), n_components=2, reflect=True, point_group=True, translations=2,
                               dtype=torch.float64), 0.2)
    assert len(model._symmetry_group()) == 16  # 2 x 32 maps, 16 distinct on 2x2
    nodes, weights = TWO_PI * np.arange(24) / 24, np.full(24, TWO_PI / 24)
    grid = np.array(list(itertools.product(nodes, repeat=3)))
    wgt = np.prod(np.array(list(itertools.product(weights, repeat=3))), 1)
    theta = torch.zeros(len(grid), 2, 2, dtype=torch.float64)
    theta.view(-1, 4)[:, 1:] = torch.as_tensor(grid)
    with torch.no_grad():
        q = torch.exp(model.log_prob(theta)).numpy()
    assert abs(TWO_PI * (wgt * q).sum() - 1) < 1e-9


@pytest.mark.parametrize("kwargs,match", [({"translations": 3}, "translations must divide"),
                                          ({"translations": 0}, "translations"),
                                          ({"point_group": 1}, "point_group"), ({"reflect": "yes"}, "reflect")])
def test_lattice_symmetry_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        can.CAN((4, 4), **kwargs)


def test_symmetrise_checks_log_q():
    model = can.CAN((4, 4), point_group=True, dtype=torch.float64)
    theta = torch.zeros(3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="log_q must be a tensor"):
        model.symmetrise(theta, torch.zeros(2, dtype=torch.float64))


def test_winding_orientation():
    """A textbook vortex theta = atan2(y, x), x along axis 0 and y along axis 1, winds +1."""
    r, c = np.mgrid[0:8, 0:8]
    theta = torch.as_tensor(np.arctan2(c - 3.5, r - 3.5))[None]
    w = analysis.plaquette_winding(theta)[0]
    assert w[3, 3] == 1 and w[3, 3] == w.max()
    assert analysis.plaquette_winding(-theta)[0][3, 3] == -1


def test_crossing_and_extrapolation():
    from lftaccel.reproduce import xy_can

    temps = [0.8, 0.9, 1.0, 1.1]
    hel = [analysis.Estimate("Y", 1.5 - 0.8 * t, 0.01) for t in temps]  # crosses 2T/pi at 1.5 / (0.8 + 2/pi)
    tc, err = xy_can._crossing(temps, hel)
    assert abs(tc - 1.5 / (0.8 + 2 / math.pi)) < 1e-12
    assert abs(err - 0.01 * math.hypot(0.5, 0.5) / (0.8 + 2 / math.pi)) < 0.01 * 0.5 / (0.8 + 2 / math.pi)
    assert xy_can._crossing(temps, [analysis.Estimate("Y", 2.0, 0.01)] * 4) is None
    star = {L: 0.8929 + 0.7 / math.log(L) ** 2 for L in (8, 16)}
    t_inf, t_err = xy_can._extrapolate(8, (star[8], 0.0), 16, (star[16], 0.001))
    assert abs(t_inf - 0.8929) < 1e-12 and t_err > 0.001
    stats_ = xy_can._pull_statistics([0.5, -2.5, 1.0])
    assert stats_["n_outside_2sigma"] == 1 and abs(stats_["chi2"] - 7.5) < 1e-12


def _exact_2x2(beta, delta=0.0, m=48):
    """ln Z of the 2x2 XY model (twist delta on every link along axis 0) and <E>, by the
    midpoint rule over the three angles relative to site 0 (periodic integrand: spectral)."""
    t = (np.arange(m) + 0.5) * TWO_PI / m
    a, b, c = np.meshgrid(t, t, t, indexing="ij")
    th = np.stack([np.zeros_like(a), a, b, c], -1).reshape(-1, 2, 2)
    th_t = torch.as_tensor(th)
    links0 = th_t - torch.roll(th_t, -1, 1)
    links1 = th_t - torch.roll(th_t, -1, 2)
    E = -(torch.cos(links0 - delta).sum((1, 2)) + torch.cos(links1).sum((1, 2))).numpy()
    w = np.exp(-beta * E)
    log_z = math.log(TWO_PI) + np.log(w.mean()) + 3 * math.log(TWO_PI)
    return log_z, float((w * E).sum() / w.sum()), th, w


def test_helicity_convention_is_second_twist_derivative():
    """Y from analysis.xy_measurements equals (1/V) d^2 F / d delta^2, F = -T ln Z(delta)."""
    beta, h = 0.8, 1e-3
    f = [-_exact_2x2(beta, d)[0] / beta for d in (-h, 0.0, h)]
    second = (f[0] - 2 * f[1] + f[2]) / h ** 2 / 4
    _, _, th, w = _exact_2x2(beta)
    hel = analysis.xy_measurements(th, beta)["helicity"]
    assert abs((w * hel).sum() / w.sum() - second) < 1e-5


def test_training_approaches_the_exact_2x2_free_energy():
    """beta F_q >= beta F always; after a short training the bound is within 0.05 of the
    exact value (quadrature), and neural MCMC reproduces the exact <E>."""
    beta = 0.7
    log_z, e_exact, *_ = _exact_2x2(beta)
    model = can.CAN((2, 2), channels=8, depth=2, n_components=3, dtype=torch.float64)
    res = can.train(model, beta, steps=150, batch_size=256, lr=1e-2, anneal=0.9, seed=1, progress=False)
    assert res.steps == 150 and np.isfinite(res.history["f"]).all()
    torch.manual_seed(7)
    theta, log_q, S = nmcmc.draw(model, lambda x: beta * can.energy(x), 2 ** 14, batch_size=4096)
    f = (S + log_q).numpy()
    kl, err = f.mean() + log_z, f.std() / math.sqrt(len(f))
    assert kl > -4 * err, (kl, err)  # the variational bound
    assert kl < 0.05, kl
    chain = nmcmc.independence_metropolis(S, log_q, seed=0, n_chains=4)
    e = analysis.estimate(analysis.primary(chain.take(S.numpy() / beta), "E"), "E")
    assert abs(e.value - e_exact) < 3 * e.error + 1e-3, (e, e_exact)


def _small_can():
    torch.manual_seed(0)
    return can.CAN((3, 3), channels=4, depth=2, dtype=torch.float64)


def _check_resume_after_a_kill(run, monkeypatch, tmp_path, step_function, logged):
    """A run of 6 steps killed in step 5 (checkpoint at 3; ``step_function`` of the training
    module raises) and resumed ends where an uninterrupted run ends: same weights, same
    history length (the random streams are restored)."""
    trainer = sys.modules["lftaccel.models.can.train"]
    whole = _small_can()
    run(whole)
    ckpt = tmp_path / "can.pt"
    real, calls = getattr(trainer, step_function), []

    def dies_at_step_5(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(trainer, step_function, dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run(_small_can(), checkpoint=ckpt, checkpoint_every=3)
    monkeypatch.setattr(trainer, step_function, real)
    resumed = _small_can()
    res = run(resumed, checkpoint=ckpt, resume=True)
    assert res.steps == 6 and len(res.history[logged]) == 6
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)


def test_resume_after_a_kill_continues_the_same_run(tmp_path, monkeypatch):
    def run(model, **kw):
        return can.train(model, 0.5, steps=6, batch_size=8, seed=2, progress=False, anneal=0.3, **kw)
    _check_resume_after_a_kill(run, monkeypatch, tmp_path, "free_energy_loss", "f")


def test_fit_learns_a_teacher_by_maximum_likelihood():
    """A student fitted on a teacher CAN's samples (same architecture, another start) comes
    close to the teacher: KL(teacher || student), estimated on held-out teacher samples, falls
    below a quarter of its initial value (with 16384 samples it is the optimisation, not overfitting,
    that stops it: the KL on the training samples is as large)."""
    shape = (3, 3)
    torch.manual_seed(0)
    teacher = _randomise(can.CAN(shape, channels=8, depth=2, n_components=2, dtype=torch.float64), 0.4)
    torch.manual_seed(1)
    with torch.no_grad():
        train_x, _ = teacher.sample(16384)
        test_x, test_lq = teacher.sample(2048)

    def kl(student):
        with torch.no_grad():
            d = test_lq - student.log_prob(test_x)
        return float(d.mean()), float(d.std() / math.sqrt(len(d)))

    torch.manual_seed(2)
    student = can.CAN(shape, channels=8, depth=2, n_components=2, dtype=torch.float64)
    before, _ = kl(student)
    res = can.fit(student, train_x, steps=600, batch_size=256, lr=1e-2, augment=False, progress=False,
                  schedule="cosine")
    after, err = kl(student)
    assert before > 1.0 and -4 * err < after < 0.25 * before, (before, after, err)
    assert len(res.history["nll"]) == 600


def test_fit_augmentation_keeps_the_action_and_mixes_the_symmetries():
    """Each augmented configuration is a symmetry image of its source (the XY energy is
    unchanged, to rounding), drawn uniformly from the 400 images of a 5x5 configuration."""
    torch.manual_seed(3)
    x = 2 * math.pi * torch.rand(1, 5, 5, dtype=torch.float64).expand(400, 5, 5)
    g = torch.Generator().manual_seed(4)
    out = sys.modules["lftaccel.models.can.train"]._augment(x, g)
    torch.testing.assert_close(can.energy(out), can.energy(x), rtol=0, atol=1e-12)
    distinct = {tuple(torch.round(torch.remainder(o, 2 * math.pi), decimals=9).flatten().tolist()) for o in out}
    # 25 translations x 8 point-group maps x 2 signs = 400 images; 400 uniform draws from them
    # hit 400 (1 - (1 - 1/400)^400) = 252.9 distinct ones on average, standard deviation ~6
    assert 230 < len(distinct) < 276, len(distinct)


def test_fit_resume_and_bad_input(tmp_path, monkeypatch):
    torch.manual_seed(5)
    data = 2 * math.pi * torch.rand(64, 3, 3, dtype=torch.float64)

    def run(model, **kw):
        return can.fit(model, data, steps=6, batch_size=8, seed=2, progress=False, **kw)
    _check_resume_after_a_kill(run, monkeypatch, tmp_path, "_augment", "nll")
    model = _small_can()
    for bad, match in ((data[:, :2], "configs"), (data[:0], "configs"), (data.clone().fill_(float("nan")), "finite"),
                       (torch.zeros(4, 3, 3, dtype=torch.long), "finite real")):
        with pytest.raises(ValueError, match=match):
            can.fit(model, bad, steps=1, progress=False)
    with pytest.raises(ValueError, match="augment"):
        can.fit(model, data, steps=1, augment=1, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        can.fit(model, data, steps=1, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="configs has 64 configurations, fewer than batch_size = 65"):
        can.fit(model, data, steps=1, batch_size=65, progress=False)


def test_unfinished_annealing_warns():
    model = can.CAN((3, 3), channels=4, depth=1)
    with pytest.warns(UserWarning, match="annealing"):
        can.train(model, 1.0, steps=3, batch_size=4, anneal=0.998, progress=False)


@pytest.mark.parametrize("kw,match", [({"shape": (4,)}, "shape"), ({"shape": (4, 1)}, "shape"),
                                      ({"conditional": "gauss"}, "conditional"), ({"n_components": 0}, "n_components"),
                                      ({"channels": 0}, "channels"), ({"depth": 0}, "depth"),
                                      ({"first_half_width": 0}, "first_half_width"),
                                      ({"dtype": torch.float16}, "dtype"), ({"residual": "no"}, "residual")])
def test_bad_arguments(kw, match):
    args = {"shape": (4, 4), **kw}
    with pytest.raises(ValueError, match=match):
        can.CAN(args.pop("shape"), **args)
    model = can.CAN((4, 4))
    with pytest.raises(ValueError, match="theta"):
        model.log_prob(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="non-finite"):  # it returned NaN
        model.log_prob(torch.full((2, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="beta"):
        can.train(model, -1.0, steps=1, progress=False)
    with pytest.raises(ValueError, match="anneal"):
        can.train(model, 1.0, steps=1, anneal=1.0, progress=False)
    with pytest.raises(ValueError, match="empty batch"):
        model.log_prob(torch.zeros(0, 4, 4))
    for dtype in (torch.complex128, torch.long):  # complex angles lost their imaginary part
        with pytest.raises(TypeError, match="real floating-point"):
            model.log_prob(torch.zeros(2, 4, 4, dtype=dtype))
    for seed in (None, 1.5, -1):  # 1.9 trained as 1
        with pytest.raises(ValueError, match="seed"):
            can.train(model, 1.0, steps=1, seed=seed, progress=False)


def test_non_finite_weights_stop_sampling_and_training(monkeypatch):
    """Found by an audit: a NaN or infinite concentration never passes the von Mises rejection
    test, so a network with a NaN weight sampled for ever; a NaN gradient behind a finite loss
    was clipped into NaN weights without a word."""
    for conditional in ("vonmises", "beta"):
        model = can.CAN((3, 3), channels=4, depth=1, conditional=conditional)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
        with pytest.raises(ValueError, match="not finite"):
            model.sample(4)
    trainer = sys.modules["lftaccel.models.can.train"]
    real = trainer.free_energy_loss

    def infinite_gradient(model_, beta, batch_size):  # the same finite loss, d sqrt(w - w)/dw = inf
        loss, metrics = real(model_, beta, batch_size)
        w = next(model_.parameters()).view(-1)[0]
        return loss + torch.sqrt(w - w.detach()), metrics

    monkeypatch.setattr(trainer, "free_energy_loss", infinite_gradient)
    model = can.CAN((3, 3), channels=4, depth=1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="gradient became non-finite at step 0"):
        can.train(model, 1.0, steps=2, batch_size=4, anneal=0.0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no step taken


def test_resume_with_another_target_is_refused(tmp_path):
    """The checkpoint keeps what the optimisation depends on: resuming at another beta, anneal,
    batch size or learning rate would silently continue the old training (its beta history ran
    on at the old value)."""
    ckpt = tmp_path / "can.pt"
    can.train(_small_can(), 0.5, steps=2, batch_size=8, anneal=0.0, checkpoint=ckpt, progress=False)
    for kw, name in (({"beta": 2.0}, "beta"), ({"anneal": 0.9}, "anneal"), ({"batch_size": 4}, "batch_size"),
                     ({"lr": 1e-2}, "lr")):
        args = {"beta": 0.5, "batch_size": 8, "anneal": 0.0, **kw}
        with pytest.raises(ValueError, match=f"other {name} "):
            can.train(_small_can(), args.pop("beta"), steps=4, checkpoint=ckpt, resume=True, progress=False, **args)
    res = can.train(_small_can(), 0.5, steps=4, batch_size=8, anneal=0.0, checkpoint=ckpt, resume=True,
                    progress=False)
    assert res.steps == 4


def test_exact_chain_and_reweighting_match_quadrature_on_3x2():
    """XY on 3x2 at beta = 1.1 (an odd extent: distinct neighbours; extent 2: a doubled link):
    energy and helicity modulus per site by quadrature over the angles (theta_0 = 0 by the
    global symmetry; 14 points per angle on the periodic trapezoid rule: the same to 3e-9 as 20),
    against the independence-Metropolis chain and reweighting over CAN proposals averaged over
    the rectangle's point group, with analysis.xy_measurements (the estimators written again here)."""
    beta, shape, n_grid = 1.1, (3, 2), 14
    g = torch.arange(n_grid, dtype=torch.float64) * (2 * math.pi / n_grid)
    grids = torch.meshgrid(*([g] * 5), indexing="ij")
    th = torch.stack([torch.zeros_like(grids[0])] + list(grids), -1).reshape(-1, *shape)
    cos_mu = [torch.cos(th - torch.roll(th, -1, d)).flatten(1).sum(1) for d in (1, 2)]
    sin_mu = [torch.sin(th - torch.roll(th, -1, d)).flatten(1).sum(1) for d in (1, 2)]
    w = torch.exp(beta * sum(cos_mu))
    exact = {"energy": float((w * -sum(cos_mu) / 6).sum() / w.sum()),
             "helicity": float((w * sum(c - beta * s ** 2 for c, s in zip(cos_mu, sin_mu)) / 12).sum() / w.sum())}
    torch.manual_seed(0)
    model = can.CAN(shape, channels=16, depth=3, n_components=4, point_group=True)
    can.train(model, beta, steps=200, batch_size=128, lr=3e-3, anneal=0.95, seed=0, progress=False)
    torch.manual_seed(1)
    x, log_q, S = nmcmc.draw(model, lambda t: beta * can.energy(t), 2 ** 17, batch_size=2 ** 15)
    chain = nmcmc.independence_metropolis(S, log_q, seed=2, n_chains=8)
    assert chain.ess > 0.5
    meas = analysis.xy_measurements(x.numpy(), beta)
    for k in ("energy", "helicity"):
        c = analysis.estimate(analysis.primary(chain.take(meas[k]), k), k)
        r = analysis.estimate(nmcmc.reweight(meas[k], nmcmc.log_weights(S, log_q), k), k)
        assert abs(c.value - exact[k]) < 3 * c.error, (k, c, exact[k])
        assert abs(r.value - exact[k]) < 3 * r.error, (k, r, exact[k])
        assert c.error < 2e-3
