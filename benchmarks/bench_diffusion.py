"""Diffusion-model sampling: the fused Euler-Maruyama step against a pure-torch step, and exact
DM sampling (neural MCMC on the probability-flow ODE) against HMC, in one run.

    python benchmarks/bench_diffusion.py                        # 8x8 phi^4: ~20 min on 2 CPU cores
    python benchmarks/bench_diffusion.py --model dm.pt          # a model from `lftaccel train diffusion`
    python benchmarks/bench_diffusion.py --device cuda --L 16 --train-minutes 10

1. The step alone. One reverse-SDE step (VE) on a batch of 32x32 fields with a given score
   tensor: lftaccel.mcmc.kernels.sde_step (Philox noise in the kernel, in place) against the
   same update in torch (torch.randn for the noise, two in-place adds), configurations per
   second for both, and the effective bandwidth of the fused step (it reads x and the score
   and writes x: 3 arrays) against a copy of the same bytes (torch copy_ of 1.5 arrays'
   worth, read + write = 3 arrays).
2. Whole reverse-SDE sampling with a ScoreUNet: reverse_sample (fused step) against the same
   loop with the torch step; the network dominates both.
3. Effective samples per second of exact DM against HMC at the same point (2D phi^4, kappa =
   0.21, lambda = 0.022, L x L): the model's probability-flow proposals with the map's log q
   (flow_ode) and independence Metropolis in 8 streams, against HMC (fused trajectories, 8
   chains, step tuned to 80 %). tau_int of |M| and of the action per site by the Gamma
   method; effective samples per second n / (2 tau_int) / seconds. Training (HMC ensemble
   plus --train-minutes) is reported separately, not charged to the rate.

Results: benchmarks/results/diffusion-<device>.json and diffusion-<device>.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from pathlib import Path

import torch

import lftaccel
from lftaccel.runtime import steady_malloc
from lftaccel import Phi4
from lftaccel.mcmc import HMC, kernels, run
from lftaccel.models import diffusion as dm
from lftaccel.models.diffusion.model_file import load_model, train_from_ensemble

from bench_flows import N_STREAMS, chain_table, sync, tau_and_rate, time_chains, time_nmcmc
from provenance import provenance

# torch's freed tensors stay in the heap, as under the lftaccel command (lftaccel/runtime.py)
STEADY_MALLOC = steady_malloc()

KAPPA, LAM = 0.21, 0.022


def timed(fn, device, repeat=5):
    """The best of ``repeat`` timings of fn() (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def step_row(batch, dtype, device):
    """The fused step against the torch step on (batch, 32, 32), and a copy of the same bytes."""
    sde, t, dt = dm.VESDE(), 0.5, 1e-3
    g = math.sqrt(sde.g2(t))
    x = torch.randn(batch, 32, 32, dtype=dtype, device=device)
    score = torch.randn_like(x)
    k = [0]

    def fused():
        k[0] += 1
        kernels.sde_step(x, score, t=t, dt=dt, seed=1, step=k[0])

    def plain():
        x.add_(score, alpha=g * g * dt).add_(torch.randn_like(x), alpha=g * math.sqrt(dt))

    flat = torch.empty(int(1.5 * x.numel()), dtype=dtype, device=device)
    dst = torch.empty_like(flat)
    times = {"fused": timed(fused, device), "torch": timed(plain, device),
             "copy": timed(lambda: dst.copy_(flat), device)}
    moved = 3 * x.numel() * x.element_size()
    row = {"batch": batch, "dtype": str(dtype).removeprefix("torch."),
           "fused configs/s": batch / times["fused"], "torch configs/s": batch / times["torch"],
           "speed-up": times["torch"] / times["fused"], "fused GB/s": moved / times["fused"] / 1e9,
           "copy GB/s": moved / times["copy"] / 1e9}
    row["fraction of copy"] = row["fused GB/s"] / row["copy GB/s"]
    print("  step", {k_: (round(v, 3) if isinstance(v, float) else v) for k_, v in row.items()}, flush=True)
    return row


def torch_reverse_sample(score_fn, sde, shape, n_steps, eps, device, seed):
    """reverse_sample's loop with the update in torch (VE): the reference for the fused step."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = sde.prior_std() * torch.randn(shape, generator=gen, dtype=torch.float64, device=device)
    dt = (1.0 - eps) / n_steps
    for k in range(n_steps):
        t = 1.0 - k * dt
        g2 = sde.g2(t)
        x = x + g2 * dt * score_fn(x, t).double()
        if k < n_steps - 1:
            x = x + math.sqrt(g2 * dt) * torch.randn(shape, generator=gen, dtype=torch.float64, device=device)
    return x


def sampling_throughput(score_fn, sde, L, device, n, n_steps):
    shape = (n, L, L)
    t_fused = timed(lambda: dm.reverse_sample(score_fn, sde, shape, n_steps=n_steps, device=device), device, 2)
    t_torch = timed(lambda: torch_reverse_sample(score_fn, sde, shape, n_steps, 1e-3, device, 0), device, 2)
    row = {"samples": n, "steps": n_steps, "fused configs/s": n / t_fused, "torch configs/s": n / t_torch,
           "speed-up": t_torch / t_fused}
    print("  reverse SDE", {k: round(v, 3) for k, v in row.items()}, flush=True)
    return row


def observables(x, L):
    x = x.detach().cpu().double()
    return {"|M|": x.flatten(1).mean(1).abs().numpy(), "S/V": Phi4(KAPPA, LAM).action(x).numpy() / (L * L)}


def run_exact_dm(score, sde, c, L, n, ode_steps, device):
    sampler = dm.ODESampler(score, sde, (L, L), scale=c, n_steps=ode_steps, seed=1, device=device)
    info, x, chain = time_nmcmc(sampler, Phi4(KAPPA, LAM).action, n, 1, device, batch_size=256, warmup=8,
                                progress=True)
    return info, {k: chain.take(v) for k, v in observables(x, L).items()}


def run_hmc(L, n, device):
    info, x = time_chains(HMC(Phi4(KAPPA, LAM), (L, L), n_chains=N_STREAMS, seed=1, device=device), n, device)
    steps = x.shape[0]
    return info, {k: v.reshape(steps, N_STREAMS) for k, v in observables(x.flatten(0, 1), L).items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--model", help="a model file from `lftaccel train diffusion` (2D phi^4 at kappa 0.21)")
    ap.add_argument("--train-minutes", type=float, default=4.0)
    ap.add_argument("--samples", type=int, default=1024, help="exact-DM proposals and HMC configurations")
    ap.add_argument("--ode-steps", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if args.L < 4 or args.L % 2 or args.samples < 64 * N_STREAMS or args.samples % N_STREAMS or args.train_minutes <= 0:
        ap.error(f"need an even --L >= 4, --samples >= 512 divisible by {N_STREAMS} and --train-minutes > 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is visible")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.device(args.device).type == "cuda"
    L = args.L
    results = {"point": f"phi4 {L}x{L} kappa={KAPPA} lambda={LAM}"}
    results["step"] = [step_row(batch, dtype, args.device) for dtype in (torch.float32, torch.float64)
                       for batch in ((4096, 65536) if cuda else (256, 4096))]

    model_file = Path(args.model) if args.model else out / f"dm-{L}x{L}.pt"
    if not args.model:  # an HMC ensemble and a model trained on it, kept in OUT (a rerun reuses them)
        ens_file = out / f"hmc-{L}x{L}-k{KAPPA}.h5"
        if not ens_file.exists():
            sampler = HMC(Phi4(KAPPA, LAM), (L, L), n_chains=16, seed=7, device=args.device)
            run(sampler, 4096, path=ens_file, n_therm=500, spacing=5, progress=True)
        t0 = time.perf_counter()
        tr = train_from_ensemble(ens_file, model_file, channels=(16, 32), emb_dim=32, minutes=args.train_minutes,
                                 batch_size=128, resume=model_file.exists(), device=args.device)
        results["training"] = {"steps": tr["steps"], "seconds": tr["seconds"], "wall": time.perf_counter() - t0,
                               "train_loss": tr["train_loss"], "test_loss": tr["test_loss"]}
    score, sde, c, meta = load_model(model_file, args.device)
    theory = json.loads(meta["theory_params"])
    if meta["theory"] != "Phi4" or abs(theory["kappa"] - KAPPA) > 1e-12 or abs(theory["lam"] - LAM) > 1e-12 \
            or meta["lattice_shape"] != [L, L]:
        ap.error(f"the model was trained on {meta['theory']} {theory} {meta['lattice_shape']}, not phi^4 at "
                 f"kappa {KAPPA}, lambda {LAM} on {L}x{L}")
    results["reverse SDE"] = sampling_throughput(score, sde, L, args.device, 1024 if cuda else 256, 100)

    runs = {"exact DM": run_exact_dm(score, sde, c, L, args.samples, args.ode_steps, args.device),
            "HMC": run_hmc(L, args.samples, args.device)}
    for name, (info, obs) in runs.items():
        entry = dict(info)
        for k, v in obs.items():
            tau, rate = tau_and_rate(v, info["seconds"])
            entry[k] = {"tau_int": tau, "eff_per_s": rate}
        results[name] = entry
        print(f"  {name:9s} {info['seconds']:7.1f} s  acceptance {info['acceptance']:.3f}  "
              + "  ".join(f"{k}: tau_int {entry[k]['tau_int']:.2f}, eff/s {entry[k]['eff_per_s']:.2f}" for k in obs),
              flush=True)
    for k in ("|M|", "S/V"):
        results[f"ratio {k} exact DM/HMC"] = results["exact DM"][k]["eff_per_s"] / results["HMC"][k]["eff_per_s"]

    tag = torch.device(args.device).type
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "build": lftaccel.build_info(),
            "samples": args.samples, "ode_steps": args.ode_steps, "model": str(model_file),
            "provenance": provenance(args)}
    (out / f"diffusion-{tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    lines = ["Reverse-SDE step on 32x32 (VE): fused kernel against torch.", "",
             "| batch | dtype | fused configs/s | torch configs/s | speed-up | fused GB/s | copy GB/s | of copy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["step"]:
        lines.append(f"| {r['batch']} | {r['dtype']} | {r['fused configs/s']:.0f} | {r['torch configs/s']:.0f} | "
                     f"{r['speed-up']:.2f} | {r['fused GB/s']:.2f} | {r['copy GB/s']:.2f} | "
                     f"{r['fraction of copy']:.2f} |")
    s = results["reverse SDE"]
    lines += ["", f"Reverse-SDE sampling with the ScoreUNet ({s['samples']} samples, {s['steps']} steps): "
              f"{s['fused configs/s']:.1f} configs/s fused, {s['torch configs/s']:.1f} torch "
              f"(speed-up {s['speed-up']:.2f}).", "",
              f"{results['point']}; exact DM: {args.samples} proposals, {args.ode_steps} RK4 steps, ESS "
              f"{results['exact DM']['ess']:.3f}.", "",
              *chain_table(results, runs, {"|M|": "abs(M)", "S/V": "S/V"}, digits=2)]
    (out / f"diffusion-{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
