"""``lftaccel sample`` and ``lftaccel measure``."""

from __future__ import annotations

import os
import sys
import warnings

from .parser import DEFAULTS
from .report import check_device, print_report, report_of, set_threads


def _theory(args):
    from .. import XY, Oscillator, Phi4

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


def sample_command(args):
    import torch

    from ..analysis import MIN_PER_CHAIN, measure
    from ..mcmc import DivergenceWarning, default_thermalisation, instanton_action, make_sampler, run
    from ..mcmc.samplers import DEFAULT_THERM, MAX_DEFAULT_THERM

    theory = _theory(args)
    shape = args.shape or DEFAULTS[args.theory]["shape"]
    set_threads(args.threads)
    kw = dict(n_chains=args.chains, seed=args.seed, device=args.device, start=args.start,
              dtype=torch.float32 if args.dtype == "float32" else torch.float64)
    check_device(args.device)
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
    if args.therm is None and not args.resume:  # (a resumed run keeps its file's: run() reads it)
        n_therm = default_thermalisation(theory, tuple(shape), args.sampler)
        if n_therm > DEFAULT_THERM:
            capped = " (capped: see the notes below)" if n_therm == MAX_DEFAULT_THERM else ""
            L = max(shape)
            why = (f"a double well with instanton action S0 = {instanton_action(theory):.3g}"
                   if instanton_action(theory) is not None else f"XY on extent L = {L}, {n_therm / L**2:g} L^2 updates")
            print(f"thermalising {n_therm} updates per chain: {why}{capped} (--therm sets it)", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DivergenceWarning)
        ens = run(sampler, args.n_samples, n_therm=args.therm, spacing=args.spacing, path=out, resume=args.resume,
                  overwrite=args.overwrite, checkpoint_seconds=args.checkpoint_every, progress=not args.no_progress)
    for w in caught:  # divergences while sampling in one line; any other warning as Python shows it
        if issubclass(w.category, DivergenceWarning):
            print(f"lftaccel sample: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    report = report_of(ens, measure(ens))
    report["output"] = out
    print_report(report, args.json)
    if not args.json:
        print(f"ensemble written to {out}")


def measure_command(args):
    from ..analysis import measure
    from ..io import read_run

    set_threads(args.threads)
    ens = read_run(args.file)
    print_report(report_of(ens, measure(ens)), args.json)
