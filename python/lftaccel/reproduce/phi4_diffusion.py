"""Reproduction ``phi4-diffusion``: a score-based diffusion model (VE SDE, sigma = 25) trained
on HMC ensembles of 2D phi^4, sampled through the fused reverse-SDE kernel, made exact by
neural MCMC on the probability-flow ODE, and run as stochastic quantization.

Theory: the hopping form with lambda = 0.022 (DESIGN.md), kappa = 0.21 (symmetric phase),
0.5 (broken) and 1.0 (deep in the broken phase; the full run only), on 32x32 (full, for a
GPU) or 8x8 with a smaller network (``--quick``, ~15 min on 2 CPU cores).

For each kappa:
  * one HMC run of 16 chains written to HDF5 (the format `lftaccel sample` writes), split by
    chain (train.split_by_chain): 8 chains train the model (5120 configurations), the other 8
    are the independent test set;
  * a ScoreUNet trained by denoising score matching for a wall-clock budget, with sign-flip
    and translation augmentation and an EMA of the weights (the EMA samples);
  * DM samples: the reverse SDE by Euler-Maruyama through the fused kernel;
  * corrected DM: the probability-flow ODE as a proposal density (ODESampler) and
    independence Metropolis over its proposals (lftaccel.mcmc.nmcmc);
  * <M>, <|M|>, chi2 = V(<M^2> - <M>^2), chi2_abs = V(<M^2> - <|M|>^2) and U_L with
    Gamma-method errors, for training HMC, test HMC, DM and corrected DM.

Checks. In the symmetric phase DM must agree with test HMC within 2 sigma; after correction
every phase must. In the broken phase the HMC chains do not tunnel between the two Z2
sectors (each stays where it thermalised), so M and chi2 of an HMC ensemble measure which
sectors its chains fell into, not the theory: there the checks use |M|, chi2_abs and U_L,
and the report gives each sampler's sector balance (fraction of configurations with M > 0;
exact: 1/2).

Log q of the corrected DM: ``divergence`` 'map' (flow_ode.py) is the exact density of the
samples the RK4 integrator returns, the log-determinant of each step's Jacobian (n_sites
backward passes per step). The continuous-time trace 'exact' is not: on the quick kappa = 0.5
model, with uniform steps, its log q differs from the map's with sd 20 at 12 RK4 steps and
3.4 at 16, and at 4 to 10 steps the steps fold the space (a Jacobian with det <= 0: no
density at all, which the 'map' mode refuses). The kappa = 0.21 model is smoother (sd 0.34
at 4 steps, 0.011 at 8). The runs use steps that refine toward t = eps (flow_ode.time_grid,
rho = 2): on quick kappa = 0.5 models they do not fold at 6 or 8 steps, and the ESS rises
from 0.03 (16 uniform steps) to 0.11-0.16 (6 steps, 128 proposals; 0.39 at kappa = 0.21).
'hutchinson' (one Rademacher probe per trajectory) gives log q-hat = log q + delta, and the
Metropolis chain then targets p(x) E_u[exp(-delta)], not p; measured on 8x8 (kappa = 0.21)
a second probe puts sd(delta) at 1.7 and 256 proposals reach ESS 0.015, against 0.36 with the
map at 4 steps. The runs use 'map'; with 'hutchinson' the report gives sd(delta).
The map's log q was checked on the quick kappa = 0.21 model (6 steps): each step's
log-determinant against central differences (absolute difference < 1e-9), the float32
network against its float64 copy (3e-5 in log q), and the normalisation E_q[p'/q] = 1.03 +-
0.02 for a Gaussian p' with the covariance of an independent HMC run. Three sets of proposals
(1024, 4096, 4096), reweighted, gave <|M|> 0.1632(59), 0.1708(33), 0.1600(31) against HMC's
0.16054(28) (chi^2 5.8 for 2 degrees of freedom between the sets), and U_L 0.120(50),
0.053(34), 0.025(32) against 0.0148(30). All 9216 reweighted together: <|M|> 0.1652(21)
(+2.2 sigma), U_L 0.046(21) (+1.5 sigma); a bias of <|M|> above 0.009 is excluded at 2 sigma,
a smaller one is not resolved.

Stochastic quantization: the learnt score at time t_sq as a Langevin drift (learnt_langevin),
started from DM samples, against the physical Langevin sampler (drift -dS/dphi, the same
step eps) and HMC: histograms of M and the connected slice correlator C(t). Its equilibrium
is p_t, the data smoothed by Gaussian noise of variance c^2 sigma_t^2 per site; t_sq = 0.05
(c sigma_t = 0.19 at kappa = 0.21) shifts chi2 by 0.04. Smaller t is not better: the network
predicts the noise z and score = -z_hat / (c sigma_t), so its error is amplified 1/sigma_t
times; measured with the quick model at t = 1e-3 the learnt drift's equilibrium had chi2 0.25
against 2.50 (HMC). Both Langevin chains are unadjusted: each carries an O(eps) bias.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import torch

from .. import Phi4, analysis
from ..mcmc import HMC, Langevin, nmcmc, run
from ..models import diffusion as dm
from ..models._loop import data_digest
from .common import Report, _plt, chain_observables, device_of, fmt, plot_histograms, pull, settings

__all__ = ["run_reproduction"]

LAM = 0.022
TRAIN_CHAINS, TEST_CHAINS = 8, 8
OBSERVABLES = ("M", "|M|", "chi2", "chi2_abs", "U_L")
CHECKED_SYMMETRIC = ("M", "|M|", "chi2", "U_L")
CHECKED_BROKEN = ("|M|", "chi2_abs", "U_L")
# Phase label for the checks, between the two published points (kappa_c of the free field is
# 0.25): measured on 8x8 HMC, kappa = 0.21 has <|M|> = 0.16 and U_L ~ 0 (symmetric), kappa = 0.5
# <|M|> = 4.83 and U_L = 2/3 (ordered).
BROKEN_ABOVE = 0.3


def _settings(quick: bool, device):
    if quick:
        return {"L": 8, "kappas": (0.21, 0.5), "n_train": 5120, "channels": (16, 32), "emb_dim": 32,
                "train_seconds": 120.0, "batch": 128, "lr": 1e-3, "dm_samples": 1024, "sde_steps": 200,
                "proposals": 512, "ode_steps": 6, "divergence": "map", "sq_kappas": (0.21,),
                "sq_chains": 128, "sq_steps": 1500, "sq_eps": 0.01, "sq_record": 30, "sq_t": 0.05}
    return {"L": 32, "kappas": (0.21, 0.5, 1.0), "n_train": 5120, "channels": (32, 64, 64), "emb_dim": 128,
            "train_seconds": 1800.0, "batch": 64, "lr": 2e-4, "dm_samples": 5120, "sde_steps": 500,
            "proposals": 1024, "ode_steps": 32, "divergence": "map", "sq_kappas": (0.21, 0.5, 1.0),
            "sq_chains": 256, "sq_steps": 10000, "sq_eps": 0.01, "sq_record": 100, "sq_t": 0.05}


def _hmc(theory, L, n_train, out, device):
    """One run of TRAIN_CHAINS + TEST_CHAINS chains (HDF5); the chains never interact."""
    n_chains = TRAIN_CHAINS + TEST_CHAINS
    sampler = HMC(theory, (L, L), n_chains=n_chains, seed=1000 + int(round(100 * theory.kappa)), device=device)
    path = out / f"hmc-{L}x{L}-k{theory.kappa}.h5"
    n_total = 2 * n_train  # as many test configurations as training ones
    return run(sampler, n_total, n_therm=1000, spacing=4, path=path, resume=path.exists(), progress=True)


def _observables(measurements: dict, L: int, correlator: bool = False) -> dict:
    """measurements by chain (n, n_chains, ...) -> name -> Estimate; with ``correlator`` also
    the connected slice correlator G(t), t = 0..L/2."""
    obs = analysis.phi4_observables(measurements, (L, L))
    names = OBSERVABLES + (tuple(f"G({t})" for t in range(L // 2 + 1)) if correlator else ())
    return {k: analysis.estimate(obs[k], k) for k in names}


def _iid(meas: dict) -> dict:
    """Independent samples as one chain: (n, 1, ...)."""
    return {k: np.asarray(v)[:, None] for k, v in meas.items()}


def _score_fn(ema):
    """Score of the scaled field y = phi / c as the samplers call it (float64 in, float64 out)."""
    module = ema.module
    dtype = module.dtype

    def fn(y, t):
        return module(y.to(dtype), t).to(y.dtype)

    return fn


def _train(data_phi, L, kappa, cfg, out, device):
    scale = dm.FieldScale.fit(data_phi)
    sde = dm.make_sde("ve", sigma=25.0)
    torch.manual_seed(int(round(100 * kappa)))  # initial weights
    model = dm.ScoreUNet((L, L), sde, channels=cfg["channels"], emb_dim=cfg["emb_dim"]).to(device)
    name = f"dm-{L}x{L}-k{kappa}"
    # the scale and the SDE belong to the model: kept beside its checkpoint, with what the
    # training depends on, so that a rerun into the same folder resumes only the same training
    identity = {"data_sha256": data_digest(np.asarray(data_phi, dtype=np.float64)),
                "scale": scale.c, **sde.kernel_args(), "channels": list(cfg["channels"]), "emb_dim": cfg["emb_dim"],
                "batch": cfg["batch"], "lr": cfg["lr"], "train_steps": cfg.get("train_steps")}
    checkpoint, described = out / f"{name}.pt", out / f"{name}.json"
    if checkpoint.exists():
        old = json.loads(described.read_text()) if described.exists() else {}
        differ = sorted(k for k in identity if old.get(k) != identity[k])
        if differ:
            raise ValueError(f"{checkpoint} holds a training with other {', '.join(differ)} (other data or "
                             f"settings): remove it, or write to another output folder")
    described.write_text(json.dumps(identity))
    # train_steps (tests): a fixed step count, so that the model does not depend on the machine's speed
    res, ema = dm.train(model, scale.encode(torch.as_tensor(data_phi, dtype=torch.float32)),
                        steps=cfg.get("train_steps", 10 ** 7),
                        batch_size=cfg["batch"], lr=cfg["lr"], seed=L, checkpoint=checkpoint, resume=True,
                        time_limit=cfg["train_seconds"])
    return ema, scale, sde, res


def _plot_configs(panels: dict, path):
    plt = _plt()
    names = list(panels)
    k = min(len(v) for v in panels.values())
    fig, axes = plt.subplots(len(names), k, figsize=(1.8 * k, 1.9 * len(names)), squeeze=False)
    lim = max(float(np.abs(np.asarray(v[:k])).max()) for v in panels.values())
    for i, name in enumerate(names):
        for j in range(k):
            ax = axes[i, j]
            ax.imshow(np.asarray(panels[name][j]), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_correlators(curves: dict, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, (c, e) in curves.items():
        t = np.arange(len(c))
        ax.errorbar(t, c, yerr=e, marker="o", ms=3, capsize=2, lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("connected C(t)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _correlator(estimates: dict, L: int):
    """(values, errors) of G(t), t = 0..L/2, from _observables(..., correlator=True)."""
    g = [estimates[f"G({t})"] for t in range(L // 2 + 1)]
    return np.array([e.value for e in g]), np.array([e.error for e in g])


def _probe_spread(score_fn, sde, cfg, L, n=32, seed=7):
    """sd of the Hutchinson error delta: two probes on the same prior draws."""
    gen = torch.Generator().manual_seed(seed)
    x1 = sde.prior_std() * torch.randn(n, L, L, generator=gen, dtype=torch.float64)
    _, a = dm.probability_flow(score_fn, sde, x1, n_steps=cfg["ode_steps"], divergence="hutchinson", seed=seed)
    _, b = dm.probability_flow(score_fn, sde, x1, n_steps=cfg["ode_steps"], divergence="hutchinson", seed=seed + 1)
    return float((a - b).std() / math.sqrt(2.0))


def _one_kappa(kappa, cfg, report, dev) -> dict:
    L = cfg["L"]
    theory = Phi4(kappa=kappa, lam=LAM)
    out = report.out
    ens = _hmc(theory, L, cfg["n_train"], out, dev)
    by_chain = {k: ens.by_chain(v) for k, v in analysis.phi4_measurements(ens.configs).items()}
    train_meas = {k: v[:, :TRAIN_CHAINS] for k, v in by_chain.items()}
    test_meas = {k: v[:, TRAIN_CHAINS:] for k, v in by_chain.items()}
    train_phi, test_phi = dm.split_by_chain(ens, test_chains=TEST_CHAINS)
    ema, scale, sde, tr = _train(train_phi, L, kappa, cfg, out, dev)
    score = _score_fn(ema)

    t0 = time.perf_counter()
    y = dm.reverse_sample(score, sde, (cfg["dm_samples"], L, L), n_steps=cfg["sde_steps"], seed=L,
                          device=dev, progress=True)
    dm_seconds = time.perf_counter() - t0
    dm_phi = scale.decode(y).cpu()
    dm_meas = analysis.phi4_measurements(dm_phi)

    torch.manual_seed(int(round(1000 * kappa)))  # ODESampler's prior draws
    sampler = dm.ODESampler(score, sde, (L, L), scale=scale.c, n_steps=cfg["ode_steps"],
                            divergence=cfg["divergence"], seed=L, device=dev)
    t0 = time.perf_counter()
    x, log_q, S = nmcmc.draw(sampler, theory.action, cfg["proposals"], batch_size=256, progress=True)
    ode_seconds = time.perf_counter() - t0
    chain = nmcmc.independence_metropolis(S.cpu(), log_q.cpu(), seed=L, n_chains=8)
    ode_meas = analysis.phi4_measurements(x.cpu())
    spread = _probe_spread(score, sde, cfg, L) if cfg["divergence"] == "hutchinson" else 0.0

    rows = {"train HMC": _observables(train_meas, L), "test HMC": _observables(test_meas, L, correlator=True),
            "DM": _observables(_iid(dm_meas), L),
            "corrected DM": chain_observables(ode_meas, chain, analysis.phi4_observables, (L, L))}
    sectors = {"train HMC": float((train_meas["M"] > 0).mean()), "test HMC": float((test_meas["M"] > 0).mean()),
               "DM": float((np.asarray(dm_meas["M"]) > 0).mean()),
               "corrected DM": float((chain.take(ode_meas["M"]) > 0).mean())}
    broken = kappa > BROKEN_ABOVE
    checked = CHECKED_BROKEN if broken else CHECKED_SYMMETRIC
    pulls = {name: {k: pull(rows[name][k], rows["test HMC"][k]) for k in OBSERVABLES}
             for name in ("train HMC", "DM", "corrected DM")}
    ok_dm = all(abs(pulls["DM"][k]) <= 2 for k in checked)
    ok_corr = all(abs(pulls["corrected DM"][k]) <= 2 for k in checked)

    tag = f"{L}x{L}-k{kappa}"
    plot_histograms({"test HMC": test_meas["M"], "DM": dm_meas["M"], "corrected DM": chain.take(ode_meas["M"])},
                    out / f"hist-M-{tag}.png", xlabel="M")
    _plot_configs({"HMC": test_phi[-6:], "DM": dm_phi[:6].numpy()}, out / f"configs-{tag}.png")
    phase = "broken" if broken else "symmetric"
    report.add(f"## kappa = {kappa} ({phase} phase), {L}x{L}",
               f"HMC: 16 chains, acceptance {np.mean(ens.acceptance_history):.3f}; train {len(train_phi)} "
               f"configurations (chains 0-7), test {len(test_phi)} (chains 8-15). Field scale c = {scale.c:.4f}.",
               f"Training: {tr.steps} steps in {tr.seconds:.0f} s (batch {cfg['batch']}, channels "
               f"{cfg['channels']}), final loss {tr.history['loss'][-1]:.4f}.",
               f"DM: {cfg['dm_samples']} reverse-SDE samples ({cfg['sde_steps']} Euler-Maruyama steps) in "
               f"{dm_seconds:.0f} s. Corrected DM: {cfg['proposals']} probability-flow proposals "
               f"({cfg['ode_steps']} RK4 steps refined toward t = eps, log q: {cfg['divergence']}) in "
               f"{ode_seconds:.0f} s; "
               f"ESS {chain.ess:.3f}, Pareto k-hat {chain.pareto_k:.2f}, acceptance {chain.acceptance:.3f}, "
               f"longest rejection run "
               f"{chain.longest_rejection_run()}"
               + (f"; Hutchinson spread sd(delta) = {spread:.3f}." if cfg["divergence"] == "hutchinson" else "."))
    header = ["sampler", *[k.replace("|", "\\|") for k in OBSERVABLES], "fraction M > 0"]
    table = [[name, *[fmt(r[k]) for k in OBSERVABLES], f"{sectors[name]:.3f}"] for name, r in rows.items()]
    report.table(header, table)
    report.add("Pulls against test HMC (checked: " + ", ".join(checked) + "):")
    report.table(["sampler", *[k.replace("|", "\\|") for k in OBSERVABLES]],
                 [[name, *[f"{p[k]:+.2f}" for k in OBSERVABLES]] for name, p in pulls.items()])
    verdicts = []
    if not broken:
        verdicts.append(f"DM within 2 sigma of test HMC: {'met' if ok_dm else 'MISSED'}.")
    verdicts.append(f"Corrected DM within 2 sigma of test HMC: {'met' if ok_corr else 'MISSED'}.")
    report.add(*verdicts)
    report.image(f"hist-M-{tag}.png", f"M, kappa = {kappa}")
    report.image(f"configs-{tag}.png", f"HMC (top) and DM (bottom) configurations, kappa = {kappa}")
    summary = {"pulls": pulls, "sectors": sectors, "ess": chain.ess, "pareto_k": chain.pareto_k,
               "acceptance": chain.acceptance,
               "hutchinson_sd": spread, "train_steps": tr.steps, "train_seconds": tr.seconds,
               "dm_ok": ok_dm if not broken else None, "corrected_ok": ok_corr, "scale": scale.c,
               "values": {n: {k: r[k].as_dict() for k in OBSERVABLES} for n, r in rows.items()}}
    return summary, (theory, score, scale, sde, dm_phi, test_meas, rows["test HMC"])


def _stochastic_quantization(kappa, cfg, report, dev, theory, score, scale, sde, dm_phi, test_meas, hmc) -> dict:
    """The learnt score at t = t_min as a Langevin drift against the physical drift -dS/dphi."""
    L = cfg["L"]
    n, eps, steps, every = cfg["sq_chains"], cfg["sq_eps"], cfg["sq_steps"], cfg["sq_record"]
    t_min = cfg["sq_t"]
    blur = float(scale.c * sde.kernel(t_min)[1]) ** 2  # per-site variance of p_t's Gaussian smoothing
    x0 = dm_phi[:n].to(torch.float64).to(dev)

    def physical_units(phi, t):  # grad_phi log p = grad_y log p_y / c
        return score(phi / scale.c, t) / scale.c

    burn = steps // 3
    _, rec = dm.learnt_langevin(physical_units, x0, t=t_min, eps=eps, n_steps=steps, seed=11, record_every=every)
    learnt = rec[burn // every:].cpu()  # (n_records, n, L, L): records are the chain axis
    lang = Langevin(theory, (L, L), n_chains=n, eps=eps, n_steps=every, seed=12, device=dev)
    ens = run(lang, n * (steps - burn) // every, n_therm=burn // every, progress=True)

    def by_chain(configs_tn):
        flat = configs_tn.reshape(-1, L, L)
        meas = analysis.phi4_measurements(flat)
        return {k: np.asarray(v).reshape(configs_tn.shape[0], configs_tn.shape[1], *np.shape(v)[1:])
                for k, v in meas.items()}

    learnt_meas = by_chain(learnt)
    phys_meas = {k: ens.by_chain(v) for k, v in analysis.phi4_measurements(ens.configs).items()}
    res = {name: _observables(m, L, correlator=True) for name, m in (("Langevin, -dS/dphi", phys_meas),
                                                                    ("Langevin, learnt score", learnt_meas))}
    curves = {"test HMC": _correlator(hmc, L), **{name: _correlator(r, L) for name, r in res.items()}}
    tag = f"{L}x{L}-k{kappa}"
    plot_histograms({"test HMC": test_meas["M"], "Langevin, -dS/dphi": phys_meas["M"],
                     "Langevin, learnt score": learnt_meas["M"]}, report.out / f"sq-hist-M-{tag}.png", xlabel="M")
    _plot_correlators(curves, report.out / f"sq-corr-{tag}.png")
    report.add(f"### Stochastic quantization, kappa = {kappa}",
               f"{n} chains, eps = {eps}, {steps} steps ({burn} discarded), recorded every {every}; the learnt "
               f"drift is the score at t = {t_min}, started from DM samples; the physical one starts cold. "
               f"p_t is p_0 smoothed by Gaussian noise of variance {blur:.4f} per site, which raises chi2 and "
               f"chi2_abs by about that much and leaves the slice correlator at t > 0 unchanged.")
    report.table(["sampler", *[k.replace("|", "\\|") for k in OBSERVABLES]],
                 [["test HMC", *[fmt(hmc[k]) for k in OBSERVABLES]]]
                 + [[name, *[f"{fmt(r[k])} ({pull(r[k], hmc[k]):+.1f})" for k in OBSERVABLES]]
                    for name, r in res.items()])
    report.image(f"sq-hist-M-{tag}.png", f"M under the two Langevin drifts, kappa = {kappa}")
    report.image(f"sq-corr-{tag}.png", f"connected slice correlator, kappa = {kappa}")
    return {name: {k: pull(r[k], hmc[k]) for k in OBSERVABLES} for name, r in res.items()}


def run_reproduction(out, quick: bool = False, device: str | None = None, **overrides) -> dict:
    """Runs the reproduction into ``out``; ``overrides`` replace entries of the settings (tests)."""
    dev = device_of(device)
    cfg = settings(_settings(quick, dev), overrides, extra=("train_steps",), streams=("proposals",))
    report = Report(out, "phi4-diffusion: score-based diffusion model against HMC, and stochastic quantization")
    report.add(f"2D phi^4, hopping form, lambda = {LAM}, {cfg['L']}x{cfg['L']}, kappa in {list(cfg['kappas'])}; "
               f"device {dev}; quick = {quick}. VE SDE sigma = 25, t in [1e-3, 1].",
               "Values as value(error), Gamma method; the corrected DM's errors come from its Markov chain "
               "(8 independence-Metropolis chains). Broken phase: HMC does not tunnel between the Z2 sectors, "
               "so M and chi2 there measure the chains' sectors; the checks use |M|, chi2_abs, U_L.")
    summary = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}}
    for kappa in cfg["kappas"]:
        s, ctx = _one_kappa(kappa, cfg, report, dev)
        if kappa in cfg["sq_kappas"]:
            s["stochastic_quantization"] = _stochastic_quantization(kappa, cfg, report, dev, *ctx)
        summary[str(kappa)] = s
        (report.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
