"""``lftaccel spectral``: rho(omega) from a propagator file."""

from __future__ import annotations

import math
import os
import sys
import warnings


def _same_file(a, b) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def spectral_command(args):
    import numpy as np

    from ..io import check_writable
    from ..spectral import CHI2_MISFIT, MisfitWarning, finite_temperature, read_propagator, reconstruct


    # the options first: cheap, and a refusal then stands alone, without the data's warnings
    if not os.path.exists(args.data) or os.path.isdir(args.data):  # (a pipe, /dev/stdin, is readable)
        raise ValueError(f"cannot read {args.data}: " + ("it is a directory" if os.path.isdir(args.data)
                                                         else "no such file"))
    if not 0 <= args.omega_min < math.inf:
        raise ValueError(f"--omega-min must be finite and >= 0, got {args.omega_min}")
    if not args.omega_min < args.omega_max < math.inf:
        raise ValueError(f"--omega-max must be finite and above --omega-min {args.omega_min:g}, "
                         f"got {args.omega_max}")
    if args.n_omega < 3:
        raise ValueError(f"--n-omega must be at least 3, got {args.n_omega}")
    kernel = "kallen-lehmann"
    if args.temperature is not None:
        if not 0 < args.temperature < math.inf:
            raise ValueError(f"--temperature must be finite and > 0, got {args.temperature}")
        if args.omega_min == 0:
            raise ValueError("--omega-min must be above 0 with --temperature: the kernel diverges like 2T/omega "
                             "at omega = 0")
        kernel = finite_temperature(args.temperature)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MisfitWarning)  # said below, in the command's own line
        res = reconstruct(p, D, sigma, omega, args.method, kernel=kernel, cov=cov, **options)
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
