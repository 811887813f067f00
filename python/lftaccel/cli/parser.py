"""The ``lftaccel`` command's argument parser: every option, its default and its help."""

from __future__ import annotations

import argparse

from ..reproduce import REPRODUCTIONS

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


def _add_threads(parser) -> None:
    parser.add_argument("--threads", type=_positive_int,
                        help="CPU threads (default: torch's, one per core); on a shared machine, the free cores")


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
    r.add_argument("--therm", type=_nonneg_int,
                   help="thermalisation updates per chain, with step-size tuning (default 200; more where "
                        "needed: xy 2 L^2 with hmc and 6 L^2 otherwise, L the largest extent; a double well "
                        "10 exp(S0), S0 its instanton action: 7000 at f = 1.7, m = 0.5, lam = 1, calibrated "
                        "for hmc)")
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
                   help="initial fields: hot (random, default) or cold (ordered: phi4 at the minimum of its "
                        "action over constant fields, staggered for kappa < 0 on even extents, which is 0 where "
                        "the classical potential has one minimum; xy theta = 0, e.g. at low temperature, where a "
                        "hot start can leave a chain stuck with a winding; a double well all in the positive "
                        "well). The hot start of xy and of a double well is overdispersed: every other chain "
                        "ordered (xy) or in a well, the others random, so that chains not yet thermalised "
                        "disagree. To compare starts, give them "
                        "different --seed values: with one seed both see the same random numbers, and HMC chains "
                        "from either start can become identical (to rounding) within a few hundred updates")
    r.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="field precision (default float64)")
    r.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    _add_threads(r)
    r.add_argument("--resume", action="store_true",
                   help="continue the run stored in --output (or start it there, when there is no file yet)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    r.add_argument("--checkpoint-every", type=_float, default=30.0,
                   help="seconds between checkpoints to --output (default 30)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the results as JSON")

    sp = sub.add_parser("spectral", help="reconstruct rho(omega) from a propagator D(p)",
                        description="Reconstruct a spectral function from Euclidean propagator data through "
                                    "the Kallen-Lehmann kernel (or, with --temperature, from a correlator in "
                                    "Euclidean time) and write omega, rho, rho_err as CSV. rho_err "
                                    "is the data's noise propagated to rho (the spread of rho over noise "
                                    "realisations; an estimate from the ensemble of 2 for nn and p2p); it "
                                    "leaves out the regulator's bias, often the larger error. Tikhonov with "
                                    "positivity has none (NaN).")
    sp.add_argument("data", help="CSV with a header and columns p, D, sigma; with --samples, the first row holds "
                                 "the momenta and every further row one sample of D(p)")
    sp.add_argument("--temperature", type=_float, metavar="T",
                    help="the data are a correlator G(tau) at temperature T, the first column (or the first row "
                         "of --samples) Euclidean times 0 <= tau <= 1/T (a header may name them tau, G, sigma), "
                         "reconstructed through the finite-temperature kernel cosh(w (tau - 1/(2T))) / sinh(w / "
                         "(2T)) as written, with no 1/(2 pi); rho below --omega-min counts as 0, so start the "
                         "grid well below any transport peak")
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

    rp = sub.add_parser("reproduce", help="rerun a published experiment and write a markdown report with PNGs",
                        description="Rerun a published experiment; the report and plots go to --out. Trainings "
                                    "checkpoint there: rerunning the same command resumes a killed run. "
                                    "phi4-flow: a coupling flow for 2D phi^4 (m2 = -4, lam = 8) made exact by "
                                    "neural MCMC, against HMC (--quick: 8x8, 120 s of training and 60 s in the "
                                    "broken phase). oscillator-fflow: the Fourier-flow for the double-well path at "
                                    "f = 1, 1.4, 1.7, against the transfer matrix (--quick: 60 s of training each). "
                                    "xy-can: autoregressive networks across the KT region against HMC, the "
                                    "helicity modulus against 2T/pi (--quick: 8x8 at four temperatures, 150 s of "
                                    "training at the first and 75 s at each later one, 30 s of fitting each, 120 s "
                                    "of comparison). "
                                    "phi4-diffusion: diffusion models on HMC ensembles of 2D phi^4, raw and exact, "
                                    "and the learnt score as stochastic quantization (--quick: 8x8, ~15 min on 2 "
                                    "CPU cores). The full runs take hours on a CPU.")
    rp.add_argument("name", choices=sorted(REPRODUCTIONS), help="which experiment (see above)")
    rp.add_argument("--quick", action="store_true", help="a small version (see above for its budgets)")
    rp.add_argument("--out", help="output folder (default reproduce-NAME)")
    rp.add_argument("--device", help="torch device (default: cuda when available)")
    _add_threads(rp)

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
    _add_threads(tr)
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
    _add_threads(gen)
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")

    mcmd = sub.add_parser("measure", help="observables with errors from an ensemble file",
                          description="Measure the observables of an lftaccel ensemble file.")
    mcmd.add_argument("file", help="HDF5 file written by lftaccel sample")
    mcmd.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_threads(mcmd)
    return p
