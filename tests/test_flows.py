"""Flows: invertibility, log-det against autograd's Jacobian, Z2 equivariance, the free-field
bound <log q + S> >= -log Z, training smoke tests, checkpoint/resume."""

import math
import os
import signal

import numpy as np
import pytest
import torch

import lftaccel
from lftaccel.models import flows
from lftaccel.reference.phi4 import phi4_action



@pytest.fixture(autouse=True)
def float64_default():
    """These tests build float64 tensors by default; the global default is restored after each
    (a module-level set_default_dtype would leak into every test collected later)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _randomise(model, scale=0.3, seed=0):
    """Untrained flows are the identity (zero last layers): give every parameter a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _models():
    th = lftaccel.Oscillator(beta=4.0, m=0.5, lam=1.0, f=1.0)
    return {
        "lattice": _randomise(flows.lattice_flow((4, 3), n_layers=4, hidden=(4,)), scale=0.1),
        "lattice-z2": _randomise(flows.lattice_flow((4, 4), n_layers=4, hidden=(4,), equivariant=True), scale=0.1),
        "fourier": _randomise(flows.path_flow(th, 8, n_layers=4, hidden=(16,))),
        "real": _randomise(flows.path_flow(th, 8, basis="real", n_layers=4, hidden=(16,), equivariant=True)),
    }


@pytest.mark.parametrize("name", ["lattice", "lattice-z2", "fourier", "real"])
def test_flow_is_invertible_and_its_logdet_is_the_jacobians(name):
    model = _models()[name]
    flow = model.flow if isinstance(model, flows.PathFlow) else model
    torch.manual_seed(1)
    z = flow.prior.sample(3)
    x, logdet = flow.transform(z)
    assert 0.1 < float(logdet.detach().abs().max()) < 20  # far from the identity, yet well conditioned
    back = x
    for layer in reversed(flow.layers):
        back, _ = layer.inverse(back)
    assert torch.allclose(back, z, atol=1e-12, rtol=0)
    for i in range(3):
        J = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0].flatten(), z[i])
        J = J.reshape(z[i].numel(), z[i].numel())
        assert float(logdet[i].detach()) == pytest.approx(float(torch.linalg.slogdet(J)[1]), abs=1e-10)
    # log q from the sample equals log q through the inverse
    torch.manual_seed(2)
    xs, log_q = model.sample(5)
    assert torch.allclose(model.log_prob(xs), log_q, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["lattice-z2", "real"])
def test_equivariant_flows_are_odd_and_their_density_even(name):
    model = _models()[name]
    flow = model.flow if isinstance(model, flows.PathFlow) else model
    torch.manual_seed(3)
    z = flow.prior.sample(4)
    assert torch.allclose(flow.transform(-z)[0], -flow.transform(z)[0], atol=1e-12, rtol=0)
    x, log_q = model.sample(4)
    assert torch.allclose(model.log_prob(-x), log_q, atol=1e-10, rtol=0)


def test_plain_flow_is_not_equivariant():
    flow = _models()["lattice"]
    torch.manual_seed(3)
    z = flow.prior.sample(4)
    assert not torch.allclose(flow.transform(-z)[0], -flow.transform(z)[0], atol=1e-3)


def test_fourier_flow_log_q_is_the_same_in_path_and_coefficients():
    model = _models()["fourier"]
    torch.manual_seed(4)
    c, log_q_c = model.sample_coordinates(3)
    x = lftaccel.fourier.from_fourier(c)
    assert torch.allclose(model.log_prob(x), log_q_c, atol=1e-10, rtol=0)
    # the coordinate action (Fourier kernel) is the real-space action of the path
    th = model.theory
    assert torch.allclose(model.coordinate_action(c), th.action(x), atol=1e-10, rtol=0)


def _free_field(L, kappa):
    """phi^4 at lambda = 0 is Gaussian, S = phi^T M phi / 2: M and log Z exactly."""
    th = lftaccel.Phi4(kappa=kappa, lam=0.0)
    V = L * L
    # the pure-torch twin is twice differentiable (the kernel's gradient op is not)
    M = torch.autograd.functional.hessian(lambda v: phi4_action(v.reshape(1, L, L), kappa, 0.0)[0], torch.zeros(V))
    log_z = 0.5 * V * math.log(2 * math.pi) - 0.5 * float(torch.linalg.slogdet(M)[1])
    return th, log_z


def test_reverse_kl_on_the_free_field_stays_above_minus_log_z_and_approaches_it():
    L, kappa = 4, 0.2
    th, log_z = _free_field(L, kappa)
    torch.manual_seed(0)
    model = flows.lattice_flow((L, L), n_layers=4, hidden=(8,))

    def kl_bound(n=20000):
        with torch.no_grad():
            x, log_q = model.sample(n)
            v = (log_q + th.action(x)).numpy()
        return v.mean(), v.std() / math.sqrt(n)

    before, err_before = kl_bound()
    result = flows.train(model, action=th.action, steps=400, batch_size=256, lr=3e-3, seed=0, progress=False)
    after, err_after = kl_bound()
    # KL(q || p) = <log q + S> + log Z >= 0, up to the statistical error of the estimate
    assert before > -log_z - 3 * err_before
    assert after > -log_z - 3 * err_after
    assert before + log_z > 0.1  # the identity flow over N(0, 1) is a poor model
    assert after + log_z < 0.2 * (before + log_z)  # training closes most of the gap
    assert result.final_ess > 0.6


def test_training_smoke_forward_kl_and_path_flows():
    torch.manual_seed(0)
    model = flows.lattice_flow((4, 4), n_layers=2, hidden=(4,))
    data = torch.randn(64, 4, 4) * 0.7
    res = flows.train(model, objective="forward", data=data, steps=5, batch_size=16, progress=False)
    assert res.steps == 5 and np.isfinite(res.history["loss"]).all()
    th = lftaccel.Oscillator(beta=10.0, m=0.5, lam=1.0, f=1.0)
    for basis in ("fourier", "real"):
        pf = flows.path_flow(th, 16, basis=basis, n_layers=2, hidden=(16,), dtype=torch.float32)
        res = flows.train(pf, steps=5, batch_size=32, progress=False)
        assert res.steps == 5 and np.isfinite(res.history["loss"]).all()
        assert 0 < res.history["ess"][-1] <= 1


@pytest.mark.parametrize("interruption,saved_at", [("kill", 6), ("ctrl-c", 8)])
def test_an_interrupted_training_resumes_exactly(tmp_path, interruption, saved_at):
    """Interrupted in step 8 (checkpoints every 3 steps), the resumed run is the uninterrupted
    one. A run that dies (an exception) falls back to its last checkpoint, step 6; a SIGINT
    lets step 8 finish and be saved before the KeyboardInterrupt."""
    th = lftaccel.Phi4(kappa=0.2, lam=0.5)
    ck = tmp_path / "flow.pt"

    def fresh():
        torch.manual_seed(123)
        return flows.lattice_flow((4, 4), n_layers=2, hidden=(4,))

    straight = fresh()
    flows.train(straight, action=th.action, steps=12, batch_size=32, seed=5, progress=False)
    calls = []

    def interrupted_in_step_8(x):
        calls.append(1)
        if len(calls) == 8:
            if interruption == "kill":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        return th.action(x)

    part = fresh()
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # (pytest may run with it ignored)
    try:
        with pytest.raises(KeyboardInterrupt):
            flows.train(part, action=interrupted_in_step_8, steps=12, batch_size=32, seed=5, checkpoint=ck,
                        checkpoint_every=3, progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, before)
    assert torch.load(ck, weights_only=False)["step"] == saved_at
    resumed = fresh()
    res = flows.train(resumed, action=th.action, steps=12, batch_size=32, seed=5, checkpoint=ck, resume=True,
                      progress=False)
    assert res.steps == 12 and len(res.history["loss"]) == 12
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"steps": 2, "objective": "both"}, "objective"),
    ({"steps": 2, "objective": "forward"}, "data"), ({"steps": 2, "lr": -1.0}, "lr"),
    ({"steps": 2, "resume": True}, "checkpoint"), ({"steps": 2, "gradient": "score"}, "gradient"),
    ({"steps": 2, "schedule": "linear"}, "schedule"), ({"steps": 2, "time_limit": 0.0}, "time_limit"),
])
def test_train_rejects_bad_arguments(kwargs, match):
    model = flows.lattice_flow((4, 4), n_layers=1, hidden=(2,))
    th = lftaccel.Phi4(kappa=0.2, lam=0.5)
    with pytest.raises(ValueError, match=match):
        flows.train(model, action=th.action, progress=False, **kwargs)


def test_forward_training_data_are_checked():
    model = flows.lattice_flow((4, 4), n_layers=1, hidden=(2,))
    with pytest.raises(ValueError, match=r"data of shape \(32, 5, 5\) do not fit the model"):
        flows.train(model, objective="forward", data=torch.zeros(32, 5, 5), steps=2, batch_size=16, progress=False)
    bad = torch.zeros(32, 4, 4)
    bad[3, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        flows.train(model, objective="forward", data=bad, steps=2, batch_size=16, progress=False)


def test_resume_from_a_foreign_file_is_named(tmp_path):
    th = lftaccel.Phi4(kappa=0.2, lam=0.5)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    model = flows.lattice_flow((4, 4), n_layers=1, hidden=(2,))
    with pytest.raises(ValueError, match="junk.pt: not a training checkpoint"):
        flows.train(model, action=th.action, steps=2, checkpoint=junk, resume=True, progress=False)
    other = tmp_path / "other.pt"  # a checkpoint of a wider network
    flows.train(flows.lattice_flow((4, 4), n_layers=1, hidden=(4,)), action=th.action, steps=1, batch_size=8,
                checkpoint=other, progress=False)
    with pytest.raises(ValueError, match="other.pt: its network is not this one"):
        flows.train(model, action=th.action, steps=2, batch_size=8, checkpoint=other, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"other.pt: it was trained with other batch_size \(8, now 256\)"):
        flows.train(model, action=th.action, steps=2, checkpoint=other, resume=True, progress=False)


def test_a_second_training_of_one_checkpoint_is_refused(tmp_path):
    """Two trainings writing one checkpoint would overwrite each other's steps; the second is
    refused while the first holds the file's writer lock (as for sampling runs)."""
    from lftaccel.io import writer_lock

    th = lftaccel.Phi4(kappa=0.2, lam=0.5)
    ck = tmp_path / "ck.pt"
    with writer_lock(ck):
        with pytest.raises(ValueError, match=r"another process \(pid \d+\) is writing .*ck.pt"):
            flows.train(flows.lattice_flow((4, 4), n_layers=1, hidden=(2,)), action=th.action, steps=1,
                        batch_size=8, checkpoint=ck, progress=False)
    assert not ck.exists()
    flows.train(flows.lattice_flow((4, 4), n_layers=1, hidden=(2,)), action=th.action, steps=1, batch_size=8,
                checkpoint=ck, progress=False)
    assert ck.exists() and not (tmp_path / ".ck.pt.lock").exists()


def test_flow_builders_reject_bad_arguments():
    th = lftaccel.Oscillator(beta=10.0)
    with pytest.raises(ValueError, match="shape"):
        flows.lattice_flow((4,))
    with pytest.raises(ValueError, match="n_layers"):
        flows.lattice_flow((4, 4), n_layers=0)
    with pytest.raises(TypeError, match="dtype"):
        flows.lattice_flow((4, 4), dtype=torch.int32)
    # from an audit: a float extent was truncated, a zero width built a flow of no channels,
    # a scalar action broadcast into the loss as batch_size times the action
    for kwargs, match in (({"shape": (4.5, 4)}, "integer extents"), ({"hidden": (0,)}, "hidden"),
                          ({"kernel_size": 3.0}, "kernel_size")):
        with pytest.raises(ValueError, match=match):
            flows.lattice_flow(**{"shape": (4, 4), **kwargs})
    flow = flows.lattice_flow((4, 4), n_layers=2)
    with pytest.raises(ValueError, match="n must be"):
        flow.sample(-1)
    with pytest.raises(ValueError, match=r"x must be a \(batch, 4, 4\) tensor"):
        flow.log_prob(torch.zeros(2, 3, 3, dtype=torch.float64))
    from lftaccel.models.flows.train import reverse_kl_loss
    with pytest.raises(ValueError, match="one value per configuration"):
        reverse_kl_loss(flow, lambda x: x.sum(), 4)
    with pytest.raises(ValueError, match="basis"):
        flows.path_flow(th, 8, basis="wavelet")
    with pytest.raises(TypeError, match="theory"):
        flows.path_flow(lftaccel.Phi4(0.2, 0.5), 8)


def test_double_well_zero_mode_prior_is_a_normalised_even_density():
    scale = torch.tensor([0.5, 1.0, 2.0])
    prior = flows.DoubleWellZeroModePrior(scale, centre=3.0)
    # normalised: integrate exp(log_prob) over the zero mode on a grid, others at fixed values
    c0 = torch.linspace(-10, 10, 20001)
    z = torch.stack([c0, torch.full_like(c0, 0.3), torch.full_like(c0, -0.7)], dim=1)
    rest = flows.GaussianPrior(scale[1:]).log_prob(z[:1, 1:])
    density = torch.exp(prior.log_prob(z) - rest)
    assert float(torch.trapezoid(density, c0)) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(prior.log_prob(-z), prior.log_prob(z), atol=1e-12, rtol=0)
    torch.manual_seed(0)
    s = prior.sample(200000)
    assert float((s[:, 0] ** 2).mean()) == pytest.approx(9.0 + 0.25, rel=0.01)
    assert float((s[:, 0] > 0).double().mean()) == pytest.approx(0.5, abs=0.005)


def test_fourier_flow_of_a_double_well_starts_in_both_wells():
    th = lftaccel.Oscillator(beta=10.0, m=0.5, lam=1.0, f=1.7)
    model = flows.path_flow(th, 64, n_layers=2, hidden=(8,), equivariant=True, prior="double-well")
    torch.manual_seed(1)
    with torch.no_grad():
        x, log_q = model.sample(4000)
    xbar = x.mean(1)
    assert float((xbar > 0).double().mean()) == pytest.approx(0.5, abs=0.05)
    assert float(xbar.abs().mean()) == pytest.approx(1.7, abs=0.1)
    assert torch.allclose(model.log_prob(x[:8]), log_q[:8], atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="double-well"):
        flows.path_flow(th, 64, basis="real", prior="double-well")


def test_resume_without_a_checkpoint_is_the_seeded_fresh_run(tmp_path):
    th = lftaccel.Phi4(kappa=0.2, lam=0.5)
    models = []
    for resume in (False, True):
        torch.manual_seed(7)
        model = flows.lattice_flow((4, 4), n_layers=2, hidden=(4,))
        torch.rand(17)  # whatever ran before must not matter
        flows.train(model, action=th.action, steps=3, batch_size=16, seed=9, progress=False, resume=resume,
                    checkpoint=tmp_path / f"r{resume}.pt")
        models.append(model)
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_path_gradient_vanishes_at_the_target_and_agrees_with_reparameterisation_on_average():
    # S = sum phi^2 (kappa = lam = 0): p is N(0, 1/2) per site, which the untrained flow over
    # N(0, 1/2) represents exactly. Then log q + S is constant, the path gradient is zero sample
    # by sample, and the reparameterisation gradient is pure score-term noise.
    th = lftaccel.Phi4(kappa=0.0, lam=0.0)
    torch.manual_seed(0)
    model = flows.lattice_flow((4, 4), n_layers=2, hidden=(4,), prior_scale=math.sqrt(0.5))
    for gradient, small in (("path", True), ("reparam", False)):
        model.zero_grad()
        loss, batch_ess = flows.reverse_kl_loss(model, th.action, 64, gradient)
        loss.backward()
        assert abs(batch_ess - 1) < 1e-12
        assert (_grads(model).abs().max() < 1e-12) == small
    # Away from the target both estimate the same gradient: on the same large batch they differ
    # only by the score term, whose mean is zero.
    th = lftaccel.Phi4(kappa=0.2, lam=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    grads = {}
    for gradient in ("path", "reparam"):
        model.zero_grad()
        torch.manual_seed(1)
        flows.reverse_kl_loss(model, th.action, 4000, gradient)[0].backward()
        grads[gradient] = _grads(model)
    diff = (grads["path"] - grads["reparam"]).norm() / grads["reparam"].norm()
    assert diff < 0.01, diff


def _kink_gas(n=8, flip=0.2, seed=0):
    """A KinkGasPrior with every parameter moved off its starting value."""
    th = lftaccel.Oscillator(beta=4.0, m=0.5, lam=1.0, f=1.4)
    prior = flows.KinkGasPrior(flows.mode_scales(th, n), centre=1.4, flip=flip)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (prior.log_mu, prior.log_sigma, prior.log_filter):
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return prior


def _kink_gas_by_enumeration(prior, z):
    """log density of the prior as the explicit mixture over all 2^N periodic sign sequences."""
    import itertools

    y = lftaccel.fourier.from_fourier(z / prior.log_filter.exp())
    mu, sigma = prior.log_mu.exp(), prior.log_sigma.exp()
    terms, log_p_total = [], []
    for signs in itertools.product([1.0, -1.0], repeat=prior.n):
        s = torch.tensor(signs)[None]
        log_p = prior._log_p_signs(s)
        log_p_total.append(log_p)
        gauss = (-(y - mu * s) ** 2 / (2 * sigma ** 2)).sum(1) - prior.n * torch.log(sigma * math.sqrt(2 * math.pi))
        terms.append(log_p + gauss)
    return torch.logsumexp(torch.stack(terms), 0) - prior.log_filter.sum(), torch.logsumexp(torch.cat(log_p_total), 0)


@pytest.mark.parametrize("n", [7, 8])
def test_kink_gas_prior_is_the_sum_over_all_sign_sequences(n):
    prior = _kink_gas(n)
    torch.manual_seed(0)
    z = prior.sample(5)
    with torch.no_grad():
        reference, log_total = _kink_gas_by_enumeration(prior, z)
        assert float(log_total) == pytest.approx(0.0, abs=1e-12)  # P(s) is normalised over periodic chains
        assert torch.allclose(prior.log_prob(z), reference, atol=1e-11, rtol=0)
        assert torch.allclose(prior.log_prob(-z), prior.log_prob(z), atol=1e-11, rtol=0)


def test_kink_gas_prior_draws_sign_sequences_with_their_probabilities():
    # all 2^8 periodic sign sequences against exp(log P(s)): a chi-square over 255 degrees of freedom
    n, p, draws = 8, 0.2, 400000
    prior = _kink_gas(n, flip=p)
    s = prior._sample_signs(draws, torch.Generator().manual_seed(1), "cpu", torch.float64)
    codes = ((s > 0).long() * (2 ** torch.arange(n))).sum(1)
    observed = torch.bincount(codes, minlength=2 ** n).double()
    every = torch.tensor([[1.0 if (c >> k) & 1 else -1.0 for k in range(n)] for c in range(2 ** n)])
    with torch.no_grad():
        expected = draws * prior._log_p_signs(every).exp()
    assert float(expected.sum()) == pytest.approx(draws, rel=1e-12)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 5 * math.sqrt(2 * 255), chi2


def test_kink_gas_prior_samples_come_from_its_density():
    # E_q[z . grad log q(z)] = -dim for any smooth normalised q (integration by parts): it fails if
    # sample() and log_prob() disagree on any parameter, the Fourier scaling's direction included
    n, draws = 8, 40000
    prior = _kink_gas(n, flip=0.15)
    torch.manual_seed(2)
    with torch.no_grad():
        z = prior.sample(draws)
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_prob(z).sum(), z)
    v = (z * grad).sum(1).detach()
    assert abs(float(v.mean()) + n) < 4 * float(v.std()) / math.sqrt(draws), (float(v.mean()), float(v.std()))
    # and the signs' covariance: <y_0 y_k> = mu^2 (r^k + r^(N-k)) / (1 + r^N) + sigma^2 delta_k0, r = 1 - 2p
    with torch.no_grad():
        y = lftaccel.fourier.from_fourier(z.detach() / prior.log_filter.exp())
        mu, sigma, r = float(prior.log_mu.exp()), float(prior.log_sigma.exp()), 1 - 2 * float(prior.flip)
        for k in range(n):
            exact = mu ** 2 * (r ** k + r ** (n - k)) / (1 + r ** n) + (sigma ** 2 if k == 0 else 0.0)
            est = y[:, 0] * y[:, k]
            assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / math.sqrt(draws)


def _kink_gas_target_action(prior, flip=None):
    """S = -log density of a frozen copy of ``prior`` (with its flip rate set to ``flip`` if given)."""
    target = flows.detached_copy(prior)
    if flip is not None:
        with torch.no_grad():
            target.flip_logit.fill_(math.log(flip / (1 - flip)))
    return lambda u: -target.log_prob(u)


def test_kink_gas_gradients_vanish_at_the_target_including_the_flip_rate():
    # target = the model's own prior, the coupling layers the identity: log q + S = 0 per sample, so
    # the path gradient and the flip rate's score-function term are both zero
    th = lftaccel.Oscillator(beta=4.0, m=0.5, lam=1.0, f=1.4)
    model = flows.path_flow(th, 8, n_layers=2, hidden=(8,), prior="kink-gas")
    torch.manual_seed(0)
    action = _kink_gas_target_action(model.flow.prior)
    loss, batch_ess = flows.reverse_kl_loss(model, action, 64, "path")
    loss.backward()
    assert abs(batch_ess - 1) < 1e-12
    assert _grads(model).abs().max() < 1e-10
    # a different target flip rate gives the flip logit a gradient, of the sign that moves toward it
    model.zero_grad()
    flows.reverse_kl_loss(model, _kink_gas_target_action(model.flow.prior, flip=0.2), 4096, "path")[0].backward()
    assert float(model.flow.prior.flip_logit.grad) < 0  # descent raises the flip rate from 1/32


def test_training_learns_the_kink_rate_of_a_kink_gas_target():
    th = lftaccel.Oscillator(beta=4.0, m=0.5, lam=1.0, f=1.4)
    model = flows.path_flow(th, 16, n_layers=2, hidden=(8,), prior="kink-gas")
    action = _kink_gas_target_action(model.flow.prior, flip=0.15)
    assert float(model.flow.prior.flip.detach()) == pytest.approx(1 / 32)
    flows.train(model, action=action, steps=300, batch_size=128, lr=0.02, seed=0,
                progress=False)
    assert float(model.flow.prior.flip.detach()) == pytest.approx(0.15, abs=0.005)
