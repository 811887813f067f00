"""Reproduction ``oscillator-fflow``: the Fourier-flow for the double-well path, made exact by
neural MCMC, against the transfer matrix of the same discretised action; and the
real-space flow beside it on the same training budget.

Setting: m = 0.5, lam = 1, beta = 10, N = 64 (a = 0.15625), V = lam (x^2 - f^2)^2 with
f in {1.0, 1.4} (checks on E0, E1 - E0, E2 - E0) and the strongly bimodal f = 1.7 (checks on
<x^2>, <x^4> and G2(tau), since the gap is too small to resolve at this beta). Both flows
are Z2-equivariant (the action is even in x), so they cannot collapse onto one well. The
Fourier-flow starts from the kink-gas prior (flows.KinkGasPrior), which carries the kinks
that the tunnelling paths need; the real-space flow from an iid Gaussian.

Exact values are those of the estimators themselves at this N: the virial E0 from the
transfer matrix's <x^2> and <x^4>, and the gaps as the cosh effective masses of the exact
correlators <x_0 x_t> and <x_0^2 x_t^2> - <x^2>^2 averaged over the same window t = 4..7
the chain's estimate uses. The asymptotic transfer-matrix gaps and the continuum values
(diagonalising H) are listed beside them.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import Oscillator, analysis, exact
from ..mcmc import nmcmc
from ..models import flows
from .common import Report, chain_observables, device_of, fmt, plot_histograms, plot_training, pull, settings

__all__ = ["run_reproduction"]

N, BETA, M, LAM = 64, 10.0, 0.5, 1.0
WINDOW = (4, 8)


def _settings(quick):
    return {"f": [1.0, 1.4, 1.7], "train_seconds": 60.0 if quick else 300.0,
            "proposals": 2 ** 14 if quick else 2 ** 16}


# The flows (both bases) and their batch; benchmarks/bench_flows.py builds the same to reuse them.
FLOW = {"n_layers": 8, "hidden": (128, 128), "equivariant": True}
BATCH = 256
LR = 1e-3


def _train(theory, basis, seconds, out, name, dev):
    torch.manual_seed(1)  # the initial weights
    model = flows.path_flow(theory, N, basis=basis, **FLOW).to(dev)
    res = flows.train(model, steps=10 ** 7, batch_size=BATCH, lr=LR, seed=1, checkpoint=out / f"{name}.pt",
                      resume=True, time_limit=seconds)
    return model, res


def _chain(model, theory, n, seed):
    x, log_q, S = nmcmc.draw(model, theory.action, n, batch_size=2048, progress=True)
    return x.cpu().double(), nmcmc.independence_metropolis(S.cpu(), log_q.cpu(), seed=seed, n_chains=8)


def _exact(theory):
    tm = exact.TransferMatrix(theory, N)
    cont = exact.continuum_spectrum(theory)
    gaps = {"E1-E0": np.mean([tm.cosh_mass(t) for t in range(*WINDOW)]),
            "E2-E0": np.mean([tm.cosh_mass(t, lambda x: x * x) for t in range(*WINDOW)])}
    return tm, cont, gaps


def _tunnelling(x, f):
    """Fraction of paths that visit both wells (min < -f/2 and max > f/2)."""
    return float(((x.min(1).values < -f / 2) & (x.max(1).values > f / 2)).double().mean())


def _sign_changes(x):
    """Mean number of sign changes of x_n along a (periodic) path: the kinks, plus the noise
    crossings of x = 0 that a kink can make several of (the exact value counts both alike)."""
    return float((x * torch.roll(x, -1, dims=1) < 0).double().sum(1).mean())


def _exact_sign_changes(tm):
    """N P(x_n x_n+1 < 0) = N (1 - <sign x_0 sign x_1>) / 2 from the transfer matrix."""
    return N * (1 - tm.correlator(np.sign, 1)) / 2


def _plot_paths(paths: dict, path):
    from .common import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, len(paths), figsize=(5 * len(paths), 3.2), squeeze=False)
    for ax, (name, x) in zip(axes[0], paths.items()):
        for k in range(min(4, len(x))):
            ax.plot(np.arange(N) * BETA / N, x[k].numpy(), lw=1)
        ax.set_title(name)
        ax.set_xlabel("tau")
        ax.set_ylabel("x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_reproduction(out, quick: bool = False, device: str | None = None, **overrides) -> dict:
    """Runs the reproduction into ``out``; ``overrides`` replace entries of the settings (tests)."""
    dev = device_of(device)
    cfg = settings(_settings(quick), overrides, streams=("proposals",))
    report = Report(out, "oscillator-fflow: Fourier-flow + neural MCMC against the transfer matrix")
    report.add(f"m = {M}, lam = {LAM}, beta = {BETA}, N = {N}; device {dev}; quick = {quick}; "
               f"training budget {cfg['train_seconds']:.0f} s per flow, {cfg['proposals']} proposals per chain "
               f"(8 streams); gap window t = {WINDOW[0]}..{WINDOW[1] - 1}.")
    summary, check_rows, compare_rows = {}, [], []
    for f in cfg["f"]:
        theory = Oscillator(BETA, M, LAM, f)
        tm, cont, gaps = _exact(theory)
        sign_changes_exact = _exact_sign_changes(tm)
        per_basis, histories, samples, paths = {}, {}, {}, {}
        for basis in ("fourier", "real"):
            model, tr = _train(theory, basis, cfg["train_seconds"], report.out, f"f{f}-{basis}", dev)
            x, chain = _chain(model, theory, cfg["proposals"], seed=int(10 * f))
            x_chain = x[torch.as_tensor(chain.index.ravel())]  # the paths in chain order, repeats included
            histories[basis] = tr.history
            xbar = x.mean(1)
            samples[f"{basis} chain"] = chain.take(xbar.numpy())
            paths[f"{basis}-flow samples, f = {f}"] = x[:4]
            per_basis[basis] = {"ess": chain.ess, "acceptance": chain.acceptance, "steps": tr.steps,
                                "fraction_right_well": float((xbar > 0).double().mean()),
                                "tunnelling_raw": _tunnelling(x, f),
                                "tunnelling_chain": _tunnelling(x_chain, f),
                                "sign_changes_raw": _sign_changes(x),
                                "sign_changes_chain": _sign_changes(x_chain),
                                "sign_changes_exact": sign_changes_exact,
                                "chain": chain, "x": x}
            compare_rows.append([f, basis, tr.steps, f"{chain.ess:.3f}", f"{chain.acceptance:.3f}",
                                 f"{per_basis[basis]['fraction_right_well']:.3f}",
                                 f"{per_basis[basis]['tunnelling_raw']:.3f}",
                                 f"{per_basis[basis]['tunnelling_chain']:.3f}",
                                 f"{per_basis[basis]['sign_changes_raw']:.2f} / "
                                 f"{per_basis[basis]['sign_changes_chain']:.2f} / "
                                 f"{per_basis[basis]['sign_changes_exact']:.2f}"])
        fb = per_basis["fourier"]
        meas = analysis.oscillator_measurements(fb["x"].numpy())
        est = chain_observables(meas, fb["chain"], analysis.oscillator_observables, theory, N, WINDOW)
        if f < 1.6:
            checks = {"E0": tm.virial_e0(), **gaps}
        else:
            checks = {"<x^2>": tm.expect(lambda v: v ** 2), "<x^4>": tm.expect(lambda v: v ** 4),
                      **{f"G2({t})": tm.correlator(lambda v: v, t) for t in range(0, N // 2 + 1, 4)}}
        pulls = {}
        for k, exact_value in checks.items():
            if k not in est:
                pulls[k] = float("nan")
                check_rows.append([f, k, "no estimate", f"{exact_value:.5f}", "", ""])
                continue
            pulls[k] = pull(est[k], exact_value)
            beside = {"E0": f"{tm.energies[0]:.5f} / {cont[0]:.5f}",
                      "E1-E0": f"{tm.gap(1):.5f} / {cont[1] - cont[0]:.5f}",
                      "E2-E0": f"{tm.gap(2):.5f} / {cont[2] - cont[0]:.5f}"}.get(k, "")
            check_rows.append([f, k, fmt(est[k]), f"{exact_value:.5f}", f"{pulls[k]:+.2f}", beside])
        summary[f] = {"pulls": pulls, **{b: {k: v for k, v in d.items() if k not in ("chain", "x")}
                                         for b, d in per_basis.items()}}
        plot_training(histories, report.out / f"training-f{f}.png")
        plot_histograms(samples, report.out / f"hist-xbar-f{f}.png", xlabel="path mean x")
        _plot_paths(paths, report.out / f"paths-f{f}.png")
    report.add("## Checks: the Fourier-flow's Markov chain against the transfer matrix",
               "Exact = the estimator's value at this N (see the module docstring); the last column gives the "
               "asymptotic transfer-matrix value / the continuum value.")
    report.table(["f", "observable", "Fourier-flow NMCMC", "exact (N = 64)", "pull", "TM asymptotic / continuum"],
                 check_rows)
    report.add("## Real-space against Fourier-space flows, equal training budgets",
               "Fraction of raw flow samples with path mean > 0 (exact: 1/2), and the fraction of paths that visit "
               "both wells (min < -f/2 and max > f/2) among raw samples and along the exact chain; and the mean "
               "number of sign changes of x along a path (kinks, plus noise crossings near x = 0) in raw samples / "
               "along the chain / exactly (transfer matrix).")
    report.table(["f", "basis", "steps", "ESS", "acceptance", "fraction x̄ > 0", "both wells (raw)",
                  "both wells (chain)", "sign changes raw / chain / exact"], compare_rows)
    for f in cfg["f"]:
        report.image(f"training-f{f}.png", f"loss and ESS, f = {f}")
        report.image(f"hist-xbar-f{f}.png", f"path mean, f = {f}")
        report.image(f"paths-f{f}.png", f"sample paths, f = {f}")
    pulls = np.array([p for s in summary.values() for p in s["pulls"].values()])
    missing = int(np.isnan(pulls).sum())
    ok = np.isfinite(pulls)
    worst = float(np.abs(pulls[ok]).max()) if ok.any() else float("nan")
    met = missing == 0 and worst <= 2
    report.add("## Targets",
               f"{len(pulls)} checks, {missing} without an estimate; largest |pull| {worst:.2f}; "
               f"{int((np.abs(pulls[ok]) > 2).sum())} beyond 2 sigma; sum of pull^2 = "
               f"{float((pulls[ok] ** 2).sum()):.1f} for {int(ok.sum())} checks. "
               f"Every check within 2 sigma: {'met' if met else 'MISSED'}. (With {len(pulls)} "
               f"partly correlated checks, a correct sampler has all within 2 sigma only with probability about "
               f"0.95^{len(pulls)} = {0.95 ** len(pulls):.2f}; the sum of pull^2 against the number of checks is the "
               "fairer summary.)")
    return summary
