"""The exact CAN chain against Metropolis and HMC for the 2D XY model, in one run; and the
CAN's sampling throughput with and without the activation cache.

    python benchmarks/bench_can.py                       # 16x16, T = 1.0: ~40 min on 2 CPU cores
    python benchmarks/bench_can.py --reuse DIR           # the CAN `lftaccel reproduce xy-can` trained into DIR
    python benchmarks/bench_can.py --L 8 --train-seconds 60 --samples 2048   # smoke run

Point: XY at T = 1.0 (beta = 1) on L x L (default 16), just above T_KT = 0.893.

The CAN is the reproduction's network (lftaccel.reproduce.xy_can), trained for
--train-seconds by the variational free energy with beta annealing, then for --fit-seconds by
maximum likelihood on an independent HMC ensemble, as the reproduction does (checkpointed in
OUT, so a rerun reuses it), or the reproduction's checkpoints can-LxL-T1.pt and
can-LxL-T1-fit.pt with --reuse DIR (copied into OUT, and trained further there only if they
hold less than --train-seconds and --fit-seconds).

Rates. The CAN: the time to draw n proposals (activation cache on) and run the
independence-Metropolis chain over them (8 streams); training is reported separately. The
same network runs twice: bare, and with its proposals averaged over the lattice's point group
(D4: 7 more log q passes per proposal, a lighter tail of weights; lftaccel.models.can.network).
Metropolis (checkerboard sweeps, proposal width tuned to 50 % acceptance) and HMC (fused
trajectories, 10 leapfrog steps, step size tuned to 80 %), 8 chains each, thermalised and
tuned before the clock starts: the time of the same number of configurations, one sweep or
trajectory apart. For the energy and the helicity modulus, tau_int comes from the Gamma method
over the chains and the effective samples per second are n / (2 tau_int) / seconds.

Throughput: proposals per second of the bare CAN.sample(batch) with the cache and without it
(the uncached sampler reruns the whole network for each of the L^2 sites), at each batch size.

Results: benchmarks/results/can-<device>.json and can-<device>.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import time
from pathlib import Path

import torch

import lftaccel
from lftaccel.runtime import steady_malloc
from lftaccel import XY, analysis
from lftaccel.mcmc import HMC, Metropolis
from lftaccel.models import can
from lftaccel.reproduce import xy_can

from bench_flows import N_STREAMS, chain_table, sync, tau_and_rate, time_chains, time_nmcmc
from provenance import provenance

# torch's freed tensors stay in the heap, as under the lftaccel command (lftaccel/runtime.py)
STEADY_MALLOC = steady_malloc()


CAN_G = "CAN (point-group average) + MCMC"


def observables(x, beta):
    m = analysis.xy_measurements(x.detach().cpu().double().numpy(), beta)
    return {"energy": m["energy"], "helicity": m["helicity"]}


def run_can(model, beta, n, seed, device):
    # warm-up of 64: the first call sets up the light cones
    info, x, chain = time_nmcmc(model, XY(beta).action, n, seed, device, batch_size=512, warmup=64, progress=True)
    return info, {k: chain.take(v) for k, v in observables(x, beta).items()}


def run_local(kind, beta, L, n, seed, device):
    cls = {"metropolis": Metropolis, "hmc": HMC}[kind]
    info, x = time_chains(cls(XY(beta), (L, L), n_chains=N_STREAMS, seed=seed, device=device), n, device)
    steps = x.shape[0]
    return info, {k: v.reshape(steps, N_STREAMS) for k, v in observables(x.flatten(0, 1), beta).items()}


def throughput(model, batches, device, uncached_max):
    rows = []
    for batch in batches:
        row = {"batch": batch}
        for cache in (True, False):
            if not cache and batch > uncached_max:
                continue
            model.sample(min(batch, 8), cache=cache)  # warm-up
            sync(device)
            t0 = time.perf_counter()
            model.sample(batch, cache=cache)
            sync(device)
            row["cached" if cache else "uncached"] = batch / (time.perf_counter() - t0)
        if "uncached" in row:
            row["speed-up"] = row["cached"] / row["uncached"]
        rows.append(row)
        print("  throughput", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--T", type=float, default=1.0)
    ap.add_argument("--train-seconds", type=float, default=1200.0)
    ap.add_argument("--fit-seconds", type=float, default=300.0, help="maximum likelihood after training (0: none)")
    ap.add_argument("--samples", type=int, default=2 ** 13, help="proposals / Metropolis / HMC configurations")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reuse", help="directory of `lftaccel reproduce xy-can` checkpoints")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if args.L < 2 or args.T <= 0 or args.train_seconds <= 0 or args.fit_seconds < 0 or args.samples < 64 * N_STREAMS:
        ap.error("need --L >= 2, --T > 0, --train-seconds > 0, --fit-seconds >= 0 and --samples >= 512")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    L, beta = args.L, 1.0 / args.T
    name = f"can-{L}x{L}-T{args.T:g}"
    checkpoint = xy_can.network_file(out, name, fitted=False)
    if args.reuse:  # copies: training further must not change the reproduction's files
        if not xy_can.network_file(Path(args.reuse), name, fitted=False).exists():
            ap.error(f"--reuse {args.reuse}: no {checkpoint.name} there")
        for fitted in (False, True):
            source = xy_can.network_file(Path(args.reuse), name, fitted=fitted)
            if source.exists() and not (out / source.name).exists():
                shutil.copyfile(source, out / source.name)
    model = xy_can._model(L, "vonmises", torch.device(args.device))
    tr = can.train(model, beta, steps=10 ** 7, batch_size=xy_can.BATCH, lr=xy_can.LR, anneal=xy_can.ANNEAL,
                   seed=1, checkpoint=checkpoint, resume=True, time_limit=args.train_seconds)
    results = {"point": f"XY {L}x{L} T={args.T:g}", "train_seconds": tr.seconds, "train_steps": tr.steps}
    if args.fit_seconds > 0:
        dev = torch.device(args.device)
        ens, results["fit_data_seconds"] = xy_can._train_ensemble(beta, L, xy_can._settings(False, dev)["hmc_samples"],
                                                                  out, dev)
        fit = xy_can._fit(model, ens, args.fit_seconds, out, name)
        results.update(fit_seconds=fit.seconds, fit_steps=fit.steps)
    runs = {"CAN + MCMC": run_can(model, beta, args.samples, 1, args.device)}
    # the same network, its proposals averaged over the lattice's point group; the same seed,
    # so the bare draws are the same as above: a paired comparison
    try:
        model.point_group = True
        runs[CAN_G] = run_can(model, beta, args.samples, 1, args.device)
    finally:
        model.point_group = False
    runs.update({"Metropolis": run_local("metropolis", beta, L, args.samples, 1, args.device),
            "HMC": run_local("hmc", beta, L, args.samples, 1, args.device)})
    rows = []
    for sampler, (info, obs) in runs.items():
        entry = dict(info)
        for k, v in obs.items():
            tau, rate = tau_and_rate(v, info["seconds"])
            entry[k] = {"tau_int": tau, "eff_per_s": rate}
        results[sampler] = entry
        rows.append(entry)
        print(f"  {sampler:11s} {info['seconds']:7.1f} s  acceptance {info['acceptance']:.3f}  "
              + "  ".join(f"{k}: tau_int {entry[k]['tau_int']:.2f}, eff/s {entry[k]['eff_per_s']:.1f}" for k in obs),
              flush=True)
    for k in ("energy", "helicity"):
        for ref in ("Metropolis", "HMC"):
            results[f"ratio {k} CAN/{ref}"] = results["CAN + MCMC"][k]["eff_per_s"] / results[ref][k]["eff_per_s"]
            results[f"ratio {k} CAN-D4/{ref}"] = results[CAN_G][k]["eff_per_s"] / results[ref][k]["eff_per_s"]
    cuda = torch.device(args.device).type == "cuda"
    results["throughput"] = throughput(model, (64, 256, 1024, 4096) if cuda else (32, 128), args.device,
                                       uncached_max=1024 if cuda else 32)
    tag = torch.device(args.device).type
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "build": lftaccel.build_info(),
            "samples": args.samples, "provenance": provenance(args)}
    (out / f"can-{tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    fitted = (f", then fitted {results['fit_steps']} steps in {results['fit_seconds']:.0f} s on HMC data "
              f"({results['fit_data_seconds']:.0f} s to sample)" if args.fit_seconds > 0 else "")
    lines = [f"XY {L}x{L}, T = {args.T:g}; CAN trained {tr.steps} steps in {tr.seconds:.0f} s{fitted} "
             f"(ESS {results['CAN + MCMC']['ess']:.3f}; averaged over the point group "
             f"{results[CAN_G]['ess']:.3f}).", "",
             *chain_table(results, runs, {"energy": "E", "helicity": "Y"})]
    lines += ["", "| batch | proposals/s cached | uncached | speed-up |", "|---|---|---|---|"]
    for r in results["throughput"]:
        lines.append(f"| {r['batch']} | {r['cached']:.1f} | {r.get('uncached', float('nan')):.2f} | "
                     f"{r.get('speed-up', float('nan')):.1f} |")
    (out / f"can-{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
