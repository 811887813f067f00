"""``lftaccel reproduce``, ``lftaccel train diffusion`` and ``lftaccel generate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .report import check_device, print_report, report_of, set_threads


def reproduce_command(args):
    from ..reproduce import reproduce

    set_threads(args.threads)
    out = args.out or f"reproduce-{args.name}"
    check_device(args.device)
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    summary = reproduce(args.name, out, quick=args.quick, device=args.device)
    print(json.dumps(summary, indent=1, default=float))
    print(f"report: {out}/report.md")


def train_command(args):
    from ..io import check_writable
    from ..models.diffusion.model_file import train_from_ensemble

    set_threads(args.threads)

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
    check_device(args.device)
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


def generate_command(args):
    from ..analysis import MIN_PER_CHAIN, exact_discard, measure
    from ..io import check_writable
    from ..models.diffusion.model_file import generate

    set_threads(args.threads)

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
    check_device(args.device)
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
    print_report(report_of(ens, measure(ens)), False)
    print(f"ensemble: {args.output}")
