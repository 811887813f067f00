"""Reproduction ``phi4-flow``: an affine coupling flow for 2D phi^4, made exact by neural MCMC,
against HMC; and mode collapse in the broken phase, fixed by the Z2-equivariant flow.

Physics point: the standard form S = sum_x [sum_mu (phi(x+mu) - phi(x))^2 + m2 phi^2 + lam phi^4]
at m2 = -4, lam = 8, i.e. hopping kappa = 0.25, lambda = 0.5 (DESIGN.md conventions), on
8x8 (the targets), 16x16 (reported) and 32x32 when a GPU is present. Broken phase: the same
lambda at kappa = 0.35, where M is sharply bimodal on 8x8 (<|M|> ~ 0.78; at kappa = 0.3 the
histogram of M still has a single broad peak).

For each lattice: an HMC reference ensemble (8 chains, step size tuned to acceptance 0.8),
a flow trained by reverse KL for a fixed wall-clock budget, 2^16 (quick: 2^14) proposals
drawn from it, an independence-Metropolis chain over them (8 streams), and |M|, chi2 and
the two-point susceptibility from both, with Gamma-method errors and their pulls.
"""

from __future__ import annotations

import time

import torch

from .. import Phi4, analysis
from ..mcmc import nmcmc
from ..models import flows
from .common import Report, chain_observables, device_of, fmt, plot_histograms, plot_training, pull, settings, timed_hmc

__all__ = ["run_reproduction"]

CHECKED = ("|M|", "chi2", "chi_2pt")


def _settings(quick: bool, device):
    lattices = [8] if quick else [8, 16] + ([32] if device.type == "cuda" else [])
    return {
        "lattices": lattices,
        "train_seconds": {8: 120.0, 16: 120.0, 32: 120.0} if quick else {8: 900.0, 16: 900.0, 32: 900.0},
        "proposals": 2 ** 14 if quick else 2 ** 16,
        "hmc_samples": 4000 if quick else 40000,
        "broken_seconds": 60.0 if quick else 300.0,
        "broken_samples": 8192,
    }


# The flow and its training, chosen by ESS reached in a fixed time on 2 CPU cores (8x8, 5 min,
# loaded machine): 8 layers of (8, 8) channels in float32 at batch 64 reached ESS 0.46 where
# 16 layers of (16, 16) in float64 at batch 256 reached 0.02; the cost is dominated by the
# per-op overhead of tiny convolutions, so fewer, cheaper steps lose to many small ones.
# Adam's starting rate (cosine-decayed over the budget), by the ESS of 2^15 proposals after
# 5 min on the quiet 2-core CPU: 0.405 at 1e-3, 0.606 at 3e-3, 0.498 at 6e-3.
# benchmarks/bench_flows.py builds the same flow to reuse the checkpoint.
N_LAYERS, HIDDEN, BATCH, DTYPE, LR = 8, (8, 8), 64, torch.float32, 3e-3


def _flow_model(L, equivariant, device, seed):
    torch.manual_seed(seed)  # the initial weights
    return flows.lattice_flow((L, L), n_layers=N_LAYERS, hidden=HIDDEN, equivariant=equivariant,
                              dtype=DTYPE).to(device)


def _train(theory, L, seconds, out, name, *, equivariant=False, device):
    model = _flow_model(L, equivariant, device, seed=L)
    res = flows.train(model, action=theory.action, steps=10 ** 7, batch_size=BATCH, lr=LR, seed=L,
                      checkpoint=out / f"{name}.pt", resume=True, time_limit=seconds)
    return model, res


def _flow_chain(model, theory, n, seed):
    x, log_q, S = nmcmc.draw(model, theory.action, n, batch_size=1024, progress=True)
    chain = nmcmc.independence_metropolis(S.cpu(), log_q.cpu(), seed=seed, n_chains=8)
    return x.cpu(), chain


def run_reproduction(out, quick: bool = False, device: str | None = None, **overrides) -> dict:
    """Runs the reproduction into ``out``; ``overrides`` replace entries of the settings (tests)."""
    dev = device_of(device)
    cfg = settings(_settings(quick, dev), overrides, extra=("hmc_therm",), per_lattice=("train_seconds",),
                   streams=("proposals",))
    theory = Phi4.from_standard(-4.0, 8.0)
    report = Report(out, "phi4-flow: coupling flow + neural MCMC against HMC")
    report.add(f"Theory {theory!r} (standard form m2 = -4, lam = 8); device {dev}; quick = {quick}.",
               "Targets on 8x8: ESS >= 0.7 and Metropolis acceptance >= 0.6 after at most 15 min of "
               "training on a 2-core CPU; |M|, chi2 and chi_2pt of the flow's chain within 2 sigma of HMC.")
    summary = {}
    rows = []
    for L in cfg["lattices"]:
        ens, hmc_seconds = timed_hmc(theory, L, cfg["hmc_samples"], report.out / f"hmc-{L}x{L}-k{theory.kappa}.h5",
                                     dev, n_therm=cfg.get("hmc_therm", 500))
        hmc = analysis.measure(ens)
        model, tr = _train(theory, L, cfg["train_seconds"].get(L, 900.0), report.out, f"flow-{L}x{L}", device=dev)
        t0 = time.perf_counter()
        x, chain = _flow_chain(model, theory, cfg["proposals"], seed=L)
        sample_seconds = time.perf_counter() - t0
        meas = analysis.phi4_measurements(x.double().numpy())
        fl = chain_observables(meas, chain, analysis.phi4_observables, (L, L))
        pulls = {k: pull(fl[k], hmc[k]) for k in CHECKED}
        tau = fl["|M|"].tau_int
        summary[L] = {"ess": chain.ess, "acceptance": chain.acceptance, "train_seconds": tr.seconds,
                      "steps": tr.steps, "pulls": pulls, "tau_int_absM": tau,
                      "hmc_tau_int_absM": hmc["|M|"].tau_int}
        for k in CHECKED:
            rows.append([f"{L}x{L}", k.replace("|", "\\|"), fmt(hmc[k]), fmt(fl[k]), f"{pulls[k]:+.2f}"])
        plot_training({f"{L}x{L}": tr.history}, report.out / f"training-{L}x{L}.png")
        plot_histograms({"HMC": analysis.phi4_measurements(ens.configs)["M"], "flow chain": chain.take(meas["M"]),
                         "flow (raw)": meas["M"]}, report.out / f"hist-M-{L}x{L}.png", xlabel="M")
        # effective samples per second: chain length / (2 tau_int) over the sampling time (HMC: the
        # whole run, thermalisation and tuning included; the flow: drawing and the chain, training excluded)
        n_flow = chain.index.size
        hmc_eff = len(ens.configs) / (2 * hmc["|M|"].tau_int) / hmc_seconds
        flow_eff = n_flow / (2 * tau) / sample_seconds
        summary[L].update(hmc_eff_per_s=hmc_eff, flow_eff_per_s=flow_eff)
        report.add(f"## {L}x{L}",
                   f"Training: {tr.steps} steps in {tr.seconds:.0f} s (batch {BATCH}, {DTYPE}). Proposals: {n_flow}. "
                   f"ESS = {chain.ess:.3f} (Pareto k-hat {chain.pareto_k:.2f}), acceptance = {chain.acceptance:.3f}, "
                   f"tau_int(|M|) = {tau:.2f} "
                   f"(HMC: {hmc['|M|'].tau_int:.2f} per saved configuration).",
                   f"Effective samples of |M| per second (training excluded): flow chain {flow_eff:.0f}, "
                   f"HMC {hmc_eff:.0f} (ratio {flow_eff / hmc_eff:.1f}).")
        report.image(f"training-{L}x{L}.png", f"loss and ESS, {L}x{L}")
        report.image(f"hist-M-{L}x{L}.png", f"M histogram, {L}x{L}")
    report.add("## Observables: HMC against the flow's Markov chain")
    report.table(["lattice", "observable", "HMC", "flow NMCMC", "pull"], rows)
    summary["broken"] = _broken_phase(report, cfg, dev)
    L0 = cfg["lattices"][0]
    s0 = summary[L0]
    ok = s0["ess"] >= 0.7 and s0["acceptance"] >= 0.6 and all(abs(p) <= 2 for p in s0["pulls"].values())
    report.add(f"## Targets ({L0}x{L0})", f"ESS {s0['ess']:.3f} (>= 0.7), acceptance {s0['acceptance']:.3f} "
               f"(>= 0.6), training {s0['train_seconds']:.0f} s (<= 900), pulls "
               + ", ".join(f"{k} {v:+.2f}" for k, v in s0["pulls"].items())
               + f" (|pull| <= 2): {'met' if ok else 'MISSED'}.")
    return summary


def _broken_phase(report, cfg, dev) -> dict:
    theory = Phi4(kappa=0.35, lam=0.5)
    L = cfg["lattices"][0]
    out = {}
    for name, eq in (("plain", False), ("equivariant", True)):
        model, tr = _train(theory, L, cfg["broken_seconds"], report.out,
                           f"broken-{name}-{L}x{L}-k{theory.kappa}", equivariant=eq, device=dev)
        with torch.no_grad():
            x, log_q = model.sample(cfg["broken_samples"])
            S = theory.action(x)
        M = x.flatten(1).mean(1).cpu().numpy()
        lw = nmcmc.log_weights(S.cpu(), log_q.cpu())
        out[name] = {"fraction_M_positive": float((M > 0).mean()), "ess": nmcmc.ess(lw),
                     "reweighted_M": analysis.estimate(nmcmc.reweight(M, lw, "M"), "M"),
                     "train_seconds": tr.seconds}
        out[name]["M_samples"] = M
    plot_histograms({k: v["M_samples"] for k, v in out.items()}, report.out / "broken-M.png", xlabel="M")
    report.add(f"## Broken phase: {theory!r}, {L}x{L}",
               "The exact distribution of M is symmetric: P(M > 0) = 1/2 and <M> = 0.")
    report.table(["flow", "fraction M > 0", "ESS", "reweighted <M>", "training [s]"],
                 [[k, f"{v['fraction_M_positive']:.3f}", f"{v['ess']:.3f}",
                   fmt(v["reweighted_M"]),
                   f"{v['train_seconds']:.0f}"] for k, v in out.items()])
    report.image("broken-M.png", "M from the plain and the equivariant flow")
    for v in out.values():  # the summary is plain data (JSON)
        del v["M_samples"]
        v["reweighted_M"] = v["reweighted_M"].as_dict()
    return out
