"""The ``lftaccel`` command.

    lftaccel sample {phi4,xy,oscillator} [--shape ...] [parameters] -n N -o run.h5 [--device cuda] [--resume]
    lftaccel measure run.h5 [--json]
    lftaccel spectral data.csv --method {nn,p2p,mem,tikhonov,tsvd} [--omega-min w --omega-max W --n-omega K] -o rho.csv
    lftaccel reproduce NAME [--quick] [--out DIR] [--device cuda]
    lftaccel train diffusion run.h5 -o dm.pt [--minutes M] [--resume]
    lftaccel generate dm.pt -n N -o dm.h5 [--exact]

``lftaccel sample phi4`` with no options samples 2D phi^4 on 32x32 at kappa = 0.21,
lambda = 0.022 (the symmetric-phase point of the diffusion-model work) with HMC.
The command fixes glibc's malloc thresholds at start (lftaccel.runtime.steady_malloc; torch
training steps ran up to 1.7x faster with them); LFTACCEL_STEADY_MALLOC=0 (or false, no, off)
leaves them alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

from .reproduce import REPRODUCTIONS
from .runtime import steady_malloc

DEFAULTS = {
    "phi4": {"shape": [32, 32], "kappa": 0.21, "lam": 0.022},
    "xy": {"shape": [16, 16], "beta": 1.0},
    "oscillator": {"shape": [64], "beta": 10.0, "m": 0.5, "lam": 1.0, "f": 1.0},
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= low, described as ``what`` in the error."""
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _float(s):
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None


def _trajectory_length(s):
    if s == "quarter-period":
        return s
    try:
        v = float(s)
    except ValueError:
        v = None
    if v is None or not (0 < v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number or 'quarter-period', got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lftaccel", description="C++/CUDA-accelerated lattice field theory: sampling and measurement.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p.subcommands = sub.choices  # name -> its parser (for _parse)

    s = sub.add_parser("sample", help="sample a theory with HMC, Metropolis or Langevin and print observables",
                       description="Sample a lattice theory, write the ensemble to HDF5, print acceptance, "
                                   "tau_int and observables with Gamma-method errors.")
    s.add_argument("theory", choices=sorted(DEFAULTS), help="phi4 (hopping form), xy, or oscillator (double-well path)")
    s.add_argument("--shape", type=_positive_int, nargs="+",
                   help="lattice extents (default: phi4 32 32, xy 16 16, oscillator 64 time slices)")
    g = s.add_argument_group("theory parameters")
    g.add_argument("--kappa", type=_float, help="phi4 hopping parameter (default 0.21)")
    g.add_argument("--lam", type=_float, help="phi4 quartic coupling lambda (default 0.022; 0 is the free field); "
                                             "oscillator double-well lam (default 1.0; must be > 0)")
    g.add_argument("--beta", type=_float, help="xy inverse temperature (default 1.0); oscillator Euclidean time "
                                              "extent beta = N a (default 10)")
    g.add_argument("--m", type=_float, help="oscillator mass (default 0.5)")
    g.add_argument("--f", type=_float, help="oscillator well position: V = lam (x^2 - f^2)^2 (default 1.0)")
    g.add_argument("--omega", type=_float, help="oscillator: the harmonic oscillator V = m omega^2 x^2 / 2 instead "
                                               "of the double well (not with --lam, --f)")
    r = s.add_argument_group("run")
    r.add_argument("-n", "--n-samples", type=_positive_int, default=4096,
                   help="configurations saved after thermalisation, over all chains, rounded up to a whole "
                        "number per chain (default 4096)")
    r.add_argument("-o", "--output", help="HDF5 file for the ensemble (default THEORY.h5)")
    r.add_argument("--chains", type=_positive_int, default=16, help="independent chains (default 16)")
    r.add_argument("--therm", type=_nonneg_int, default=200,
                   help="thermalisation updates per chain, with step-size tuning (default 200)")
    r.add_argument("--spacing", type=_positive_int, default=5, help="updates between saved configurations (default 5)")
    r.add_argument("--sampler", choices=["hmc", "metropolis", "langevin"], default="hmc",
                   help="hmc (default), metropolis (checkerboard, phi4/xy) or langevin (stochastic quantization)")
    r.add_argument("--eps", type=_float, help="HMC leapfrog / Langevin step size (HMC: initial, tuned; "
                                             "default 0.1 / 0.01)")
    r.add_argument("--n-leapfrog", type=_positive_int,
                   help="HMC leapfrog steps per trajectory (default 10, unless --trajectory-length)")
    r.add_argument("--trajectory-length", type=_trajectory_length,
                   help="HMC: a fixed trajectory length tau (tau / eps steps, rounded up, as eps is tuned) "
                        "instead of --n-leapfrog; with --fourier 'quarter-period' is pi / (2 omega), omega the "
                        "molecular-dynamics frequency all Fourier-accelerated modes share, from the potential's "
                        "curvature at its minimum (near-harmonic potentials gain; in the double well it "
                        "slows tunnelling: see the README)")
    r.add_argument("--fourier", action="store_true", help="oscillator: HMC in Fourier space with Fourier acceleration")
    r.add_argument("--delta", type=_float, help="Metropolis proposal width (initial, tuned; default 1)")
    r.add_argument("--langevin-steps", type=_positive_int, help="Langevin steps per update (default 10)")
    r.add_argument("--seed", type=_nonneg_int, default=0, help="Philox seed (default 0)")
    r.add_argument("--start", choices=["hot", "cold"], default="hot",
                   help="initial fields: hot (random, default) or cold (ordered; e.g. xy at low temperature, "
                        "where a hot start can leave a chain stuck with a winding)")
    r.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="field precision (default float64)")
    r.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    r.add_argument("--threads", type=_positive_int,
                   help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")
    r.add_argument("--resume", action="store_true",
                   help="continue the run stored in --output (or start it there, when there is no file yet)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    r.add_argument("--checkpoint-every", type=_float, default=30.0,
                   help="seconds between checkpoints to --output (default 30)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the results as JSON")

    sp = sub.add_parser("spectral", help="reconstruct rho(omega) from a propagator D(p)",
                        description="Reconstruct a spectral function from Euclidean propagator data through "
                                    "the Kallen-Lehmann kernel and write omega, rho, rho_err as CSV. rho_err "
                                    "is the data's noise propagated to rho (the spread of rho over noise "
                                    "realisations; an estimate from the ensemble of 2 for nn and p2p); it "
                                    "leaves out the regulator's bias, often the larger error. Tikhonov with "
                                    "positivity has none (NaN).")
    sp.add_argument("data", help="CSV with a header and columns p, D, sigma; with --samples, the first row holds "
                                 "the momenta and every further row one sample of D(p)")
    sp.add_argument("--samples", action="store_true",
                    help="the rows are independent samples (bin autocorrelated ones first): use their mean "
                         "and the full covariance of the mean, its inverse corrected for the finite number "
                         "of samples (needs at least N_p + 3 of them)")
    sp.add_argument("--method", choices=["nn", "p2p", "mem", "tikhonov", "tsvd"], default="nn",
                    help="nn (list network, L-BFGS, ensemble of 2: default, ~10-60 s), p2p (point-to-point network), "
                         "mem (maximum entropy, alpha at the chi^2 kink), tikhonov (second derivative, positive), tsvd")
    sp.add_argument("--omega-min", type=_float, default=0.04, help="bottom of the omega grid (default 0.04)")
    sp.add_argument("--omega-max", type=_float, default=20.0, help="top of the omega grid (default 20)")
    sp.add_argument("--n-omega", type=_positive_int, default=500, help="grid points (default 500)")
    sp.add_argument("-o", "--output", default="rho.csv", help="output CSV (default rho.csv)")
    sp.add_argument("--plot", help="also save a PNG of rho with its band")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing --output or --plot file")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar (nn and p2p)")
    sp.add_argument("--threads", type=_positive_int,
                    help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")

    rp = sub.add_parser("reproduce", help="rerun a published experiment and write a markdown report with PNGs",
                        description="Rerun a published experiment; the report and plots go to --out. Trainings "
                                    "checkpoint there: rerunning the same command resumes a killed run. "
                                    "phi4-flow: a coupling flow for 2D phi^4 (m2 = -4, lam = 8) made exact by "
                                    "neural MCMC, against HMC (--quick: 8x8, 120 s of training and 60 s in the "
                                    "broken phase). oscillator-fflow: the Fourier-flow for the double-well path at "
                                    "f = 1, 1.4, 1.7, against the transfer matrix (--quick: 60 s of training each). "
                                    "xy-can: autoregressive networks across the KT region against HMC, the "
                                    "helicity modulus against 2T/pi (--quick: 8x8 at four temperatures). "
                                    "phi4-diffusion: diffusion models on HMC ensembles of 2D phi^4, raw and exact, "
                                    "and the learnt score as stochastic quantization (--quick: 8x8, ~15 min on 2 "
                                    "CPU cores). The full runs take hours on a CPU.")
    rp.add_argument("name", choices=sorted(REPRODUCTIONS), help="which experiment (see above)")
    rp.add_argument("--quick", action="store_true", help="a small version (see above for its training budgets)")
    rp.add_argument("--out", help="output folder (default reproduce-NAME)")
    rp.add_argument("--device", help="torch device (default: cuda when available)")
    rp.add_argument("--threads", type=_positive_int,
                    help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")

    tr = sub.add_parser("train", help="train a generative model on an ensemble file",
                        description="Train a score-based diffusion model on a 2D phi^4 ensemble written by "
                                    "`lftaccel sample`; whole chains are held out as the test set. The model file "
                                    "is the checkpoint: rerun with --resume to continue a killed training.")
    tr.add_argument("kind", choices=["diffusion"], help="the model")
    tr.add_argument("ensemble", help="HDF5 file written by lftaccel sample")
    tr.add_argument("-o", "--output", required=True, help="model file to write (e.g. dm.pt)")
    tr.add_argument("--test-chains", type=_positive_int, help="chains held out (default: a quarter)")
    tr.add_argument("--channels", default="32,64", help="U-Net channels per level (default 32,64)")
    tr.add_argument("--emb-dim", type=_positive_int, default=64, help="time-embedding width (default 64)")
    tr.add_argument("--minutes", type=_float, default=10.0, help="training time (default 10)")
    tr.add_argument("--steps", type=_positive_int, default=10**7, help="at most this many steps (default 10^7)")
    tr.add_argument("--batch-size", type=_positive_int, default=64,
                    help="configurations per training step (default 64)")
    tr.add_argument("--lr", type=_float, default=1e-3, help="Adam learning rate, cosine-decayed (default 1e-3)")
    tr.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the initialisation and batches (default 0)")
    tr.add_argument("--device", help="torch device (default: cuda when available)")
    tr.add_argument("--threads", type=_positive_int,
                    help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")
    tr.add_argument("--resume", action="store_true", help="continue the training in --output")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")

    gen = sub.add_parser("generate", help="sample a trained generative model into an ensemble file",
                         description="Sample a model file written by `lftaccel train diffusion` into an ensemble "
                                     "file in the format of `lftaccel sample` (read it with `lftaccel measure`).")
    gen.add_argument("model", help="model file (dm.pt)")
    gen.add_argument("-n", type=_positive_int, required=True, help="configurations (with --exact: proposals)")
    gen.add_argument("-o", "--output", required=True, help="ensemble file to write (e.g. dm.h5)")
    gen.add_argument("--exact", action="store_true",
                     help="independence Metropolis over probability-flow proposals: exact samples of exp(-S); "
                          "n_sites backward passes per RK4 step (8x8: ~0.08 s per proposal and step on 2 CPU cores)")
    gen.add_argument("--sde-steps", type=_positive_int, help="reverse-SDE steps, without --exact (default 500)")
    gen.add_argument("--ode-steps", type=_positive_int, help="RK4 steps with --exact (default 32)")
    gen.add_argument("--chains", type=_positive_int, help="Metropolis chains with --exact (default 8)")
    gen.add_argument("--batch-size", type=_positive_int, default=256, help="configurations per batch (default 256)")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing --output (and start again)")
    gen.add_argument("--resume", action="store_true",
                     help="continue a killed run from the folder OUTPUT.partial (a file per batch)")
    gen.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the samples (default 0)")
    gen.add_argument("--device", help="torch device (default: cuda when available)")
    gen.add_argument("--threads", type=_positive_int,
                     help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")

    mcmd = sub.add_parser("measure", help="observables with errors from an ensemble file",
                          description="Measure the observables of an lftaccel ensemble file.")
    mcmd.add_argument("file", help="HDF5 file written by lftaccel sample")
    mcmd.add_argument("--json", action="store_true", help="print the results as JSON")
    mcmd.add_argument("--threads", type=_positive_int,
                      help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")
    return p


def _theory(args):
    from . import XY, Oscillator, Phi4

    d = DEFAULTS[args.theory]
    val = lambda k: getattr(args, k) if getattr(args, k) is not None else d.get(k)  # noqa: E731
    used = {"phi4": {"kappa", "lam"}, "xy": {"beta"}, "oscillator": {"beta", "m", "lam", "f", "omega"}}[args.theory]
    for k in ("kappa", "lam", "beta", "m", "f", "omega"):
        if getattr(args, k) is not None and k not in used:
            raise ValueError(f"--{k} does not apply to {args.theory}")
    if args.theory == "phi4":
        return Phi4(val("kappa"), val("lam"))
    if args.theory == "xy":
        return XY(val("beta"))
    if args.omega is not None:
        given = [f"--{k}" for k in ("lam", "f") if getattr(args, k) is not None]
        if given:
            raise ValueError(f"--omega (the harmonic oscillator) and {' and '.join(given)} (the double well) "
                             f"exclude each other")
        return Oscillator.harmonic(val("beta"), val("m"), args.omega)
    return Oscillator(val("beta"), val("m"), val("lam"), val("f"))


def _report(ens, estimates) -> dict:
    from .analysis import format_table

    a = ens.attrs
    notes = list(getattr(estimates, "notes", ()))
    # the sampling's wall time, summed over a killed run and its resumptions: wall_seconds of a
    # sampler's run, seconds of a generated ensemble (None: a file from before it was recorded)
    seconds = float(a.get("wall_seconds", a.get("seconds", float("nan"))))
    seconds = seconds if math.isfinite(seconds) else None
    return {
        "theory": a["theory"],
        "params": {k: v for k, v in json.loads(a["theory_params"]).items() if k != "name"},
        "lattice_shape": list(ens.lattice_shape),
        "sampler": json.loads(a["sampler_settings"]), "n_samples": int(len(ens.configs)),
        "n_chains": ens.n_chains, "acceptance": a["acceptance"], "divergent": int(a["divergent"]),
        # (files from before the split do not say: None)
        "divergent_sampling": (int(a["divergent"]) - int(a["divergent_thermalisation"])
                               if "divergent_thermalisation" in a else None),
        "seconds": seconds, "observables": {k: e.as_dict() for k, e in estimates.items()}, "notes": notes,
        "mean_leapfrog_steps": _mean_leapfrog_steps(ens.state),
        "_table": "\n".join([format_table(estimates)] + notes),
    }


def _mean_leapfrog_steps(state):
    """Leapfrog steps per HMC trajectory over the run (thermalisation included), from the
    checkpoint's count (None where the file has none: not HMC, or from before the count)."""
    if not state or state.get("leapfrog_steps") is None or not state.get("n_updates"):
        return None
    return float(state["leapfrog_steps"]) / float(state["n_updates"])


def _print(report, as_json):
    table = report.pop("_table")
    if as_json:
        print(json.dumps(report, indent=1))
        return
    s = report["sampler"]
    step = {k: s[k] for k in ("eps", "n_leapfrog", "trajectory_length", "delta", "n_steps", "sde_steps", "ode_steps")
            if s.get(k) is not None}
    print(f"{report['theory']} {report['params']} on {'x'.join(map(str, report['lattice_shape']))}: "
          f"{report['n_samples']} configurations from {report['n_chains']} chains")
    div = report["divergent_sampling"]
    # independent draws from a model (plain diffusion) have no acceptance to report
    accepted = "" if s["sampler"] == "diffusion" else f"  acceptance {report['acceptance']:.3f}"
    print(f"sampler {s['sampler']} {step}{accepted}  divergent {report['divergent']}"
          + (f" ({div} while sampling)" if div is not None and report["divergent"] else "")
          + (f"  time {report['seconds']:.1f} s" if report["seconds"] is not None else "")
          + (f"  {report['mean_leapfrog_steps']:.2f} leapfrog steps a trajectory"
             if report["mean_leapfrog_steps"] is not None and "trajectory_length" in s else ""))
    print("errors: Gamma method (pyerrors); tau_int in units of the saved spacing")
    print(table)


def _check_device(device):
    """A one-line ValueError for a --device that is not cpu or an available cuda[:N] (None: the
    command's default)."""
    import torch

    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {device!r} is not a torch device ({str(err).splitlines()[0]})") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:N], got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}, but torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s)")


def _set_threads(n):
    """torch's CPU threads for this command (None: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def _sample(args):
    import torch

    from .analysis import MIN_PER_CHAIN, measure
    from .mcmc import make_sampler, run

    theory = _theory(args)
    shape = args.shape or DEFAULTS[args.theory]["shape"]
    _set_threads(args.threads)
    kw = dict(n_chains=args.chains, seed=args.seed, device=args.device, start=args.start,
              dtype=torch.float32 if args.dtype == "float32" else torch.float64)
    _check_device(args.device)
    per_chain = -(-args.n_samples // args.chains)  # whole rounds of all chains
    if per_chain < MIN_PER_CHAIN:
        raise ValueError(f"-n {args.n_samples} gives {per_chain} configurations per chain over --chains "
                         f"{args.chains}; the error analysis needs at least {MIN_PER_CHAIN} (-n >= "
                         f"{MIN_PER_CHAIN * args.chains})")
    if args.sampler == "hmc":
        if args.n_leapfrog is not None and args.trajectory_length is not None:
            raise ValueError("give --n-leapfrog or --trajectory-length, not both")
        if args.trajectory_length == "quarter-period" and not args.fourier:
            raise ValueError("--trajectory-length quarter-period needs --fourier (one frequency for all modes)")
        kw.update(eps=0.1 if args.eps is None else args.eps, n_leapfrog=args.n_leapfrog, fourier=args.fourier,
                  trajectory_length=args.trajectory_length)
    elif args.fourier:
        raise ValueError("--fourier applies to --sampler hmc only")
    elif args.n_leapfrog is not None or args.trajectory_length is not None:
        raise ValueError(f"--n-leapfrog and --trajectory-length apply to --sampler hmc only, not {args.sampler}")
    if args.fourier and args.theory != "oscillator":
        raise ValueError("--fourier is for the oscillator only")
    # the other samplers' options are refused, not ignored
    for option, value, owner in (("--delta", args.delta, "metropolis"), ("--langevin-steps", args.langevin_steps,
                                                                         "langevin")):
        if value is not None and args.sampler != owner:
            raise ValueError(f"{option} applies to --sampler {owner} only, not {args.sampler}")
    if args.eps is not None and args.sampler == "metropolis":
        raise ValueError("--eps applies to --sampler hmc and langevin, not metropolis (its width is --delta)")
    if args.resume and args.overwrite:
        raise ValueError("give --resume (continue the file's run) or --overwrite (replace it), not both")
    if args.sampler == "metropolis":
        kw.update(delta=1.0 if args.delta is None else args.delta)
    if args.sampler == "langevin":
        kw.update(eps=0.01 if args.eps is None else args.eps,
                  n_steps=10 if args.langevin_steps is None else args.langevin_steps)
    sampler = make_sampler(args.sampler, theory, shape, **kw)
    out = args.output or f"{args.theory}.h5"
    if args.resume and not os.path.exists(out):
        print(f"no run file {out} yet: starting the run", file=sys.stderr)
    if os.path.exists(out) and not (args.resume or args.overwrite):
        raise ValueError(f"{out} exists: pass --resume to continue it, --overwrite to replace it, "
                         f"or -o to write elsewhere")
    ens = run(sampler, args.n_samples, n_therm=args.therm, spacing=args.spacing, path=out, resume=args.resume,
              overwrite=args.overwrite, checkpoint_seconds=args.checkpoint_every, progress=not args.no_progress)
    report = _report(ens, measure(ens))
    report["output"] = out
    _print(report, args.json)
    if not args.json:
        print(f"ensemble written to {out}")


def _measure(args):
    from .analysis import measure
    from .io import read_run

    _set_threads(args.threads)
    ens = read_run(args.file)
    _print(_report(ens, measure(ens)), args.json)


# chi^2/N_p above which the command warns that a reconstruction misses the data: for N_p >= 3
# points that fit within known errors, chi^2/N_p exceeds 4 with probability below 0.008. Under a
# covariance estimated from few samples (--samples) the tail is heavier: at the fewest allowed,
# N_p + 3, about 3 % of fits that are right draw the warning.
CHI2_MISFIT = 4.0


def _same_file(a, b) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _spectral(args):
    import numpy as np

    from .io import check_writable
    from .spectral import read_propagator, reconstruct

    _set_threads(args.threads)

    # the options first: cheap, and a refusal then stands alone, without the data's warnings
    if not 0 <= args.omega_min < math.inf:
        raise ValueError(f"--omega-min must be finite and >= 0, got {args.omega_min}")
    if not args.omega_min < args.omega_max < math.inf:
        raise ValueError(f"--omega-max must be finite and above --omega-min {args.omega_min:g}, "
                         f"got {args.omega_max}")
    if args.n_omega < 3:
        raise ValueError(f"--n-omega must be at least 3, got {args.n_omega}")
    if args.plot and (os.path.abspath(args.plot) == os.path.abspath(args.output)
                      or _same_file(args.plot, args.output)):
        raise ValueError(f"--plot {args.plot} is the -o file: the plot would replace the result")
    for what, path in (("-o", args.output), ("--plot", args.plot)):
        if path is None:
            continue
        check_writable(path, what)
        if _same_file(path, args.data):
            raise ValueError(f"{what} {path} is the input data file: the result would replace the data")
        if os.path.exists(path) and not args.overwrite:
            raise ValueError(f"{what} {path} exists: pass --overwrite to replace it")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        suffix = os.path.splitext(args.plot)[1].lstrip(".").lower()
        formats = Figure().canvas.get_supported_filetypes()
        if suffix not in formats:
            raise ValueError(f"--plot {args.plot}: the file name must end in one of "
                             f"{', '.join('.' + f for f in sorted(formats))}")
    with warnings.catch_warnings(record=True) as caught:  # a poorly determined covariance
        warnings.simplefilter("always")
        p, D, sigma, cov = read_propagator(args.data, samples=args.samples)
    for w in caught:
        print(f"lftaccel spectral: warning: {w.message}", file=sys.stderr)
    omega = np.linspace(args.omega_min, args.omega_max, args.n_omega)
    options = {"progress": not args.no_progress} if args.method in ("nn", "p2p") else {}
    res = reconstruct(p, D, sigma, omega, args.method, cov=cov, **options)
    band = res.band if res.band is not None else np.full_like(res.rho, np.nan)
    np.savetxt(args.output, np.column_stack([res.omega, res.rho, band]), delimiter=",",
               header="omega,rho,rho_err", comments="")
    print(f"{args.method}: chi2/N_p = {res.chi2_per_point:.3f} on {res.n_data} points; rho written to {args.output}")
    if res.chi2_per_point > CHI2_MISFIT:
        print(f"lftaccel spectral: warning: chi2/N_p = {res.chi2_per_point:.3g}: rho does not reproduce the data "
              f"within their errors (a fit that does gives about 1); check that the omega grid "
              f"({args.omega_min:g} .. {args.omega_max:g}) covers the spectrum, and the data", file=sys.stderr)
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(res.omega, res.rho, label=args.method)
        if res.band is not None:
            ax.fill_between(res.omega, res.rho - res.band, res.rho + res.band, alpha=0.3)
        ax.set_xlabel("omega")
        ax.set_ylabel("rho(omega)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


def _reproduce(args):
    from .reproduce import reproduce

    _set_threads(args.threads)
    out = args.out or f"reproduce-{args.name}"
    _check_device(args.device)
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    summary = reproduce(args.name, out, quick=args.quick, device=args.device)
    print(json.dumps(summary, indent=1, default=float))
    print(f"report: {out}/report.md")


def _train(args):
    from .io import check_writable
    from .models.diffusion.model_file import train_from_ensemble

    _set_threads(args.threads)

    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        raise ValueError(f"--channels must be comma-separated integers, got {args.channels!r}") from None
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        raise ValueError(f"--minutes must be finite and > 0, got {args.minutes}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be finite and > 0, got {args.lr}")
    if args.emb_dim % 2:
        raise ValueError(f"--emb-dim must be even (sin and cos of each frequency), got {args.emb_dim}")
    _check_device(args.device)
    check_writable(args.output, "-o")
    s = train_from_ensemble(args.ensemble, args.output, test_chains=args.test_chains, channels=channels,
                            emb_dim=args.emb_dim, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
                            lr=args.lr, seed=args.seed, device=args.device, resume=args.resume,
                            progress=not args.no_progress)
    print(f"trained {s['steps']} steps in {s['seconds']:.0f} s on {s['n_train']} configurations "
          f"({s['n_test']} held out); field scale c = {s['scale']:.4g}")
    # the verdict, not a reminder of how to read it: test above train by several errors is overfitting
    gap, err = s["test_loss"] - s["train_loss"], s["gap_err"]
    verdict = ("undetermined (no error estimate)" if not (math.isfinite(err) and err > 0)
               else "overfitting" if gap > 3 * err else "no sign of overfitting")
    print(f"denoising loss of the EMA model on {s['n_eval']} configurations each: train {s['train_loss']:.4f} "
          f"+- {s['train_loss_err']:.4f}, test {s['test_loss']:.4f} +- {s['test_loss_err']:.4f}; "
          f"test - train = {gap:+.4f} +- {err:.4f} (paired): {verdict}")
    print(f"model: {s['output']}")


def _generate(args):
    from .analysis import MIN_PER_CHAIN, exact_discard, measure
    from .io import check_writable
    from .models.diffusion.model_file import generate

    _set_threads(args.threads)

    given = [f"--{k.replace('_', '-')}" for k in ("chains", "ode_steps", "sde_steps") if getattr(args, k) is not None]
    wrong = [g for g in given if (g == "--sde-steps") == args.exact]
    if wrong:
        raise ValueError(f"{' and '.join(wrong)} appl{'y' if len(wrong) > 1 else 'ies'} "
                         f"{'without' if args.exact else 'with'} --exact only")
    if args.resume and args.overwrite:
        raise ValueError("give --resume (continue the interrupted run) or --overwrite (start again), not both")
    args.chains, args.ode_steps, args.sde_steps = args.chains or 8, args.ode_steps or 32, args.sde_steps or 500
    chains = args.chains if args.exact else 1
    if args.n % chains or args.n // chains < MIN_PER_CHAIN + exact_discard(args.n // chains):
        raise ValueError(f"-n {args.n} must give {'--chains ' + str(chains) + ' chains of ' if args.exact else ''}"
                         f"at least {MIN_PER_CHAIN} configurations" + (" after the burn-in" if args.exact else "")
                         + " for the error analysis")
    _check_device(args.device)
    check_writable(args.output, "-o")
    if Path(args.output).resolve() == Path(args.model).resolve():
        raise ValueError(f"-o {args.output} is the model file: the ensemble would replace the model")
    ens = generate(args.model, args.n, args.output, exact=args.exact, sde_steps=args.sde_steps,
                   ode_steps=args.ode_steps, n_chains=args.chains, batch_size=args.batch_size, seed=args.seed,
                   device=args.device, progress=not args.no_progress, overwrite=args.overwrite,
                   resume=args.resume)
    settings = json.loads(ens.attrs["sampler_settings"])
    if args.exact:
        khat = settings.get("pareto_k")
        print(f"ESS of the proposals {settings['ess']:.3f}, Pareto k-hat "
              f"{'-' if khat is None else format(khat, '.2f')}, acceptance {ens.attrs['acceptance']:.3f}")
    _print(_report(ens, measure(ens)), False)
    print(f"ensemble: {args.output}")


def _parse(argv):
    """parse_args, except that arguments no parser knows are refused by the subcommand's parser
    (argparse leaves them to the top-level one): every one-line error then begins
    "lftaccel <command>: error:"."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv=None) -> int:
    args = _parse(argv)
    if os.environ.get("LFTACCEL_STEADY_MALLOC", "1").strip().lower() not in ("0", "false", "no", "off"):
        steady_malloc()  # this process is ours: keep torch's freed tensors in the heap (runtime.py)
    # Prefixed like argparse's own one-line errors ("lftaccel sample: error: ..."), so a bad
    # option and a bad value read the same.
    prog = f"lftaccel {args.command}"
    try:
        {"sample": _sample, "measure": _measure, "spectral": _spectral, "reproduce": _reproduce,
         "train": _train, "generate": _generate}[args.command](args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, OSError, FloatingPointError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
