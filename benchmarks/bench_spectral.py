"""Spectral-reconstruction benchmark: every method on the same mock data.

    python benchmarks/bench_spectral.py --quick       # 3 seeds, the N_p = 100 protocols: ~2 min
    python benchmarks/bench_spectral.py               # 20 seeds, every protocol (tens of minutes)
    python benchmarks/bench_spectral.py --methods tsvd,mem --spectra two-bw

Spectra (lftaccel.spectral.mock): BW(A=1, M=2, G=0.5); 0.8 BW(2, 0.5) + 1.0 BW(5, 0.5);
narrow BW(M=2.5, G=0.1); Gaussian mu=2.5, s=0.4; two Gaussians at 2 and 6, s=0.4;
Lorentzian M=4, G=0.3. Propagators by adaptive quadrature of the exact spectrum.
Protocols: N_p = 25 on linspace(0.001, 19.199) with eps in {1e-2, 1e-3, 1e-4, 1e-5}, and
N_p = 100 at p = 0.2 k with eps = 1e-4, with exact central values ("exact") and with noise;
sigma_i = eps D_i p_i / 0.8; grid omega = linspace(0.04, 20, 500); noise seeds 0..n-1.
Metrics per reconstruction: sum_i (Delta rho_i)^2 over the grid (as published), relative L2
error, chi^2/N_p, the error of the main peak's position, height and width (FWHM), run time.
The table (markdown, benchmarks/results/spectral.md) gives mean +- standard deviation over
seeds; one PNG per spectrum (benchmarks/results/spectral-<name>.png) overlays the truth and
every method's reconstruction (seed 0, N_p = 100 noisy) with its band. JSON beside it.
Published reference on the two-BW case (N_p = 100, eps = 1e-4), sum (Delta rho)^2 with exact
central values / with noise: NN 0.66 / 1.22, MEM 0.89 / 9.3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lftaccel import spectral as S
from lftaccel.spectral import mock

OMEGA = np.linspace(0.04, 20.0, 500)
SPECTRA = {
    "bw": lambda: mock.breit_wigner(1.0, 2.0, 0.5),
    "two-bw": lambda: 0.8 * mock.breit_wigner(1.0, 2.0, 0.5) + mock.breit_wigner(1.0, 5.0, 0.5),
    "narrow-bw": lambda: mock.breit_wigner(1.0, 2.5, 0.1),
    "gaussian": lambda: mock.gaussian(1.0, 2.5, 0.4),
    "two-gaussians": lambda: mock.gaussian(1.0, 2.0, 0.4) + mock.gaussian(1.0, 6.0, 0.4),
    "lorentzian": lambda: mock.lorentzian(1.0, 4.0, 0.3),
}
METHODS = {
    "tsvd": ("tsvd", {}),
    "tikhonov-id": ("tikhonov", {"regulariser": "identity"}),
    "tikhonov-d2": ("tikhonov", {}),
    "tikhonov-pos": ("tikhonov", {"positive": True}),
    "mem": ("mem", {}),
    "mem-kink": ("mem", {"alpha": "chi2-kink"}),
    "nn": ("nn", {}),
    "p2p": ("p2p", {}),
}


def protocols(quick):
    out = [("Np100 eps1e-4 exact", 0.2 * np.arange(1, 101), 1e-4, False),
           ("Np100 eps1e-4 noisy", 0.2 * np.arange(1, 101), 1e-4, True)]
    if not quick:
        p25 = np.linspace(0.001, 19.199, 25)
        out += [(f"Np25 eps{eps:.0e}", p25, eps, True) for eps in (1e-2, 1e-3, 1e-4, 1e-5)]
    return out


def fwhm(rho, i):
    half = rho[i] / 2
    lo = i
    while lo > 0 and rho[lo] > half:
        lo -= 1
    hi = i
    while hi < len(rho) - 1 and rho[hi] > half:
        hi += 1
    return OMEGA[hi] - OMEGA[lo]


def metrics(rho, truth, res, seconds):
    i, j = int(np.argmax(truth)), int(np.argmax(rho))
    return {"sum_drho2": float(((rho - truth) ** 2).sum()),
            "rel_l2": float(np.linalg.norm(rho - truth) / np.linalg.norm(truth)),
            "chi2_per_point": float(res.chi2_per_point), "peak_position": float(OMEGA[j] - OMEGA[i]),
            "peak_height": float(rho[j] - truth[i]), "peak_width": float(fwhm(rho, j) - fwhm(truth, i)),
            "seconds": seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 seeds, the N_p = 100 protocols only")
    ap.add_argument("--seeds", type=int, help="noise seeds (default 20, --quick 3)")
    ap.add_argument("--methods", help=f"comma list of {','.join(METHODS)}")
    ap.add_argument("--spectra", help=f"comma list of {','.join(SPECTRA)}")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    n_seeds = args.seeds or (3 if args.quick else 20)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    spectra = args.spectra.split(",") if args.spectra else list(SPECTRA)
    for name in methods:
        if name not in METHODS:
            ap.error(f"unknown method {name!r}")
    for name in spectra:
        if name not in SPECTRA:
            ap.error(f"unknown spectrum {name!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, examples = [], {}
    for sname in spectra:
        spec = SPECTRA[sname]()
        truth = spec(OMEGA)
        for pname, p, eps, noisy in protocols(args.quick):
            D0 = mock.propagator(spec, p)
            sigma = mock.relative_noise_sigma(D0, p, eps)
            seeds = range(n_seeds) if noisy else [None]
            for mname in methods:
                method, opts = METHODS[mname]
                per_seed = []
                for seed in seeds:
                    D = D0 if seed is None else mock.add_noise(D0, sigma, 1000 * list(SPECTRA).index(sname) + seed)
                    t0 = time.perf_counter()
                    res = S.reconstruct(p, D, sigma, OMEGA, method, **opts)
                    per_seed.append(metrics(res.rho, truth, res, time.perf_counter() - t0))
                    if pname == "Np100 eps1e-4 noisy" and seed == 0:
                        examples.setdefault(sname, {})[mname] = (res.rho, res.band)
                agg = {k: (float(np.mean([m[k] for m in per_seed])), float(np.std([m[k] for m in per_seed])))
                       for k in per_seed[0]}
                rows.append({"spectrum": sname, "protocol": pname, "method": mname, "n": len(per_seed), **agg})
                a = agg["sum_drho2"]
                print(f"{sname:<14}{pname:<22}{mname:<14} sum(drho^2) {a[0]:9.3f} +- {a[1]:7.3f}   "
                      f"chi2/N {agg['chi2_per_point'][0]:8.3f}   {agg['seconds'][0]:.2f} s", flush=True)
        plot(sname, truth, examples.get(sname, {}), out / f"spectral-{sname}.png")
    write_table(rows, out / "spectral.md")
    (out / "spectral.json").write_text(json.dumps(rows, indent=1))
    print(f"table: {out / 'spectral.md'}")
    return 0


def write_table(rows, path):
    lines = ["| spectrum | protocol | method | sum (Δρ)² | rel. L2 | χ²/N_p | Δ peak pos. | Δ peak height | "
             "Δ FWHM | time [s] |", "|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: f"{v[0]:.3g} ± {v[1]:.2g}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['spectrum']} | {r['protocol']} | {r['method']} | {f(r['sum_drho2'])} | {f(r['rel_l2'])} | "
                     f"{f(r['chi2_per_point'])} | {f(r['peak_position'])} | {f(r['peak_height'])} | "
                     f"{f(r['peak_width'])} | {r['seconds'][0]:.2f} |")
    path.write_text("\n".join(lines) + "\n")


def plot(name, truth, recs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(OMEGA, truth, "k", lw=2, label="truth")
    for mname, (rho, band) in recs.items():
        line, = ax.plot(OMEGA, rho, lw=1, label=mname)
        if band is not None:
            ax.fill_between(OMEGA, rho - band, rho + band, color=line.get_color(), alpha=0.15)
    ax.set_xlim(0, 10)
    ax.set_ylim(min(-0.05, truth.min() * 1.3), truth.max() * 1.6)
    ax.set_xlabel("omega")
    ax.set_ylabel("rho(omega)")
    ax.set_title(f"{name}: N_p = 100, eps = 1e-4, noise seed 0")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
