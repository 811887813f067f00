"""Reproduction ``xy-can``: continuous autoregressive networks for the 2D XY model across the
Kosterlitz-Thouless region, made exact by neural MCMC and checked against HMC.

At each temperature:
  * an HMC reference (8 chains, step size tuned to acceptance 0.8);
  * the CAN, trained by the variational free energy, then by maximum likelihood on a second,
    independent HMC ensemble (the same settings, another seed);
  * the CAN's variational free energy F_q = <E + T ln q> per site, an upper bound on F;
  * proposals from the CAN, averaged over the lattice's point group (q_G, exact; the bare
    network's ESS and F_q are reported beside), an independence-Metropolis chain over them
    (8 streams, 10 % burn-in each) and reweighting, with the energy per site, the helicity
    modulus, the vortex density and the spin correlation from the raw samples, the chain and
    reweighting (Gamma-method errors; the chain's the larger of that and its streams'
    spread), and the weights' Pareto k-hat;
  * the check: energy and helicity modulus of the chain within 2 sigma of HMC.
Then: the helicity modulus against T with the line 2T/pi and its crossing temperature for
each L (against the infinite-volume T_KT = 0.8929 of Hasenbusch, J. Phys. A 38 (2005)
5869); vortex maps of samples below and above the transition; ESS and acceptance against
T; and, at 8x8 and T = 0.9, the Beta mixture against the von Mises mixture, each trained
from scratch for the same time.

Schedule. For each lattice (8x8 and 16x16; 32x32 on a GPU) the temperatures are scanned from
hot to cold; every colder temperature starts from the previous one's (fitted) network, which
is how a scan is cheapest to train. At the hottest temperature the smallest lattice trains
from scratch with beta annealing, and every larger lattice starts from the next smaller one's
network there: the masked convolutions' weights do not depend on L (the periodic
neighbourhoods are buffers, rebuilt for each shape), so a network trained on 8x8 already
holds the local correlations. Measured at T = 1.1 (16x16, one CPU thread, 600 s of training
in all, F_q per site of 2048 proposals, errors ~2e-4): from scratch with annealing
F_q = -2.5395; 300 s on 8x8 then 300 s on 16x16, F_q = -2.5424, KL(q||p) lower by 0.7 nats.

The full scan (2-core CPU, ~2 h 35 min; 16384 proposals at 8x8, 8192 at 16x16):
ESS (point-group average; bare in brackets) 0.905-0.934 (0.685-0.787) at 8x8; at 16x16,
T = 1.3 .. 0.7: 0.616 (0.320), 0.392 (0.152), 0.387 (0.106), 0.387 (0.110), 0.436 (0.184),
0.459 (0.021), 0.447 (0.185), k-hat 0.12-0.30 (8x8 -0.02-0.25). 28 pulls, 1 outside 2 sigma
(1.3 expected for an exact sampler): the energy at 16x16, T = 1.1, -2.55 (chain -1.2031(21)
against HMC -1.1962(18); the independent HMC ensemble of the fit gives -1.1993(16)); sum of
squares 25.7 for 28 (p = 0.59). Crossings of Y with 2T/pi at 0.9603(10) (8x8) and 0.9377(24)
(16x16), extrapolated with the leading 1/ln(L)^2 form to 0.909(6) against 0.8929. The raw
proposals miss HMC by up to 19 sigma (16x16, T = 1.1: vortex density 0.0522 against 0.0439,
helicity 0.125 against 0.254), the exact estimates do not.

Why the maximum-likelihood phase. Trained by the variational free energy alone, the 16x16
networks failed the check at and below T = 1 (previous full scan: 4 of 28 pulls outside
2 sigma, all at 16x16; ESS 0.08-0.30, k-hat 0.5-0.8) and their estimates leaned toward q
whatever the error bar: at T = 1.0 seven independent sets of 8192 proposals from one network
reweighted to Y 0.500-0.531 against HMC's 0.4920(63) (confirmed by checkerboard Metropolis,
0.4922(21)). Y split as <cos term> - beta <I_mu^2> / (2V) (I_mu the current, the sum of
sin(theta_x - theta_x+mu)) had the cosine term right and the current fluctuation 7-25 % short
(0.13-0.16 against 0.176). Neither capacity nor reach nor training length was the cause:
trained from scratch at T = 1.0 for the same 1925 steps (one thread, 4096 bare proposals),
32 channels gave F_q -2.42564(9) and depth 5 -2.42459(10) against the default's -2.42626(8),
current term 0.133 and 0.128 against 0.132; a first layer of half-width 5 (494 steps in
1200 s against 1875) F_q -2.4212 against -2.4297; a first layer also fed causal lattice-wide
winding features -2.42625(9) and 0.130; continued training levelled off (F_q -2.43014 /
-2.43017 / -2.43023 after 480 / 960 / 1440 s, current 0.153-0.158). HMC's x-current
correlation summed within Chebyshev distance r placed the shortfall at distances 1-5, well
inside the network's reach: 0.401 against 0.380 at r = 1, 0.362 against 0.297 at r = 4,
0.172 against 0.131 over the lattice. It is the objective: KL(q || p) is mode-seeking and
leaves q narrower than p, the weights heavy-tailed; the mass-covering KL(p || q), maximum
likelihood on an HMC ensemble independent of the reference (lftaccel.models.can.train.fit),
cures it. The previous scan's 16x16 networks, each fitted for 300 s on 20000 configurations,
before -> after: T = 1.0 ESS 0.109 -> 0.381, k-hat 0.67 -> 0.24, helicity 0.482(22) ->
0.4928(94); T = 0.9 ESS 0.240 -> 0.435, k-hat 0.56 -> 0.23, helicity 0.6474(23) ->
0.6384(45) against HMC's 0.6390(25); at T = 1.0 .. 0.7 3 of 8 pulls outside 2 sigma before,
none after. F_q rises a little (-2.43027 -> -2.42899 at T = 1.0: the fit does not minimise
it) and the raw samples come from a q wider than p (raw helicity low), the safe side for
importance weights.

Errors. At ESS ~0.1-0.3 the Gamma method's error of an independence chain is itself
uncertain: on a case with a known answer (lftaccel.mcmc.nmcmc's docstring) it was 7-19 % too
small. Chains drop 10 % burn-in and report the larger of the Gamma error and the spread of
their 8 streams (reproduce.common.chain_observables), and the table gives the weights'
Pareto k-hat: above 0.5 the estimates converge slowly and can lean toward q, above 0.7 they
are unreliable.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import torch

from .. import XY, analysis
from ..mcmc import nmcmc
from ..models import can
from ..models._loop import weights_digest
from .common import Report, _plt, chain_observables, device_of, fmt, pull, settings, timed_hmc

__all__ = ["run_reproduction"]

T_KT = 0.8929
CHECKED = ("energy", "helicity")
# Network and training, chosen on 8x8 at T = 0.9 (2-core CPU): 16 channels, depth 3,
# 4 components, batch 128, Adam 3e-3 reached ESS 0.28 in 400 steps (260 s). Annealing 0.98 per
# step reaches the target beta within the ~250 steps of the quick budget.
CHANNELS, DEPTH, COMPONENTS, BATCH, LR, ANNEAL = 16, 3, 4, 128, 3e-3, 0.98
# Proposals are averaged over the lattice's point group (D4, |G| = 8): on 8x8 at T = 0.8 the ESS
# rose from 0.40 to 0.81 for 1.8x the sampling time (7 more log q passes at 16x16: 2.2 s ->
# 4 s per 512), on 16x16 at T = 1.1 from 0.014 to 0.178; the half-lattice translations on top
# (|G| = 32) gave 0.92 on 8x8 for 4.5x the time.
SAMPLING_POINT_GROUP = True
# The maximum-likelihood phase after the variational one (lftaccel.models.can.train: the
# mass-covering KL(p || q) bounds the weights that the mode-seeking KL(q || p) leaves heavy-tailed).
# Its data: an HMC ensemble seeded TRAIN_SEED + L, independent of the reference (seeded L).
TRAIN_SEED, FIT_BATCH, FIT_LR = 1000, 256, 1e-3


def _settings(quick: bool, device):
    return {
        "lattices": [8] if quick else [8, 16] + ([32] if device.type == "cuda" else []),
        "temperatures": (1.2, 1.0, 0.9, 0.8) if quick else (1.3, 1.1, 1.0, 0.95, 0.9, 0.8, 0.7),
        # seconds for the first temperature (from scratch, or from the smaller lattice) and each later one, per L
        "first_seconds": {8: 150.0} if quick else {8: 420.0, 16: 1200.0, 32: 1800.0},
        "next_seconds": {8: 75.0} if quick else {8: 180.0, 16: 480.0, 32: 900.0},
        # then maximum likelihood on an independent HMC ensemble (lftaccel.models.can.train, fit)
        "fit_seconds": {8: 30.0} if quick else {8: 60.0, 16: 300.0, 32: 300.0},
        "proposals": {8: 2 ** 12} if quick else {8: 2 ** 14, 16: 2 ** 13, 32: 2 ** 13},
        "hmc_samples": 4000 if quick else 20000,
        "compare_seconds": 120.0 if quick else 420.0,
        "compare_lattice": 8,
    }


def _model(L, conditional, device):
    torch.manual_seed(L)  # the initial weights
    return can.CAN((L, L), conditional=conditional, n_components=COMPONENTS, channels=CHANNELS,
                   depth=DEPTH).to(device)


def _hmc(beta, L, n_samples, out, device):
    return timed_hmc(XY(beta), L, n_samples, out / f"hmc-{L}x{L}-b{beta:.4f}.h5", device)


def _train_ensemble(beta, L, n_samples, out, device):
    """An HMC ensemble for the maximum-likelihood phase, independent of the reference one
    (another seed), so that the check compares the exact CAN with data it never saw."""
    return timed_hmc(XY(beta), L, n_samples, out / f"hmc-train-{L}x{L}-b{beta:.4f}.h5", device, seed=TRAIN_SEED + L)


def network_file(out, name, *, fitted: bool):
    """The checkpoint of the network ``name`` in ``out``: after the variational training
    (``_train``'s) or after the maximum-likelihood fit (``_fit``'s)."""
    return out / f"{name}{'-fit' if fitted else ''}.pt"


def _resumable(model, path) -> str:
    """The digest of the weights a stage starts from; a checkpoint of the stage that started from
    other weights (the stage before it trained on since, say) is removed, so the stage runs
    again from these instead of returning the old result."""
    start = weights_digest(model)
    if path.exists():
        saved = torch.load(path, weights_only=False, map_location="cpu").get("settings") or {}
        if saved.get("start") != start:
            print(f"{path.name} started from other weights (an earlier stage changed): training it again")
            path.unlink()
    return start


def _fit(model, ens, seconds, out, name):
    path = network_file(out, name, fitted=True)
    # (a smaller batch only where an hmc_samples override leaves fewer configurations: can.fit
    # refuses a batch larger than its data)
    batch = min(FIT_BATCH, len(ens.configs))
    return can.fit(model, ens.configs, steps=10 ** 7, batch_size=batch, lr=FIT_LR, seed=2, checkpoint=path,
                   resume=True, time_limit=seconds, start=_resumable(model, path))


def _train(model, beta, seconds, out, name, *, anneal):
    path = network_file(out, name, fitted=False)
    return can.train(model, beta, steps=10 ** 7, batch_size=BATCH, lr=LR, anneal=anneal, seed=1, checkpoint=path,
                     resume=True, time_limit=seconds, start=_resumable(model, path))


def _exact(model, beta, n, seed):
    """Proposals, their chain, and the observables from raw samples, chain and reweighting.

    The network is trained bare; its proposals are averaged over the lattice's point group
    (q_G, see lftaccel.models.can.network) before the chain, and the bare q's ESS and F_q are
    kept beside q_G's."""
    theory = XY(beta)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    saved = model.reflect, model.point_group, model.translations
    try:
        model.reflect, model.point_group, model.translations = False, False, 1
        x, log_q_bare, S_bare = nmcmc.draw(model, theory.action, n, batch_size=512, progress=True)
        model.point_group = SAMPLING_POINT_GROUP
        parts = [model.symmetrise(x[i:i + 512], log_q_bare[i:i + 512]) for i in range(0, n, 512)]
    finally:
        model.reflect, model.point_group, model.translations = saved
    x, log_q = (torch.cat([p[j] for p in parts]).cpu() for j in range(2))
    log_q_bare = log_q_bare.cpu()
    S = S_bare = S_bare.cpu()  # g is a symmetry of the action: S(g theta) = S(theta)
    chain = nmcmc.independence_metropolis(S, log_q, seed=seed, n_chains=8)
    seconds = time.perf_counter() - t0
    meas = analysis.xy_measurements(x.numpy(), beta)
    raw = {k: analysis.estimate(o, k) for k, o in analysis.xy_observables({k: v[:, None] for k, v in
                                                                               meas.items()}).items()}
    exact = chain_observables(meas, chain, analysis.xy_observables)
    log_w = nmcmc.log_weights(S, log_q)
    rew = {k: analysis.estimate(nmcmc.reweight(meas[m], log_w, k), k)
           for k, m in (("energy", "energy"), ("helicity", "helicity"), ("vortex_density", "vortex"))}
    V = x[0].numel()

    def free_energy(S, log_q):
        f = (S + log_q).numpy() / (beta * V)  # E/V + T ln q / V per proposal
        return analysis.Estimate("F_q", float(f.mean()), float(f.std(ddof=1) / math.sqrt(len(f))))

    return {"x": x, "chain": chain, "raw": raw, "exact": exact, "reweighted": rew, "F_q": free_energy(S, log_q),
            "F_q_bare": free_energy(S_bare, log_q_bare), "ess_bare": nmcmc.ess(nmcmc.log_weights(S_bare, log_q_bare)),
            "seconds": seconds, "meas": meas}


def _pull_statistics(pulls):
    """How many pulls leave 2 sigma against how many an exact sampler would (4.55 % each), and
    their sum of squares against chi^2 with one degree of freedom per pull."""
    from scipy import stats

    pulls = np.asarray(pulls, dtype=float)
    chi2 = float((pulls ** 2).sum())
    return {"n_pulls": len(pulls), "n_outside_2sigma": int((np.abs(pulls) > 2).sum()),
            "expected_outside_2sigma": float(len(pulls) * 2 * stats.norm.sf(2)),
            "largest_pull": float(np.abs(pulls).max()), "chi2": chi2, "chi2_p": float(stats.chi2.sf(chi2, len(pulls)))}


def _extrapolate(l1, c1, l2, c2):
    """T_KT from two crossings (T, error) at sizes l1 < l2 through T*(L) = T_KT + c / ln(L)^2."""
    (t1, e1), (t2, e2) = c1, c2
    a1, a2 = math.log(l1) ** 2, math.log(l2) ** 2
    return (t2 * a2 - t1 * a1) / (a2 - a1), math.hypot(a2 * e2, a1 * e1) / (a2 - a1)


def _crossing(temps, hel):
    """Temperature where Y(T) = 2T/pi, by linear interpolation between the bracketing points,
    with the error propagated from the two Y's; None when Y - 2T/pi does not change sign."""
    d = [(T, h.value - 2 * T / math.pi, h.error) for T, h in sorted(zip(temps, hel))]
    for (t1, d1, e1), (t2, d2, e2) in zip(d, d[1:]):
        if d1 > 0 >= d2:
            slope = (d2 - d1) / (t2 - t1)
            tc = t1 - d1 / slope
            w = (tc - t1) / (t2 - t1)
            err = math.hypot((1 - w) * e1, w * e2) / abs(slope)
            return tc, err
    return None


def run_reproduction(out, quick: bool = False, device: str | None = None, **overrides) -> dict:
    """Runs the reproduction into ``out``; ``overrides`` replace entries of the settings (tests)."""
    dev = device_of(device)
    cfg = settings(_settings(quick, dev), overrides, streams=("proposals",),
                   per_lattice=("first_seconds", "next_seconds", "fit_seconds", "proposals"))
    report = Report(out, "xy-can: continuous autoregressive networks for the XY model, made exact")
    report.add(f"Device {dev}; quick = {quick}. CAN: von Mises mixtures of {COMPONENTS}, {CHANNELS} channels, "
               f"depth {DEPTH}, batch {BATCH}, Adam {LR} (cosine). The first temperature of the smallest lattice "
               f"trains from scratch, annealed (beta_t = beta (1 - {ANNEAL}^t)); that of each larger lattice "
               "starts from the next smaller lattice's network there (the weights do not depend on L); every "
               "other temperature continues from the previous one. At every temperature the variational "
               "training (minimising F_q) is followed by maximum likelihood ("
               + ", ".join(f"{v:g} s at {L}x{L}" for L, v in sorted(cfg["fit_seconds"].items())) + ") on "
               f"an HMC ensemble independent of the reference one (batch {FIT_BATCH}, Adam {FIT_LR}): the "
               "mode-seeking KL(q || p) leaves q narrower than p and the weights heavy-tailed, the mass-covering "
               "KL(p || q) bounds them (lftaccel.models.can.train). The raw samples then come from a q wider "
               "than p (their helicity modulus is low); the exact estimates do not depend on that.",
               "Check at every temperature: energy and helicity modulus of the neural-MCMC chain within "
               "2 sigma of HMC (with many checks an exact sampler leaves 2 sigma in 4.55 % of them: the "
               "count is reported against that expectation).")
    summary = {"lattices": {}, "settings": {k: v for k, v in cfg.items()}}
    smaller = None
    for L in sorted(cfg["lattices"]):  # each lattice starts from the next smaller one's network
        summary["lattices"][L] = _scan(L, cfg, report, dev, smaller)
        smaller = L
    _plots(summary, report)
    summary["comparison"] = _compare_conditionals(cfg, report, dev)
    pulls = [p for s in summary["lattices"].values() for r in s["rows"] for p in r["pulls"].values()]
    summary.update(_pull_statistics(pulls))
    st = summary
    report.add(f"**Checks: {st['n_pulls']} pulls, {st['n_outside_2sigma']} outside 2 sigma (expected "
               f"{st['expected_outside_2sigma']:.1f} for an exact sampler with Gaussian errors); largest |pull| "
               f"{st['largest_pull']:.2f}; sum of squared pulls {st['chi2']:.1f} for {st['n_pulls']} (p = "
               f"{st['chi2_p']:.3f}).** The energy and helicity at one temperature are correlated, so the "
               "p-value is indicative.")
    (report.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _scan(L, cfg, report, dev, smaller=None):
    """The temperature scan on L x L; ``smaller``: the lattice scanned before, whose network at
    the hottest temperature starts this one (None: train from scratch with annealing)."""
    temps = sorted(cfg["temperatures"], reverse=True)
    model = _model(L, "vonmises", dev)
    anneal = ANNEAL
    if smaller is not None:
        state = torch.load(network_file(report.out, f"can-{smaller}x{smaller}-T{temps[0]:g}",
                                        fitted=cfg["fit_seconds"][smaller] > 0), weights_only=False, map_location=dev)
        model.load_state_dict(state["model"])
        anneal = 0.0
    rows, table, keep = [], [], {}
    for k, T in enumerate(temps):
        beta = 1.0 / T
        ens, hmc_seconds = _hmc(beta, L, cfg["hmc_samples"], report.out, dev)
        hmc = analysis.measure(ens)
        seconds = cfg["first_seconds"][L] if k == 0 else cfg["next_seconds"][L]
        tr = _train(model, beta, seconds, report.out, f"can-{L}x{L}-T{T:g}", anneal=anneal if k == 0 else 0.0)
        ft = None
        if cfg["fit_seconds"][L] > 0:
            train_ens, _ = _train_ensemble(beta, L, cfg["hmc_samples"], report.out, dev)
            ft = _fit(model, train_ens, cfg["fit_seconds"][L], report.out, f"can-{L}x{L}-T{T:g}")
        res = _exact(model, beta, cfg["proposals"][L], seed=1000 * L + k)
        chain = res["chain"]
        pulls = {o: pull(res["exact"][o], hmc[o]) for o in CHECKED}
        row = {"T": T, "ess": chain.ess, "pareto_k": chain.pareto_k, "acceptance": chain.acceptance,
               "F_q": res["F_q"].value,
               "F_q_err": res["F_q"].error, "ess_bare": res["ess_bare"], "F_q_bare": res["F_q_bare"].value,
               "F_q_bare_err": res["F_q_bare"].error, "train_steps": tr.steps, "train_seconds": tr.seconds,
               "fit_steps": ft.steps if ft else 0, "fit_seconds": ft.seconds if ft else 0.0,
               "sample_seconds": res["seconds"], "pulls": pulls,
               **{f"{src}_{o}": [r[o].value, r[o].error] for src, r in
                  (("hmc", hmc), ("exact", res["exact"]), ("raw", res["raw"]), ("reweighted", res["reweighted"]))
                  for o in ("energy", "helicity", "vortex_density")}}
        rows.append(row)
        for o in ("energy", "helicity", "vortex_density"):
            table.append([T, o.replace("_", " "), fmt(hmc[o]), fmt(res["raw"][o]), fmt(res["exact"][o]),
                          fmt(res["reweighted"][o]), f"{pull(res['exact'][o], hmc[o]):+.2f}"])
        keep[T] = res["x"][chain.index[-1]]  # the chains' last states, for the vortex maps
        if k == 0 or T == min(temps):
            _plot_correlation(L, T, hmc, res, report.out / f"corr-{L}x{L}-T{T:g}.png")
        print(f"L={L} T={T}: ESS {chain.ess:.3f} (bare {res['ess_bare']:.3f}), k-hat {chain.pareto_k:.2f}, "
              f"acceptance {chain.acceptance:.3f}, pulls {pulls}", flush=True)
    report.add(f"## {L}x{L}")
    report.add("ESS and F_q of the proposals averaged over the point group (the chain's), and of the bare "
               "network's (before averaging); k-hat, the Pareto shape of the weights' tail (nmcmc.pareto_k): "
               "above 0.5 the exact estimates converge slowly, their errors are themselves uncertain and they "
               "can lean toward q (by about two errors in the helicity at 16x16, T = 1.0, k-hat 0.5-0.7: "
               "lftaccel.reproduce.xy_can's docstring), above 0.7 they are unreliable.")
    report.table(["T", "ESS", "k-hat", "acceptance", "F_q / site", "ESS bare", "F_q / site bare",
                  "train steps (s)", "fit steps (s)", "sampling s"],
                 [[r["T"], f"{r['ess']:.3f}", f"{r['pareto_k']:.2f}", f"{r['acceptance']:.3f}",
                   fmt(analysis.Estimate("F", r["F_q"], r["F_q_err"])), f"{r['ess_bare']:.3f}",
                   fmt(analysis.Estimate("F", r["F_q_bare"], r["F_q_bare_err"])),
                   f"{r['train_steps']} ({r['train_seconds']:.0f})", f"{r['fit_steps']} ({r['fit_seconds']:.0f})",
                   f"{r['sample_seconds']:.0f}"] for r in rows])
    report.table(["T", "observable", "HMC", "CAN raw", "CAN + MCMC", "CAN reweighted", "pull (MCMC vs HMC)"], table)
    for T in (min(temps), max(temps)):
        path = report.out / f"vortices-{L}x{L}-T{T:g}.png"
        _plot_vortices(keep[T][0].numpy(), T, path)
        report.image(path, f"vortex map {L}x{L} T={T:g}")
    return {"rows": rows}


def _compare_conditionals(cfg, report, dev):
    L, T = cfg["compare_lattice"], 0.9
    beta = 1.0 / T
    out = {}
    rows = []
    for cond in ("vonmises", "beta"):
        model = _model(L, cond, dev)
        tr = _train(model, beta, cfg["compare_seconds"], report.out, f"compare-{cond}-{L}x{L}-T{T:g}", anneal=ANNEAL)
        res = _exact(model, beta, cfg["proposals"][L], seed=7)
        hmc = analysis.measure(_hmc(beta, L, cfg["hmc_samples"], report.out, dev)[0])
        out[cond] = {"ess": res["chain"].ess, "acceptance": res["chain"].acceptance, "F_q": res["F_q"].value,
                     "F_q_err": res["F_q"].error, "ess_bare": res["ess_bare"], "F_q_bare": res["F_q_bare"].value,
                     "steps": tr.steps, "pull_energy": pull(res["exact"]["energy"], hmc["energy"])}
        rows.append([cond, tr.steps, f"{res['chain'].ess:.3f}", f"{res['chain'].acceptance:.3f}", fmt(res["F_q"]),
                     f"{res['ess_bare']:.3f}", fmt(res["F_q_bare"]), f"{out[cond]['pull_energy']:+.2f}"])
    report.add(f"## Beta against von Mises mixtures ({L}x{L}, T = {T}, each trained from scratch for "
               f"{cfg['compare_seconds']:.0f} s)",
               "A lower F_q is a tighter bound (smaller KL(q || p)); ESS and acceptance measure the same from "
               "the exact side. ESS, acceptance and F_q are those of the point-group average, as in the scan; "
               "'bare' those of the network alone.")
    report.table(["conditional", "steps", "ESS", "acceptance", "F_q / site", "ESS bare", "F_q / site bare",
                  "energy pull vs HMC"], rows)
    return out


def _plots(summary, report):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    crossings = {}
    t_line = None
    for L, s in summary["lattices"].items():
        rows = sorted(s["rows"], key=lambda r: r["T"])
        T = np.array([r["T"] for r in rows])
        y = np.array([r["exact_helicity"] for r in rows])
        yh = np.array([r["hmc_helicity"] for r in rows])
        a1.errorbar(T, y[:, 0], y[:, 1], fmt="o-", ms=4, capsize=2, label=f"CAN + MCMC {L}x{L}")
        a1.errorbar(T, yh[:, 0], yh[:, 1], fmt="x", ms=5, color="k", alpha=0.5)
        a2.plot(T, [r["ess"] for r in rows], "o-", label=f"ESS {L}x{L}")
        a2.plot(T, [r["acceptance"] for r in rows], "s--", label=f"acceptance {L}x{L}")
        hel = [analysis.Estimate("Y", *r["exact_helicity"]) for r in rows]
        crossings[L] = _crossing(list(T), hel)
        t_line = T
    a1.plot(t_line, 2 * t_line / math.pi, "k--", lw=1, label="2T/pi")
    a1.axvline(T_KT, color="grey", lw=0.8, ls=":", label="T_KT (L = inf)")
    a1.set_xlabel("T")
    a1.set_ylabel("helicity modulus")
    a1.legend(fontsize=7)
    a2.set_xlabel("T")
    a2.set_ylim(0, 1)
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(report.out / "helicity-ess.png", dpi=110)
    plt.close(fig)
    report.add("## Helicity modulus and the KT transition")
    report.image(report.out / "helicity-ess.png", "helicity modulus, ESS and acceptance against T (x: HMC)")
    rows = []
    for L, c in crossings.items():
        rows.append([f"{L}x{L}", "no crossing in the scanned range" if c is None else f"{c[0]:.4f} +- {c[1]:.4f}"])
    report.table(["L", "T where Y = 2T/pi"], rows)
    report.add(f"Infinite volume: T_KT = {T_KT}. The finite-L crossing approaches it from above, slowly "
               "(logarithmic corrections, T*(L) - T_KT ~ 1/ln(L)^2).")
    found = sorted((L, c) for L, c in crossings.items() if c is not None)
    if len(found) >= 2:
        (l1, c1), (l2, c2) = found[-2], found[-1]
        t_inf, err = _extrapolate(l1, c1, l2, c2)
        summary["t_kt_extrapolated"] = (t_inf, err)
        report.add(f"Two-size extrapolation with T*(L) = T_KT + c / ln(L)^2 from L = {l1} and {l2}: "
                   f"T_KT = {t_inf:.3f} +- {err:.3f} (the leading form only; small lattices carry further "
                   "corrections).")
    summary["crossings"] = {L: c for L, c in crossings.items()}


def _plot_correlation(L, T, hmc, res, path):
    plt = _plt()
    r = np.arange(1, L // 2 + 1)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, est, style in (("HMC", hmc, "ko"), ("CAN + MCMC", res["exact"], "rs"), ("CAN raw", res["raw"], "b^")):
        v = np.array([[est[f"G({k})"].value, est[f"G({k})"].error] for k in r])
        ax.errorbar(r + (0.1 if style == "rs" else 0.2 if style == "b^" else 0), v[:, 0], v[:, 1], fmt=style,
                    ms=4, capsize=2, label=name)
    ax.set_xlabel("r")
    ax.set_ylabel("G(r) = <cos(theta_x - theta_x+r)>")
    ax.set_title(f"{L}x{L}, T = {T:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_vortices(theta, T, path):
    """Spins as arrows; plaquettes with winding +1 (vortex, red) and -1 (antivortex, blue)."""
    plt = _plt()
    th = torch.as_tensor(theta)[None]
    w = analysis.plaquette_winding(th)[0].numpy()
    L0, L1 = theta.shape
    fig, ax = plt.subplots(figsize=(5, 5))
    # axis 0 of the lattice runs along x and axis 1 along y, so that the winding's loop
    # e0 -> e1 is anticlockwise on screen and a +1 vortex (theta = atan2(y, x)) is drawn as one
    xx, yy = np.mgrid[0:L0, 0:L1]
    ax.quiver(xx, yy, np.cos(theta), np.sin(theta), pivot="mid", scale=L0 * 1.3, width=0.004)
    for sign, colour in ((1, "red"), (-1, "blue")):
        r, c = np.nonzero(w == sign)
        ax.scatter(r + 0.5, c + 0.5, s=60, c=colour, alpha=0.7)
    ax.set_title(f"T = {T:g}: {int((w == 1).sum())} vortices, {int((w == -1).sum())} antivortices")
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

