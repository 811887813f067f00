"""The samplers against exact results, as a table: estimate +- error (Gamma method), exact
value, pull. The same comparisons as tests/test_validation.py, with longer runs.

    python benchmarks/validate_samplers.py            # ~2 min on 2 cores
    python benchmarks/validate_samplers.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

import lftaccel
from lftaccel import analysis, exact
from lftaccel.mcmc import HMC, Metropolis, run

ROWS = []


def report(what, est, exact_value):
    pull = (est.value - exact_value) / est.error
    ROWS.append({"check": what, "estimate": est.value, "error": est.error, "exact": exact_value, "pull": pull,
                 "tau_int": est.tau_int})
    print(f"{what:<52} {est.value:12.6f} +- {est.error:9.6f}  exact {exact_value:12.6f}  pull {pull:+5.2f}",
          flush=True)


def phi2(ens):
    v = (ens.configs.reshape(len(ens.configs), -1) ** 2).mean(1)
    return analysis.estimate(analysis.primary(ens.by_chain(v), "phi2"), "phi2")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    for shape, kappa in (((64,), 0.4), ((16, 16), 0.2), ((8, 8, 8), 0.13)):
        s = HMC(lftaccel.Phi4(kappa, 0.0), shape, n_chains=32, seed=1, eps=0.2, n_leapfrog=10)
        ens = run(s, 32 * 2000, n_therm=300, spacing=1, progress=False)
        ex = exact.free_field(kappa, shape)
        tag = f"free field {'x'.join(map(str, shape))} kappa={kappa}"
        report(f"{tag}: <phi^2>", phi2(ens), ex["phi2"])
        report(f"{tag}: chi2", analysis.measure(ens)["chi2"], ex["chi2"])

    osc = lftaccel.Oscillator.harmonic(8.0, 1.0, 1.0)
    for fourier in (False, True):
        s = HMC(osc, (32,), n_chains=32, seed=2, eps=0.1, n_leapfrog=10, fourier=fourier)
        ens = run(s, 32 * 2000, n_therm=300, spacing=1, progress=False)
        report(f"harmonic path N=32 beta=8 ({'Fourier' if fourier else 'real-space'} HMC): <x^2>",
               analysis.measure(ens)["<x^2>"], exact.harmonic_path_x2(8.0, 32, 1.0, osc.c2))

    for f in (1.0, 1.4, 1.7):
        theory = lftaccel.Oscillator(10.0, 0.5, 1.0, f)
        N, window = 64, (4, 8)
        tm = exact.TransferMatrix(theory, N)
        s = HMC(theory, (N,), n_chains=64, seed=3, eps=0.2, n_leapfrog=10, fourier=True)
        ens = run(s, 64 * 1500, n_therm=500, spacing=2, progress=False)
        est = analysis.measure(ens, window=window)
        tag = f"double well f={f} N=64 beta=10"
        report(f"{tag}: <x^2>", est["<x^2>"], tm.expect(lambda x: x**2))
        report(f"{tag}: E0 (virial)", est["E0"], tm.virial_e0())
        if "E1-E0" in est:
            exact_gap = float(np.mean([tm.cosh_mass(t) for t in range(*window)]))
            report(f"{tag}: E1-E0 (m_eff, t=4..7)", est["E1-E0"], exact_gap)
        cont = exact.continuum_spectrum(theory)
        print(f"    transfer matrix (a = {tm.a:.4f}): E0 = {tm.energies[0]:.5f}, E1-E0 = {tm.gap(1):.5f}, "
              f"E2-E0 = {tm.gap(2):.5f};  continuum H: E0 = {cont[0]:.5f}, E1-E0 = {cont[1] - cont[0]:.5f}, "
              f"E2-E0 = {cont[2] - cont[0]:.5f}")
        ROWS.append({"check": f"{tag}: spectra", "transfer_matrix": [tm.energies[0], tm.gap(1), tm.gap(2)],
                     "continuum": [float(cont[0]), float(cont[1] - cont[0]), float(cont[2] - cont[0])]})

    xy = lftaccel.XY(1.0)
    out = {}
    for cls, kw in ((HMC, {"eps": 0.15, "n_leapfrog": 10}), (Metropolis, {"delta": 1.5})):
        s = cls(xy, (16, 16), n_chains=32, seed=4, **kw)
        out[cls.name] = analysis.measure(run(s, 32 * 2000, n_therm=300, spacing=1, progress=False))
    for name in ("energy", "helicity", "vortex_density"):
        a, b = out["hmc"][name], out["metropolis"][name]
        ROWS.append({"check": f"XY 16x16 beta=1 {name}", "hmc": [a.value, a.error], "metropolis": [b.value, b.error]})
        print(f"XY 16x16 beta=1 {name:<15} HMC {a.value:.5f} +- {a.error:.5f}   Metropolis {b.value:.5f} +- "
              f"{b.error:.5f}   difference {(a.value - b.value) / math.hypot(a.error, b.error):+.2f} sigma")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(ROWS, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
