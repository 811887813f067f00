"""Sampler benchmark: fused HMC / Metropolis kernels against pure-torch samplers, and
critical slowing down of HMC and Metropolis near the 2D phi^4 critical point.

    python benchmarks/bench_samplers.py                 # --quick (default): ~2 min on 2 cores
    python benchmarks/bench_samplers.py --full          # adds L = 64 and longer chains
    python benchmarks/bench_samplers.py --device cuda
    python benchmarks/bench_samplers.py --skip-scaling  # throughput only

Part 1 (throughput). For each problem the same run times
  fused   one HMC trajectory (momentum refresh, n leapfrog steps, dH, accept/reject) of every
          chain in one call (lftaccel.mcmc.kernels.hmc_trajectory), or one checkerboard
          Metropolis sweep (metropolis_sweeps);
  torch   the same update written in pure torch (lftaccel.reference.mcmc with the torch.roll
          actions of lftaccel.reference, momenta from torch.randn): the "twin" a physicist writes;
  1-pass  HMC only: a faster pure-torch HMC (RM.hmc_trajectory_fused: every force from the
          one-pass action+grad, in-place kicks and drifts; the same trajectory to rounding),
          column 'x 1-pass' its time over the fused kernel's (for XY slower than the twin: its
          one pass takes a cosine the plain gradient does not). A helper's own torch HMC (einsum
          sums, more in place) ran 14x the fused kernel where this one ran 19x in one run: these
          are lower bounds of what torch can do, not its best. Both torch versions draw their
          momenta with torch.randn, which in float64 is a third of the twin's time (a float32
          randn and a cast to float64 take a fifth as long): what a torch user runs, not fused work.
It prints trajectories (sweeps) per second, site updates per second (chains x sites per
update / time) and the speed-up, by minimum and by median times (on a shared machine the
torch twin's time swings by 2-4x between runs; both are in the JSON). Target: the phi^4
trajectory at batch 64, 64x64, float64, 10 leapfrog steps, >= 25x faster than the torch HMC.

Part 2 (critical slowing down). 2D phi^4 at lambda = 0.022, kappa = 0.2695 (the crossing of
the L = 16 and L = 32 Binder cumulants, measured with this code: U_L = 0.41 / 0.30 at kappa =
0.2675 and 0.53 / 0.56 at 0.27). For L = 8, 16, 32 (and 64 with --full) HMC (10 leapfrog
steps, eps tuned to 80% acceptance), HMC at a fixed trajectory length of 2 ('hmc-tau2': 2 / eps
steps rounded up) and Metropolis (one sweep per update, delta tuned to 50%) run 16 chains of
20000 updates (50000 with --full), measured after every update; tau_int of |M| and of the
action density (the energy) comes from the Gamma method, in units of updates (one 10-step
trajectory = 11 force evaluations; one sweep = V local updates). The plot
critical_slowing_down.png (beside the JSON) shows tau_int against L on log-log axes with
the fitted dynamic exponent z (tau ~ L^z) between the two largest L and its error. HMC's
trajectory length 10 eps shrinks as eps is tuned down with L, so for HMC the JSON also has
tau_int and z in units of molecular-dynamics time (tau_int x 10 eps); hmc-tau2 measures the
same at a fixed length directly.
Results go to benchmarks/results/samplers-<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import lftaccel
from lftaccel.runtime import steady_malloc
from lftaccel.mcmc import HMC, Metropolis
from lftaccel.mcmc import kernels as K
from lftaccel.reference import mcmc as RM

from provenance import busy_at_start, noisy, provenance, unreliable, unreliable_line

# the pure-torch references must not page-fault at random (lftaccel/runtime.py)
STEADY_MALLOC = steady_malloc()

KAPPA_C, LAM = 0.2695, 0.022
# Part 2's samplers: HMC with 10 steps of the tuned eps (its trajectories shorten as eps is tuned
# down with L), HMC at a fixed trajectory length of 2 (the length lattice codes fix; 2 is near
# the 10 steps' length at L = 32), and Metropolis.
SCALING_SERIES = (("hmc", HMC, {"eps": 0.2, "n_leapfrog": 10}),
                  ("hmc-tau2", HMC, {"eps": 0.2, "trajectory_length": 2.0}),
                  ("metropolis", Metropolis, {"delta": 1.5}))


def _sample(fn, budget, min_samples, times):
    """Appends the seconds of calls of fn filling the budget (at least min_samples calls)."""
    t_end, n = time.perf_counter() + budget, 0
    while n < min_samples or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        n += 1


def paired_times(fns, budgets, rounds=8):
    """(min, median) seconds per call of each of fns, sampled in alternating rounds over the same
    few seconds (budgets: seconds each): this machine's speed drifts by tens of percent over
    seconds (other tenants), and timing one after the other let a ratio of minimum times swing
    with that drift (fused 0.74-1.02 ms in three runs of one build)."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, budget, ts in zip(fns, budgets, times):
            _sample(fn, budget / rounds, 1, ts)
    return [(min(ts), sorted(ts)[len(ts) // 2]) for ts in times]


def make_updates(kind, theory, batch, shape, step, device, dtype, n_leap):
    """(fused, twin, fast): one update of every chain by the kernel, by the torch twin and (HMC
    only, else None) by the one-pass pure-torch HMC (RM.hmc_trajectory_fused)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((batch, *shape), generator=g, dtype=dtype, device=device) * 0.5
    action, grad, canonical = RM.theory_twin(theory.kernel, theory._params().values())
    if kind == "hmc":
        work = torch.empty((3, *x.shape), dtype=dtype, device=device)
        e = torch.empty((4, batch), dtype=torch.float64, device=device)
        a = torch.empty(batch, dtype=torch.uint32, device=device)
        counter = [0]

        def fused():
            K.hmc_trajectory(theory, x, eps=step, n_steps=n_leap, seed=1, step=counter[0], work=work,
                             energies=e, accepted=a)
            counter[0] += 1

        y = x.clone()

        def twin():
            nonlocal y
            p = torch.randn(y.shape, dtype=dtype, device=device)
            u = torch.rand(batch, dtype=torch.float64, device=device)
            y, _, _ = RM.hmc_trajectory(y, p, u, action, grad, step, n_leap, canonical)

        z = x.clone()
        action_and_grad = RM.theory_twin_fused(theory.kernel, theory._params().values())

        def fast():
            nonlocal z
            p = torch.randn(z.shape, dtype=dtype, device=device)
            u = torch.rand(batch, dtype=torch.float64, device=device)
            z, _, _ = RM.hmc_trajectory_fused(z, p, u, action_and_grad, step, n_leap, canonical)
        return fused, twin, fast
    else:
        acc = torch.empty(batch, dtype=torch.float64, device=device)
        counter = [0]

        def fused():
            K.metropolis_sweeps(theory, x, delta=step, n_sweeps=1, seed=1, step=counter[0], accepted=acc)
            counter[0] += 1

        y = x.clone()
        params = list(theory._params().values())

        def twin():
            nonlocal y
            u = [(torch.rand(y.shape, dtype=dtype, device=device), torch.rand(y.shape, dtype=dtype, device=device))
                 for _ in range(2)]
            y, _ = RM.metropolis_sweep(y, u, theory.kernel, params, step)
    return fused, twin, None


def throughput(device, dtype, quick):
    problems = [
        ("hmc", lftaccel.Phi4(0.21, 0.022), 64, (64, 64), 0.1),
        ("hmc", lftaccel.Phi4(0.21, 0.022), 1, (32, 32), 0.1),
        ("hmc", lftaccel.Phi4(0.21, 0.022), 16, (32, 32), 0.1),
        ("hmc", lftaccel.Phi4(0.21, 0.022), 1, (256, 256), 0.05),
        ("hmc", lftaccel.Phi4(0.21, 0.022), 16, (8, 8, 8, 8), 0.05),
        ("hmc", lftaccel.XY(1.0), 64, (64, 64), 0.1),
        ("hmc", lftaccel.Oscillator(10.0, 0.5, 1.0, 1.4), 256, (64,), 0.2),
        ("metropolis", lftaccel.Phi4(0.21, 0.022), 64, (64, 64), 1.0),
        ("metropolis", lftaccel.XY(1.0), 64, (64, 64), 1.0),
    ]
    if not quick:
        problems += [("hmc", lftaccel.Phi4(0.21, 0.022), 256, (64, 64), 0.1),
                     ("hmc", lftaccel.Phi4(0.21, 0.022), 4, (512, 512), 0.05)]
    n_leap = 10
    rows = []
    print(f"{'update':<11}{'theory':<11}{'batch':>6} {'lattice':<12}{'fused ms':>10}{'torch ms':>10}"
          f"{'speed-up':>9}{'median':>8}{'upd/s':>9}{'Msite/s':>9}{'1-pass ms':>10}{'x 1-pass':>9}")
    for kind, theory, batch, shape, step in problems:
        V = math.prod(shape)
        fused, twin, fast = make_updates(kind, theory, batch, shape, step, device, dtype, n_leap)
        fns, budgets = [fused, twin] + ([fast] if fast else []), [0.5, 2.0] + ([2.0] if fast else [])
        measured = paired_times(fns, budgets)
        (tf, tf_med), (tt, tt_med) = measured[:2]
        tq, tq_med = measured[2] if fast else (None, None)
        rows.append({"update": kind, "theory": type(theory).__name__, "batch": batch, "lattice": list(shape),
                     "fused_s": tf, "torch_s": tt, "fused_median_s": tf_med, "torch_median_s": tt_med,
                     "speedup": tt / tf, "speedup_median": tt_med / tf_med, "updates_per_s": 1 / tf,
                     "site_updates_per_s": batch * V / tf, "n_leapfrog": n_leap if kind == "hmc" else None,
                     "fast_torch_s": tq, "fast_torch_median_s": tq_med,
                     "fast_speedup": tq / tf if fast else None})
        fast_cols = f"{tq * 1e3:>10.2f}{tq / tf:>8.1f}x" if fast else f"{'-':>10}{'-':>9}"
        print(f"{kind:<11}{type(theory).__name__:<11}{batch:>6} {'x'.join(map(str, shape)):<12}{tf * 1e3:>10.3f}"
              f"{tt * 1e3:>10.2f}{tt / tf:>8.1f}x{tt_med / tf_med:>7.1f}x{1 / tf:>9.0f}{batch * V / tf / 1e6:>9.1f}"
              + fast_cols, flush=True)
    return rows


def scaling(device, dtype, quick):
    from lftaccel import analysis  # pyerrors

    # Chains long against tau_int: Metropolis at L = 32 has tau_int(|M|) ~ 400 sweeps, and
    # chains of 2000 (this benchmark's earlier length) gave 150-375 depending on the analysis.
    # |M| and S/V are measured after every update: two numbers per chain and update are kept.
    sizes = (8, 16, 32) if quick else (8, 16, 32, 64)
    n_per_chain = 20000 if quick else 50000
    theory = lftaccel.Phi4(KAPPA_C, LAM)
    out = []
    for L in sizes:
        for series, cls, kw in SCALING_SERIES:
            t0 = time.perf_counter()
            s = cls(theory, (L, L), n_chains=16, seed=L, device=device, dtype=dtype, **kw)
            s.thermalize(500)
            M = torch.empty((n_per_chain, 16), dtype=torch.float64, device=device)
            E = torch.empty_like(M)
            for i in range(n_per_chain):
                s.update()
                M[i] = s.field.flatten(1).mean(1)
                E[i] = theory.action(s.field) / (L * L)
            M, E = M.cpu().numpy(), E.cpu().numpy()
            obs = analysis.magnetisation_observables(M, L * L)
            obs["action/V"] = analysis.primary(E, "action/V")
            est = {k: analysis.estimate(obs[k], k) for k in ("|M|", "action/V", "U_L")}
            row = {"sampler": series, "L": L, "n_per_chain": n_per_chain, "step_size": s.step_size,
                   "acceptance": float(np.mean(s.acceptance[500:])), "seconds": time.perf_counter() - t0}
            # HMC's trajectory length n_leapfrog * eps shrinks as eps is tuned down with L: tau_int
            # is also given in molecular-dynamics time, where HMC's z is usually quoted
            row["md_time"] = None if cls is not HMC else (
                s.trajectory_length if s.trajectory_length is not None else s.n_leapfrog * s.step_size)
            for name, key in (("|M|", "tau_absM"), ("action/V", "tau_energy")):
                row[key], row[key + "_err"] = est[name].tau_int, est[name].tau_int_error
                if cls is HMC:
                    row[key + "_md"] = row[key] * row["md_time"]
            row["U_L"], row["U_L_err"] = est["U_L"].value, est["U_L"].error
            out.append(row)
            print(f"{series:<11} L={L:<3} acc={row['acceptance']:.2f} step={s.step_size:.3f} "
                  f"tau(|M|)={row['tau_absM']:.1f}+-{row['tau_absM_err']:.1f} "
                  f"tau(E)={row['tau_energy']:.1f}+-{row['tau_energy_err']:.1f}  "
                  f"U_L={row['U_L']:.3f}+-{row['U_L_err']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return out


def dynamic_exponent(L, tau, err):
    """z of tau ~ L^z between the two largest L, and its error from their tau_int errors (the
    runs are independent)."""
    z = math.log(tau[-1] / tau[-2]) / math.log(L[-1] / L[-2])
    dz = math.hypot(err[-1] / tau[-1], err[-2] / tau[-2]) / math.log(L[-1] / L[-2])
    return z, dz


def plot_scaling(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    fits = {}
    for ax, key, title in ((axes[0], "tau_absM", "|M|"), (axes[1], "tau_energy", "energy (S/V)")):
        for name, marker in (("hmc", "o"), ("hmc-tau2", "^"), ("metropolis", "s")):
            r = [x for x in rows if x["sampler"] == name]
            L = np.array([x["L"] for x in r])
            tau = np.array([x[key] for x in r])
            err = np.array([x[key + "_err"] for x in r])
            z, dz = dynamic_exponent(L, tau, err)
            fits[f"{name}:{key}"] = {"z": z, "error": dz}
            if name == "hmc":  # per unit of MD time: the trajectories shorten with L (hmc-tau2's do not)
                md = np.array([x["md_time"] for x in r])
                fits[f"{name}:{key}:md_time"] = dict(zip(("z", "error"), dynamic_exponent(L, tau * md, err * md)))
            ax.errorbar(L, tau, err, marker=marker, capsize=3, label=f"{name} (z = {z:.2f} +- {dz:.2f})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_ylabel("tau_int [updates]")
        ax.set_title(f"tau_int of {title}")
        ax.legend()
    fig.suptitle(f"Critical slowing down, 2D phi^4 at kappa = {KAPPA_C}, lambda = {LAM} (16 chains each)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fits


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--json", help="output JSON (default benchmarks/results/samplers-<device>.json)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    quick = not args.full
    args.quick = quick
    out = Path(args.json) if args.json else Path(__file__).parent / "results" / f"samplers-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"lftaccel {lftaccel.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device}, {args.dtype}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    busy = busy_at_start(device.type)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": str(device),
              "dtype": args.dtype, "threads": torch.get_num_threads(), "build": lftaccel.build_info(),
              "steady_malloc": STEADY_MALLOC, "provenance": provenance(args)}
    report["throughput"] = throughput(device, dtype, quick)
    target = next(r for r in report["throughput"] if r["update"] == "hmc" and r["theory"] == "Phi4"
                  and r["batch"] == 64 and r["lattice"] == [64, 64])
    applies = device.type == "cpu" and dtype == torch.float64
    verdict = ("PASS" if target["speedup"] >= 25 else "MISS") if applies else "N/A (the target is for the CPU, float64)"
    print(f"{verdict}: phi4 HMC trajectory (batch 64, 64x64, 10 leapfrog steps) "
          f"{target['speedup']:.1f}x the pure-torch HMC by minimum times, {target['speedup_median']:.1f}x by "
          f"medians (target >= 25x on the CPU, float64); {target['fast_speedup']:.1f}x the one-pass pure-torch HMC "
          f"(RM.hmc_trajectory_fused)")
    rows = report["throughput"]
    why = unreliable(busy, sum(noisy((r["fused_s"], r["fused_median_s"]), (r["torch_s"], r["torch_median_s"]))
                               for r in rows), len(rows))
    if why:
        print(unreliable_line(why, "the line above"))
    report["load_avg_at_start"], report["cpu_busy_at_start"], report["unreliable"] = load, busy, why
    if not args.skip_scaling:
        report["scaling"] = scaling(device, dtype, quick)
        png = out.parent / "critical_slowing_down.png"
        report["dynamic_exponents"] = plot_scaling(report["scaling"], png)
        zs = "; ".join(f"{k} {v['z']:.2f} +- {v['error']:.2f}" for k, v in report["dynamic_exponents"].items())
        print(f"dynamic exponents z (two largest L): {zs}; plot: {png}")
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
