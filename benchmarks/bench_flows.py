"""Flow Markov chains against HMC: effective samples per second at the same physics points, in one run.

    python benchmarks/bench_flows.py                      # ~25 min on 2 CPU cores (300 s of training per flow)
    python benchmarks/bench_flows.py --train-seconds 60   # smoke run
    python benchmarks/bench_flows.py --device cuda        # adds the proposal throughput against batch size
    python benchmarks/bench_flows.py --reuse DIR          # the flows trained by `lftaccel reproduce` into DIR

Points: 2D phi^4 on 8x8 at kappa = 0.25, lambda = 0.5 (standard form m2 = -4, lam = 8), and the
double-well path (m = 0.5, lam = 1, beta = 10, N = 64) at f = 1.4 and the strongly bimodal
f = 1.7. Each flow is trained by reverse KL for --train-seconds (checkpointed in OUT, so a rerun
reuses it); training time is reported separately, never mixed into the rates. With --reuse DIR
the checkpoints of `lftaccel reproduce phi4-flow` / `oscillator-fflow` in DIR (flow-8x8.pt,
f1.4-fourier.pt, f1.7-fourier.pt: the same architectures) are used, and trained further only
if they hold less than --train-seconds of training.

Rates. The flow: the time to draw n proposals and run the independence-Metropolis chain over
them (8 streams). HMC (lftaccel.mcmc, fused trajectories, 8 chains, 10 leapfrog steps, Fourier
acceleration for the oscillator, step size tuned to 80% acceptance during a thermalisation that
is not timed): the time of the same number of saved configurations, one trajectory apart.
For each observable, tau_int comes from the Gamma method (pyerrors; tau_int = 1/2 without
autocorrelation) over the chains, and the effective samples per second are
n / (2 tau_int) / seconds. The ratio flow / HMC is the figure
of merit; absolute times on a shared machine mean little. The break-even is the number of
effective samples after which the flow's training time is paid back.

Observables: |M| and the action density for phi^4; the path mean x-bar (odd: it decorrelates
only by tunnelling between the wells) and <x^2> for the oscillator. For x-bar the number of sign
changes per chain is printed too: when HMC barely tunnels, tau_int from a finite chain is an
underestimate and the sign changes are the honest figure.

Results: benchmarks/results/flows-<device>.json and a markdown table flows-<device>.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import lftaccel
from lftaccel.runtime import steady_malloc
from lftaccel import analysis
from lftaccel.mcmc import HMC, nmcmc
from lftaccel.models import flows
from lftaccel.reproduce import oscillator_fflow, phi4_flow

from provenance import provenance

# torch's freed tensors stay in the heap, as under the lftaccel command (lftaccel/runtime.py)
STEADY_MALLOC = steady_malloc()

N_STREAMS = 8


def tau_and_rate(values, seconds):
    """(tau_int, effective samples per second) of per-step values (n_steps, n_chains)."""
    est = analysis.estimate(analysis.primary(values, "O"), "O")
    n = values.size
    return est.tau_int, n / (2 * est.tau_int) / seconds


def sign_changes(xbar):
    """Mean number of sign changes of x-bar per chain, for (n_steps, n_chains) values."""
    s = np.sign(xbar)
    return float((s[1:] != s[:-1]).sum(0).mean())


def phi4_point(device):
    theory = lftaccel.Phi4(0.25, 0.5)

    def make():  # the reproduction's flow, so that --reuse loads its checkpoint
        return flows.lattice_flow((8, 8), n_layers=phi4_flow.N_LAYERS, hidden=phi4_flow.HIDDEN,
                                  dtype=phi4_flow.DTYPE), phi4_flow.BATCH, phi4_flow.LR

    def observables(x):
        x = x.double()
        return {"|M|": x.flatten(1).mean(1).abs(), "S/V": theory.action(x) / 64}

    return {"name": "phi4 8x8 k=0.25 l=0.5", "theory": theory, "shape": (8, 8), "make": make,
            "reproduce_checkpoint": "flow-8x8.pt",
            "observables": observables, "hmc": {"eps": 0.2}}


def oscillator_point(f):
    theory = lftaccel.Oscillator(10.0, 0.5, 1.0, f)

    def make():
        return (flows.path_flow(theory, 64, basis="fourier", **oscillator_fflow.FLOW), oscillator_fflow.BATCH,
                oscillator_fflow.LR)

    def observables(x):
        x = x.double()
        return {"x-bar": x.mean(1), "<x^2>": (x * x).mean(1)}

    return {"name": f"oscillator N=64 f={f}", "theory": theory, "shape": (64,), "make": make,
            "reproduce_checkpoint": f"f{f}-fourier.pt",
            "observables": observables, "hmc": {"eps": 0.1, "fourier": True}}


def checkpoint_of(point, out, reuse):
    if reuse is not None:
        return Path(reuse) / point["reproduce_checkpoint"]
    return out / ("flow-" + point["name"].replace(" ", "_").replace("=", "") + ".pt")


def run_flow(point, n, train_seconds, checkpoint, device, seed):
    torch.manual_seed(seed)
    model, batch, lr = point["make"]()
    model = model.to(device)
    tr = flows.train(model, action=getattr(model, "coordinate_action", point["theory"].action), steps=10 ** 7,
                     batch_size=batch, lr=lr, seed=seed, checkpoint=checkpoint, resume=True,
                     time_limit=train_seconds, progress=True)
    info, x, chain = time_nmcmc(model, point["theory"].action, n, seed, device, batch_size=4096)
    values = {k: chain.take(v.cpu().numpy()) for k, v in point["observables"](x).items()}
    return {"train_seconds": tr.seconds, "train_steps": tr.steps, **info}, values


def run_hmc(point, n, device, seed):
    sampler = HMC(point["theory"], point["shape"], n_chains=N_STREAMS, seed=seed, device=device,
                  **point["hmc"])
    info, x = time_chains(sampler, n, device)
    steps = x.shape[0]
    obs = {k: v.reshape(steps, N_STREAMS).cpu().numpy() for k, v in point["observables"](x.flatten(0, 1)).items()}
    return info, obs


def time_chains(sampler, n, device, therm=500):
    """Thermalises the sampler's N_STREAMS chains, then times n // N_STREAMS updates of them:
    (info with seconds, acceptance and step size; the fields, (steps, chains, *shape))."""
    sampler.thermalize(therm)
    fields = []
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n // N_STREAMS):
        sampler.update()
        fields.append(sampler.field.clone())
    sync(device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "acceptance": float(np.mean(sampler.acceptance[therm:])),
            "step_size": sampler.step_size}, torch.stack(fields)


def chain_table(results, names, observables, digits=1):
    """Markdown rows comparing samplers timed by time_chains/time_nmcmc: seconds, acceptance,
    and tau_int with effective samples per second of each observable. results[name] holds
    'seconds', 'acceptance' and, per observable key, a dict with 'tau_int' and 'eff_per_s';
    observables maps each key to its column label (a label may not hold '|')."""
    head = "| sampler | seconds | acceptance | " + " | ".join(
        f"tau_int {label} | eff/s {label}" for label in observables.values()) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(observables))]
    for name in names:
        e = results[name]
        cells = [f"{e['seconds']:.1f}", f"{e['acceptance']:.3f}"]
        for key in observables:
            cells += [f"{e[key]['tau_int']:.2f}", f"{e[key]['eff_per_s']:.{digits}f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def time_nmcmc(model, action, n, seed, device, *, batch_size, warmup=256, progress=False):
    """Times n proposals of a model (after a warm-up draw: first-call set-up is not sampling)
    and the independence-Metropolis chain over them in N_STREAMS streams:
    (info with seconds, ESS and acceptance; the proposals; the nmcmc.Chain)."""
    nmcmc.draw(model, action, warmup, batch_size=warmup)
    sync(device)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    x, log_q, S = nmcmc.draw(model, action, n, batch_size=batch_size, progress=progress)
    chain = nmcmc.independence_metropolis(S.cpu(), log_q.cpu(), seed=seed, n_chains=N_STREAMS)
    sync(device)
    return {"seconds": time.perf_counter() - t0, "ess": chain.ess, "acceptance": chain.acceptance}, x, chain


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def throughput(point, device, checkpoint):
    """Proposals (with their action) per second against batch size, for the trained flow."""
    torch.manual_seed(0)
    model, _, _ = point["make"]()
    model = model.to(device)
    model.load_state_dict(torch.load(checkpoint, weights_only=False, map_location=device)["model"])
    rows = []
    for batch in (1024, 4096, 16384, 65536):
        nmcmc.draw(model, point["theory"].action, batch, batch_size=batch)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        nmcmc.draw(model, point["theory"].action, 4 * batch, batch_size=batch)
        sync(device)
        rows.append({"batch": batch, "proposals_per_s": 4 * batch / (time.perf_counter() - t0)})
        print(f"  {point['name']}: batch {batch:6d}  {rows[-1]['proposals_per_s']:.3g} proposals/s", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seconds", type=float, default=300.0)
    ap.add_argument("--samples", type=int, default=2 ** 15, help="proposals / HMC configurations per point")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--points", default="phi4,osc1.4,osc1.7")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--reuse", help="directory of `lftaccel reproduce` checkpoints to use")
    args = ap.parse_args(argv)
    if args.train_seconds <= 0 or args.samples < 64 * N_STREAMS:
        ap.error("--train-seconds must be > 0 and --samples >= 512")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    makers = {"phi4": lambda: phi4_point(args.device), "osc1.4": lambda: oscillator_point(1.4),
              "osc1.7": lambda: oscillator_point(1.7)}
    names = args.points.split(",")
    for name in names:
        if name not in makers:
            ap.error(f"unknown point {name!r}; choose from {','.join(makers)}")
    results = []
    for name in names:
        point = makers[name]()
        print(f"== {point['name']}", flush=True)
        checkpoint = checkpoint_of(point, out, args.reuse)
        fl, fl_obs = run_flow(point, args.samples, args.train_seconds, checkpoint, args.device, seed=1)
        hm, hm_obs = run_hmc(point, args.samples, args.device, seed=1)
        row = {"point": point["name"], "flow": fl, "hmc": hm, "observables": {}}
        for k in fl_obs:
            tf, rf = tau_and_rate(fl_obs[k], fl["seconds"])
            th, rh = tau_and_rate(hm_obs[k], hm["seconds"])
            entry = {"tau_flow": tf, "tau_hmc": th, "flow_eff_per_s": rf, "hmc_eff_per_s": rh, "ratio": rf / rh,
                     # effective samples after which training is paid back (inf if the flow is slower)
                     "break_even": fl["train_seconds"] / (1 / rh - 1 / rf) if rf > rh else math.inf}
            if k == "x-bar":
                entry.update(sign_changes_flow=sign_changes(fl_obs[k]), sign_changes_hmc=sign_changes(hm_obs[k]))
            row["observables"][k] = entry
            print(f"  {k:6s} tau_int flow {tf:7.2f} HMC {th:8.2f} | eff/s flow {rf:9.1f} HMC {rh:9.1f} | "
                  f"ratio {rf / rh:7.2f} | break-even {entry['break_even']:.3g} eff. samples"
                  + (f" | sign changes/chain flow {entry['sign_changes_flow']:.0f} HMC "
                     f"{entry['sign_changes_hmc']:.0f}" if k == "x-bar" else ""), flush=True)
        print(f"  flow: trained {fl['train_steps']} steps in {fl['train_seconds']:.0f} s, ESS {fl['ess']:.3f}, "
              f"acceptance {fl['acceptance']:.3f}, sampling {fl['seconds']:.1f} s; HMC: {hm['seconds']:.1f} s, "
              f"acceptance {hm['acceptance']:.2f}", flush=True)
        if torch.device(args.device).type == "cuda":
            row["throughput"] = throughput(point, args.device, checkpoint)
        results.append(row)
    tag = torch.device(args.device).type
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "build": lftaccel.build_info(),
            "samples": args.samples, "train_seconds": args.train_seconds, "provenance": provenance(args)}
    (out / f"flows-{tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    lines = ["| point | observable | tau_int flow | tau_int HMC | eff/s flow | eff/s HMC | ratio | train s | ESS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for k, e in r["observables"].items():
            label = k.replace("|", "\\|")  # |M| inside a markdown table
            lines.append(f"| {r['point']} | {label} | {e['tau_flow']:.2f} | {e['tau_hmc']:.2f} | "
                         f"{e['flow_eff_per_s']:.1f} | {e['hmc_eff_per_s']:.1f} | {e['ratio']:.2f} | "
                         f"{r['flow']['train_seconds']:.0f} | {r['flow']['ess']:.3f} |")
    (out / f"flows-{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
