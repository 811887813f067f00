"""Neural-network representations of rho, optimised by automatic differentiation (torch, float64).

  * 'nn':  rho_a = omega_a softplus(f_a), f the output (one value per grid point) of a
    network fed a constant input, with ``depth`` hidden layers of width 64 (``activation``
    'linear', i.e. none, or 'elu'). Depth 0 is the "list" representation: f is a free vector.
  * 'p2p': rho(omega) = omega softplus(net(omega / scale)), a point-to-point network (ELU
    layers; scale = omega_max / 5 by default, see below).
rho >= 0 and rho(0) = 0 hold by construction.

The measurements behind every choice below, and the variants tried and not adopted (choosing
the smoothness by the evidence, fitting longer, Levenberg-Marquardt, a central member, more
members, a log-cubic prior), are in benchmarks/reference/spectral-nn-notes.md; the 20-seed
benchmark is benchmarks/reference/spectral.md.

Loss: chi^2 (whitened; the full covariance when given) + smooth R + l2 ||weights||^2 (network
weights only; the list has none), with the smoothness regulator R chosen by ``smoothness``:
  * 'rho' (default): sum_a (rho_{a+1} - rho_a)^2, a plain sum over the grid points (so the
    same ``smooth`` is a different prior on a finer or a non-uniform grid);
  * 'log': sum_a (f_{a+1} - 2 f_a + f_{a-1})^2, the curvature of the network output f, which
    is log(rho / omega) wherever rho is small (softplus f ~ e^f). It damps ripples in the
    tails, and a Gaussian peak has constant log-curvature, the prior MEM's rho = m exp(...)
    carries. Better than 'rho' on the N_p = 100 cells, worse on most N_p = 25 ones, so offered,
    not the default; the benchmark runs it as 'nn-log' (smooth = 1e3).

Schedule and early stopping on chi^2. The fit runs in stages. A stage runs the optimiser in
chunks of 250 iterations until the loss stops improving (relative decrease < ``rtol`` over a
chunk) or ``iters`` iterations. After a stage, if chi^2 is still above the discrepancy
target N_p + 2 sqrt(2 N_p) (doubled for a member fitted to resampled data), both regulator
weights are relaxed tenfold and a new stage starts from where the last ended, at most
``stages`` times; a relaxation that neither reaches the target nor lowers chi^2 by at least
2 sqrt(2 N_p) (or that diverges) is undone and ends the fit (the data cannot be fitted better
on this grid, e.g. because of the truncated tail, and relaxing further would fit noise). That
test is weak where chi^2 >> N_p: a stage ends when the loss falls by less than rtol of itself
per chunk, and on data the grid cannot fit (chi^2/N_p ~ 1e3) the next stage lowers chi^2 by
more than 2 sqrt(2 N_p) by optimising longer, so every stage is kept. A stage that diverges
is undone; a first stage that diverges is an error (FloatingPointError), and reconstruct()
warns (MisfitWarning) about a result that ends above chi^2/N_p = 4, as for every method.
With network weights and l2 > 0, a last fine-tuning stage drops the L2 term. The iteration
count is part of the regularisation: the list started at f = f0 = -3 (rho = 0.049 omega) and
stopped on the loss plateau lands near the truth well before the unregularised optimum,
which is ~2x worse on the benchmark.

Optimiser. 'lbfgs' (default), with a strong-Wolfe line search: the whitened chi^2 is extremely
stiff (the kernel's singular values span ~15 decades), and on the two-BW benchmark case Adam had
not brought chi^2/N below 1e6 after 8000 steps where L-BFGS fits in a few thousand iterations.
'adam': Adam with the same loss and schedule, learning rate ``lr`` (10x smaller in the
fine-tuning stage), as in the published approach.

P2P input scale: the point network is fed omega / ``scale``, by default omega_max / 5 (4 on
the benchmark's grid, which ends at 20). The default assumes, as on the benchmark, that the
grid extends a few times beyond the spectral features, so it scales with the grid in any
units. With PyTorch's initialisation the first layer's ELU kinks sit at -b/w with
b, w ~ U(-1, 1), mostly within |x| < 2, and the network bends easily only there; the input
unit must put the features in that range. Where they sit far below omega_max / 5, set
``scale`` near their frequency.

Warm-up (``warmup``: True for p2p, 'auto' for the list). On precise data one point can
dominate: on the N_p = 25 protocol the point at p = 0.001 has sigma ~1e-3 of its neighbours',
so its whitened row is ~1e3 times the others, and p2p, having fitted it first from its random
start, could not move (chi^2/N 1.5e4 on BW at eps = 1e-5, against 1.06 without that point).
So each member first fits its data (resample included) weighed by the softened covariance
C + q^2 1, q^2 the median variance, which caps the rows' range without changing the data, and
then, from there, the data with their own covariance and the same schedule, target and
stopping rules (chi^2 under the softened covariance is the smaller, so the warm-up stops the
earlier); ``diagnostics['warmup_history']`` holds the warm-up's stages. Always on, the warm-up
costs the list the regularisation its early stop provides, so the list's default is 'auto': a
member whose plain fit ends above its discrepancy target is fitted again, from the same
initialisation and the same resample, after the warm-up, and the refit is kept only if it
meets the target (``diagnostics['warmup_tried']`` marks the members refitted). Where every
member meets its target nothing changes, bit for bit.

The fits run on one torch thread, whatever the caller's count (a matrix product's last bits
differ between thread counts, and L-BFGS amplifies them: a depth-1 list ended at chi^2 16.1 on
two threads and 20.5 on one), and with their own random state: member k of ``seed`` s is
initialised from torch seed 1000003 s + k, and the caller's generator is left as it was.

Defaults (measured on benchmarks/bench_spectral.py): depth 0 (the list), smooth = 100,
f0 = -3, rtol = 1e-3, iters = 5000 per stage, 4 stages, an ensemble of 2, warmup='auto'
(with hidden layers: activation 'elu', l2 = 1e-2, Adam's lr = 1e-3 where chosen); p2p:
depth 3, width 64, scale omega_max / 5, smooth = 100, l2 = 1e-3, iters = 2000 per stage, the
warm-up.

Band: an ensemble of ``n_ensemble`` fits, each on the data resampled within its errors
(b + z in whitened form; p2p's networks also from their own initialisation, while every
member of the list starts from the same f0); rho is the ensemble mean. Each member responds
to its resample as the fit responds to the data's own noise, so the members' standard
deviation estimates the spread of one fit over noise realisations; the mean carries 1/n of
the members' resampling noise besides, and the band is that standard deviation times
sqrt(1 + 1/n) (no band for n_ensemble = 1; with resample=False the plain standard deviation,
which then measures the initialisations only). With the default 2 members it is an estimate
with one degree of freedom: between fits of the same data it scatters by a factor of 2-3. It
runs low: the members' plain standard deviation was 0.53-0.65 of the returned rho's actual
spread over 20 noise seeds (BW at N_p = 25, eps = 1e-3; two BW at N_p = 100; the band, times
sqrt(3/2), 0.65-0.80), and in a user's trial of the list (BW(1, 2, 0.5), p = 0.5 .. 10, N_p = 20,
eps = 1e-3, 10 seeds) the band was a median 0.44 of the spread below omega = 6 and 0.26 at the
peak (MEM's 0.89). p2p's was not measured so.
The band does not contain the regularisers' bias, which on most benchmark cells is larger
than the spread (coverage of the truth 22-77 %).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from scipy import linalg
from tqdm.auto import tqdm

from .._kernels import check_int
from .classical import discrepancy_target
from .problem import Problem, Reconstruction, check_positive, check_real

__all__ = ["nn", "p2p"]


def _rho(omega, f):
    """rho = omega softplus(f): both representations map their output f to rho this way."""
    return omega * torch.nn.functional.softplus(f)


class ListNet(torch.nn.Module):
    """f from a constant input through ``depth`` hidden layers (depth 0: f is the parameter)."""

    def __init__(self, n_out: int, depth: int, width: int, activation: str, f0: float = 0.0):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 3:
            raise ValueError(f"depth must be an integer in 0..3, got {depth!r}")
        check_int(width, "width")
        f0 = check_real(f0, "f0")
        if activation not in ("linear", "elu"):
            raise ValueError(f"activation must be 'linear' or 'elu', got {activation!r}")
        if depth == 0:
            self.f = torch.nn.Parameter(torch.full((n_out,), float(f0), dtype=torch.float64))
            self.net = None
        else:
            layers, d_in = [], 1
            for _ in range(depth):
                layers.append(torch.nn.Linear(d_in, width, dtype=torch.float64))
                if activation == "elu":
                    layers.append(torch.nn.ELU())
                d_in = width
            layers.append(torch.nn.Linear(d_in, n_out, dtype=torch.float64))
            with torch.no_grad():
                layers[-1].bias += f0
            self.net = torch.nn.Sequential(*layers)
        self.register_buffer("one", torch.ones(1, 1, dtype=torch.float64))

    def logits(self, omega):
        return self.f if self.net is None else self.net(self.one)[0]

    def forward(self, omega):
        return _rho(omega, self.logits(omega))


class PointNet(torch.nn.Module):
    def __init__(self, depth: int, width: int, scale: float):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 4:
            raise ValueError(f"depth must be an integer in 1..4 for p2p, got {depth!r}")
        check_int(width, "width")
        layers, d_in = [], 1
        for _ in range(depth):
            layers += [torch.nn.Linear(d_in, width, dtype=torch.float64), torch.nn.ELU()]
            d_in = width
        layers.append(torch.nn.Linear(d_in, 1, dtype=torch.float64))
        self.net = torch.nn.Sequential(*layers)
        self.scale = scale  # the input is omega / scale (see p2p)

    def logits(self, omega):
        return self.net(omega[:, None] / self.scale)[:, 0]

    def forward(self, omega):
        return _rho(omega, self.logits(omega))


CHUNK = 250  # optimiser iterations between convergence checks


@contextlib.contextmanager
def _fit_context():
    """One torch thread and a private random state for the fits: L-BFGS amplifies the last-bit
    differences a network layer's matrix product has between thread counts (a depth-1 list
    ended at chi^2 16.1 on 2 threads and 20.5 on one), and the members' seeding must leave the
    caller's global generator as it was."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


def _fit(model, A, b, omega, target, significant, *, optimizer, l2, smooth, stages, iters, lr, rtol,
         smoothness="rho", bar=None):
    """Fit one member to whitened data b. Stage k weighs the regulators by 10^-k; a stage ends
    when the loss stops improving (relative decrease < rtol over CHUNK iterations) or after
    ``iters`` iterations; the stages stop as soon as chi^2 <= target (early stopping on chi^2),
    or when a relaxation neither reaches the target nor lowers chi^2 by ``significant`` (undone).
    With network weights and l2 > 0, a fine-tuning stage without the L2 term follows. ``bar``:
    a tqdm bar advanced by each chunk of iterations, with the stage and chi^2/N_p."""
    A = torch.as_tensor(A)
    bt = torch.as_tensor(b)
    weights = [p for n, p in model.named_parameters() if "bias" not in n and n != "f"]
    history = []

    def terms(smooth_now, l2_now):
        f = model.logits(omega)  # one network pass serves rho and the 'log' regulator
        rho = _rho(omega, f)
        r = A @ rho - bt
        chi2 = r @ r
        if smoothness == "rho":
            loss = chi2 + smooth_now * ((rho[1:] - rho[:-1]) ** 2).sum()
        else:
            loss = chi2 + smooth_now * ((f[2:] - 2 * f[1:-1] + f[:-2]) ** 2).sum()
        if l2_now > 0 and weights:
            loss = loss + l2_now * sum((w * w).sum() for w in weights)
        return loss, chi2

    chunk = min(CHUNK, iters)

    def stage(smooth_now, l2_now, lr_now):
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=chunk, history_size=50,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)

            def closure():
                opt.zero_grad()
                loss, _ = terms(smooth_now, l2_now)
                loss.backward()
                return loss

            step = lambda: opt.step(closure)  # noqa: E731  (the optimiser's state persists across chunks)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=lr_now)

            def step():
                for _ in range(chunk):
                    opt.zero_grad()
                    loss, _ = terms(smooth_now, l2_now)
                    loss.backward()
                    opt.step()

        previous = None
        saved = {n: v.clone() for n, v in model.state_dict().items()}
        for _ in range(-(-iters // chunk)):
            step()
            with torch.no_grad():
                loss, chi2 = (float(v) for v in terms(smooth_now, l2_now))
            history.append((smooth_now, l2_now, chi2, loss))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(smooth=f"{smooth_now:.3g}", chi2_per_point=f"{chi2 / len(bt):.3g}", refresh=False)
            if not np.isfinite(loss):
                model.load_state_dict(saved)  # undone: where a stage diverges, its start stands
                return float("nan")
            if previous is not None and previous - loss < rtol * abs(loss):
                break
            previous = loss
        return chi2

    chi2 = stage(smooth, l2, lr)
    if not np.isfinite(chi2):
        raise FloatingPointError(
            "the fit diverged (a non-finite loss) in its first stage"
            + (f": lower lr (optimizer='adam', lr = {lr:g})" if optimizer == "adam" else ""))
    k = 0
    while chi2 > target and k + 1 < stages:
        # Relax the regulators tenfold only while that buys a significant drop in chi^2: when
        # the data cannot be fitted on this grid (a truncated tail, say) chi^2 stays above the
        # target whatever the weight, and relaxing further would only fit noise.
        saved = {n: v.clone() for n, v in model.state_dict().items()}
        relaxed = stage(smooth * 10.0 ** -(k + 1), l2 * 10.0 ** -(k + 1), lr)
        if not (relaxed <= target or chi2 - relaxed >= significant):  # also undoes a diverged (NaN) stage
            model.load_state_dict(saved)
            history.append((smooth * 10.0 ** -k, l2 * 10.0 ** -k, chi2, float("nan")))  # nan: reverted here
            break
        chi2, k = relaxed, k + 1
    if l2 > 0 and weights:  # fine-tuning: the data term and the smoothness of the last stage only
        stage(smooth * 10.0 ** -k, 0.0, lr / 10)
    with torch.no_grad():
        rho = model(omega)
    return rho.numpy().copy(), history


def _softened(prob: Problem):
    """Cholesky factors of the data's covariance C (the problem's own) and of the warm-up's
    C + q^2 1, q^2 the median variance (module docstring: the warm-up)."""
    C = prob.cov if prob.cov is not None else np.diag(prob.sigma ** 2)
    return prob.L, np.linalg.cholesky(C + np.median(np.diag(C)) * np.eye(prob.n))


@_fit_context()
def _ensemble(make, prob: Problem, *, n_ensemble, seed, resample, warmup, progress=False, label="nn", **fit):
    check_int(n_ensemble, "n_ensemble")
    check_int(seed, "seed", low=0)
    for name, flag in (("resample", resample), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if isinstance(warmup, (bool, np.bool_)):
        warmup = bool(warmup)
    elif not (isinstance(warmup, str) and warmup == "auto"):
        raise ValueError(f"warmup must be True, False or 'auto', got {warmup!r} ({type(warmup).__name__})")
    if fit["optimizer"] not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {fit['optimizer']!r}")
    if fit["smoothness"] not in ("rho", "log"):
        raise ValueError(f"smoothness must be 'rho' or 'log', got {fit['smoothness']!r}")
    for name in ("stages", "iters"):
        check_int(fit[name], name)
    for name in ("smooth", "l2", "rtol"):
        check_real(fit[name], name, low=0.0)
    check_positive(fit["lr"], "lr")
    omega = torch.as_tensor(prob.omega)
    rng = np.random.default_rng(seed)
    resampled = resample and n_ensemble > 1
    # Discrepancy target for one member, as in the classical methods: N_p + 2 sqrt(2 N_p), the
    # chi^2 the truth stays below at ~2 sigma; twice that when the member sees the data's noise
    # plus a resample of it (chi^2 of the truth then is 2 chi^2_{N_p}).
    factor = 2.0 if resampled else 1.0
    target = discrepancy_target(prob.n, None) * factor
    significant = 2.0 * np.sqrt(2.0 * prob.n) * factor  # 2 sigma of chi^2_{N_p}, doubled if resampled
    L = L_soft = A_soft = None
    if warmup:
        L, L_soft = _softened(prob)
        A_soft = linalg.solve_triangular(L_soft, prob.K, lower=True)

    # chunks of up to CHUNK optimiser iterations, whose number the early stops decide: a bar
    # without a total
    bar = tqdm(desc=label, unit=" chunk", disable=not progress, dynamic_ncols=True)

    def member(k, z, warm):
        """Member k's fit of data b + z, from its own initialisation; warm: after the warm-up on
        the same data (resample included) weighed by the softened covariance."""
        # member k of seed s: seeds s 1000003 + k apart, so ensembles of neighbouring seeds share
        # no member (seed 0's members are 0, 1, ... as before)
        torch.manual_seed(seed * 1000003 + k)
        model, warm_hist = make(), None
        if warm:
            # (_str: set_description appends its own ': ', which the bar's format repeats)
            bar.set_description_str(f"{label} member {k + 1}/{n_ensemble} warm-up")
            b_soft = linalg.solve_triangular(L_soft, prob.D + L @ z, lower=True)
            warm_hist = _fit(model, A_soft, b_soft, omega, target, significant, bar=bar, **fit)[1]
        bar.set_description_str(f"{label} member {k + 1}/{n_ensemble}")
        b = prob.b + z
        rho, hist = _fit(model, prob.A, b, omega, target, significant, bar=bar, **fit)
        r = prob.A @ rho - b
        return rho, hist, warm_hist, float(r @ r)  # chi^2 against the data this member fitted

    rhos, histories, warmups, tried = [], [], [], []
    for k in range(n_ensemble):
        z = rng.standard_normal(prob.n) if resampled else np.zeros(prob.n)
        rho, hist, warm_hist, chi2 = member(k, z, warmup is True)
        # the plain fit ended above the target (or diverged): try the warm-up
        refit = warmup == "auto" and not chi2 <= target
        tried.append(warmup is True or refit)
        if refit:
            warm = member(k, z, True)
            # kept only where it meets the target: a refit that ends above it as well found no fit the
            # data allow, and its lower chi^2 was bought with spikes (spectral-nn-notes.md, the warm-up)
            if warm[3] <= target:
                rho, hist, warm_hist, chi2 = warm
        rhos.append(rho)
        histories.append(hist)
        warmups.append(warm_hist)
    bar.close()
    rhos = np.array(rhos)
    band = rhos.std(0, ddof=1) if len(rhos) > 1 else None
    if band is not None and resampled:
        # the mean of the members carries, besides the data's noise (which each member's
        # resample mimics), 1/n of the members' own resampling noise (module docstring)
        band *= np.sqrt(1.0 + 1.0 / len(rhos))
    diag = {"members": rhos, "history": histories, "target_chi2": target}
    if warmup:  # per member: the warm-up's stages where the member kept it (else None), and whether it ran
        diag.update(warmup_history=warmups, warmup_tried=tried)
    return rhos.mean(0), band, diag


def nn(prob: Problem, *, depth: int = 0, width: int = 64, activation: str = "elu", f0: float = -3.0,
       optimizer: str = "lbfgs", smooth: float = 100.0, l2: float = 1e-2, stages: int = 4, iters: int = 5000,
       rtol: float = 1e-3, lr: float = 1e-3, n_ensemble: int = 2, resample: bool = True,
       seed: int = 0, smoothness: str = "rho", warmup: bool | str = "auto", progress: bool = False) -> Reconstruction:
    """The 'NN' representation rho_a = omega_a softplus(net(const)_a); defaults measured on the
    benchmark (see the module docstring). ``progress``: a tqdm bar over the optimiser's chunks."""
    n = len(prob.omega)
    if depth == 0 and not resample and isinstance(n_ensemble, int) and n_ensemble > 1:
        raise ValueError(f"n_ensemble = {n_ensemble} with resample=False: every member of the list (depth 0) "
                         f"starts from f0, so all would be the same fit; resample, or use n_ensemble=1")
    rho, band, diag = _ensemble(lambda: ListNet(n, depth, width, activation, f0), prob, n_ensemble=n_ensemble,
                                seed=seed, resample=resample, warmup=warmup, optimizer=optimizer, l2=l2,
                                smooth=smooth, stages=stages, iters=iters, rtol=rtol, lr=lr, smoothness=smoothness,
                                progress=progress, label="nn")
    diag.update(depth=depth, activation=activation, optimizer=optimizer, n_ensemble=n_ensemble)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "nn", band, diag)


def p2p(prob: Problem, *, depth: int = 3, width: int = 64, scale: float | None = None,
        optimizer: str = "lbfgs", smooth: float = 100.0, l2: float = 1e-3, stages: int = 4, iters: int = 2000,
        rtol: float = 1e-3, lr: float = 1e-3, n_ensemble: int = 2, resample: bool = True, seed: int = 0,
        smoothness: str = "rho", warmup: bool | str = True, progress: bool = False) -> Reconstruction:
    """The 'NN-P2P' representation rho(omega) = omega softplus(net(omega / scale)). A network pass
    costs ~10x the list's, so ``iters`` per stage is 2000; a benchmark reconstruction (an
    ensemble of 2, each member with its warm-up) takes 20-100 s on one core. ``scale``: None for omega_max / 5.
    ``progress``: a tqdm bar over the optimiser's chunks."""
    if scale is None:
        if not prob.omega.max() > 0:
            raise ValueError("p2p needs a grid with omega_max > 0 for its default scale (omega_max / 5)")
        scale = float(prob.omega.max()) / 5.0
    scale = check_positive(scale, "scale")
    if not np.isfinite(float(prob.omega.max()) / scale):
        raise ValueError(f"scale is too small: omega_max / scale overflows, got {scale!r}")
    rho, band, diag = _ensemble(lambda: PointNet(depth, width, scale), prob, n_ensemble=n_ensemble, seed=seed,
                                resample=resample, warmup=warmup, optimizer=optimizer, l2=l2, smooth=smooth,
                                stages=stages, iters=iters, rtol=rtol, lr=lr, smoothness=smoothness,
                                progress=progress, label="p2p")
    diag.update(depth=depth, scale=scale, optimizer=optimizer, n_ensemble=n_ensemble)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "p2p", band, diag)
