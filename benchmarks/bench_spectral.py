"""Spectral-reconstruction benchmark: every method on the same mock data.

    python benchmarks/bench_spectral.py --quick       # 3 seeds, the N_p = 100 protocols: ~30 CPU-min
                                                      # (p2p 21 of them; --methods to choose)
    python benchmarks/bench_spectral.py --jobs 2      # 20 seeds, every protocol (hours: nn ~10 s, p2p ~40 s
                                                      # per fit); --resume continues a killed run
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
Outside peer: ana-cont's maximum entropy (``pip install cython`` then ``pip install
--no-build-isolation ana-cont``), run as method "ana-cont" when it imports: its bosonic
Matsubara kernel w^2/(w^2 + p^2) times A(w) = rho(w) / (pi w) is exactly the Kallen-Lehmann
kernel times rho, with a flat default model of weight D(p_min) and alpha by its chi^2-kink.
The full run takes longer than one sitting (~13 CPU-hours, p2p the most), so its finished cells
are kept in git: benchmarks/reference/spectral-cells.jsonl, with the table they give
(spectral.md), and, where a run stopped inside cells, their finished fits in
spectral-seeds.jsonl (each fit is written there as it ends: a killed run loses only the fits
running). To continue the run, copy both files (the seeds file where there is one) to
benchmarks/results/ and run with ``--resume``: it keeps the cells whose seeds are those asked
for (a cell of 3 seeds is extended when 20 are asked for) and computes only the fits missing
from the files, for the --methods and --spectra given (--quick has other protocols and seeds,
so use it apart). A fit is reused only if the code of lftaccel.spectral (docstrings and
comments aside) and the method's options are those it was made with (its "code" fingerprint);
finished cells are kept as they are: to redo cells, delete their lines from the cells file.
``--report-only`` redraws the table and plots from the cells file alone.
Published reference on the two-BW case (N_p = 100, eps = 1e-4), sum (Delta rho)^2 with exact
central values / with noise: NN 0.66 / 1.22, MEM 0.89 / 9.3.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

# One thread per worker, BLAS included, set before numpy loads (spawned workers inherit it): a
# multi-threaded BLAS whose threads share a core with other work waits on its starved thread,
# and MEM took 23-35 s per fit instead of 1.5 s beside one busy process at higher priority.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from lftaccel import spectral as S  # noqa: E402
from lftaccel.spectral import mock  # noqa: E402

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
    "tikhonov-id": ("tikhonov", {"regulariser": "identity", "positive": False}),
    "tikhonov-d2": ("tikhonov", {"positive": False}),
    "tikhonov-pos": ("tikhonov", {"positive": True}),
    "mem": ("mem", {}),  # alpha at the chi^2 kink, the default
    "mem-marginal": ("mem", {"alpha": "marginal"}),
    "nn": ("nn", {}),
    "nn-log": ("nn", {"smoothness": "log", "smooth": 1e3}),
    "p2p": ("p2p", {}),
    "ana-cont": ("peer", {}),
}


def ana_cont_available():
    try:
        import numpy
        if not hasattr(numpy, "trapz"):  # ana-cont 1.1.2 calls numpy.trapz, removed in numpy 2.4
            numpy.trapz = numpy.trapezoid
        import ana_cont.continuation  # noqa: F401
    except ImportError:
        return False
    return True


def ana_cont_mem(p, D, sigma, omega):
    """ana-cont's MEM on the same data: A(w) = rho(w) / (pi w) under its 'freq_bosonic' kernel."""
    import contextlib
    import io
    import warnings

    ana_cont_available()  # a spawned worker needs the numpy.trapz alias too: without it every alpha fails
    from ana_cont import continuation

    model = np.full(len(omega), D[np.argmin(p)] / (omega[-1] - omega[0]))
    problem = continuation.AnalyticContinuationProblem(im_axis=p, re_axis=omega, im_data=D, kernel_mode="freq_bosonic")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints per-alpha failures
        warnings.simplefilter("ignore", RuntimeWarning)
        sol, _ = problem.solve(method="maxent_svd", model=model, stdev=sigma, alpha_determination="chi2kink",
                               optimizer="newton", verbose=False)
    rho = np.pi * omega * sol.A_opt
    return S.Reconstruction(omega, rho, S.Problem.build(p, D, sigma, omega).chi2(rho), len(p), "ana-cont")


def protocols(quick):
    out = [("Np100 eps1e-4 exact", 0.2 * np.arange(1, 101), 1e-4, False),
           ("Np100 eps1e-4 noisy", 0.2 * np.arange(1, 101), 1e-4, True)]
    if not quick:
        p25 = np.linspace(0.001, 19.199, 25)
        out += [(f"Np25 eps{eps:.0e}", p25, eps, True) for eps in (1e-2, 1e-3, 1e-4, 1e-5)]
    return out


def fwhm(rho, i):
    """The width at half height, from grid point to grid point (the first at or below half height
    on each side, no interpolation): resolved to the grid spacing, 0.04, so the truth's FWHM
    reads 1.04 for BW(2, 0.5) (0.98 analytic) and 0.28 for the narrow BW (0.20); the
    differences in the table, taken on the same grid, mostly cancel that."""
    half = rho[i] / 2
    lo = i
    while lo > 0 and rho[lo] > half:
        lo -= 1
    hi = i
    while hi < len(rho) - 1 and rho[hi] > half:
        hi += 1
    return OMEGA[hi] - OMEGA[lo]


METRICS = ("sum_drho2", "rel_l2", "chi2_per_point", "peak_position", "peak_height", "peak_width", "seconds")


def metrics(rho, truth, res, seconds):
    """One reconstruction's numbers, keyed by METRICS."""
    i, j = int(np.argmax(truth)), int(np.argmax(rho))
    return {"sum_drho2": float(((rho - truth) ** 2).sum()),
            "rel_l2": float(np.linalg.norm(rho - truth) / np.linalg.norm(truth)),
            "chi2_per_point": float(res.chi2_per_point), "peak_position": float(OMEGA[j] - OMEGA[i]),
            "peak_height": float(rho[j] - truth[i]), "peak_width": float(fwhm(rho, j) - fwhm(truth, i)),
            "seconds": seconds}


def cell_seeds(pname, n_seeds, quick):
    """The noise seeds of a cell: 0..n-1 with noise, [None] (one data set) with exact values."""
    noisy = next(pr for pr in protocols(quick) if pr[0] == pname)[3]
    return list(range(n_seeds)) if noisy else [None]


@functools.lru_cache(maxsize=None)
def cell_data(sname, pname, quick):
    """The truth on the grid, the momenta, the exact propagator and the noise's sigma of a cell
    (the adaptive quadrature takes up to 0.6 s: once per worker, not once per fit)."""
    spec = SPECTRA[sname]()
    _, p, eps, _ = next(pr for pr in protocols(quick) if pr[0] == pname)
    D0 = mock.propagator(spec, p)
    return spec(OMEGA), p, D0, mock.relative_noise_sigma(D0, p, eps)


@functools.lru_cache(maxsize=None)
def code_fingerprint(mname):
    """What a fit depends on besides its data: the code of lftaccel.spectral with docstrings and
    comments left out (its syntax tree) and the method's options. A fit in the seeds file is
    reused only under the same fingerprint, so no cell mixes fits of two versions of a method.
    (Read once per process, as the code was imported once.)"""
    h = hashlib.sha256(json.dumps(METHODS[mname], sort_keys=True).encode())
    for path in sorted(Path(S.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(path.name.encode() + ast.dump(tree).encode())
    return h.hexdigest()[:16]


def run_seed(task):
    """One reconstruction: a cell's data set for one noise seed (None: the exact central values).
    Its metrics (None where the outside peer failed on these data), and for seed 0 of the
    N_p = 100 noisy protocol the reconstruction itself, for the plot."""
    sname, pname, mname, seed, quick = task
    torch_threads(1)
    truth, p, D0, sigma = cell_data(sname, pname, quick)
    method, opts = METHODS[mname]
    D = D0 if seed is None else mock.add_noise(D0, sigma, 1000 * list(SPECTRA).index(sname) + seed)
    row = {"spectrum": sname, "protocol": pname, "method": mname, "seed": seed, "metrics": None, "example": None,
           "code": code_fingerprint(mname)}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", S.MisfitWarning)  # the table has every chi^2
            res = (ana_cont_mem(p, D, sigma, OMEGA) if method == "peer"
                   else S.reconstruct(p, D, sigma, OMEGA, method, **opts))
    except Exception as exc:  # a peer failing on one data set is a result, not a crash
        if method != "peer":
            raise
        print(f"  ana-cont failed on {sname} {pname} seed {seed}: {exc}", flush=True)
        return row
    row["metrics"] = metrics(res.rho, truth, res, time.perf_counter() - t0)
    if pname == "Np100 eps1e-4 noisy" and seed == 0:
        row["example"] = (res.rho.tolist(), None if res.band is None else res.band.tolist())
    return row


def row_seeds(row):
    """The seeds a cell row was made from (rows from before the seeds were recorded: 0..n-1 with
    noise, counting failed ones, or the one exact data set)."""
    if "seeds" in row:
        return row["seeds"]
    return [None] if "exact" in row["protocol"] else list(range(row["n"] + row.get("failed", 0)))


def aggregate(sname, pname, mname, seed_rows):
    """A cell's row from its seeds' rows: mean and standard deviation over the data sets that
    ran, how many ran and how many failed (the outside peer), and the plot's reconstruction."""
    per_seed = [r["metrics"] for r in seed_rows if r["metrics"] is not None]
    values = {k: [float("nan") if m[k] is None else m[k] for m in per_seed] for k in METRICS}  # null: NaN
    agg = {k: (float(np.mean(v)), float(np.std(v))) if per_seed else (float("nan"), float("nan"))
           for k, v in values.items()}
    example = next((r["example"] for r in seed_rows if r.get("example")), None)
    # failed seeds are part of the result: the table shows them beside the seeds that ran
    return {"spectrum": sname, "protocol": pname, "method": mname, "n": len(per_seed),
            "failed": len(seed_rows) - len(per_seed), **agg, "example": example,
            "seeds": [r["seed"] for r in seed_rows], "code": seed_rows[0]["code"]}


def torch_threads(n):
    import torch

    torch.set_num_threads(n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 seeds, the N_p = 100 protocols only")
    ap.add_argument("--seeds", type=int, help="noise seeds (default 20, --quick 3)")
    ap.add_argument("--seeds-for", default="", help="per-method seed counts, e.g. p2p=3,nn=10")
    ap.add_argument("--methods", help=f"comma list of {','.join(METHODS)}")
    ap.add_argument("--spectra", help=f"comma list of {','.join(SPECTRA)}")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (one torch thread each)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the cells and data sets already in OUT/spectral-{cells,seeds}.jsonl")
    ap.add_argument("--report-only", action="store_true",
                    help="compute nothing: the table and plots from the cells in OUT/spectral-cells.jsonl")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    n_seeds = args.seeds or (3 if args.quick else 20)
    # (a report drawn from the cells file shows ana-cont's cells without ana-cont installed)
    methods = (args.methods.split(",") if args.methods
               else [m for m in METHODS if m != "ana-cont" or args.report_only or ana_cont_available()])
    spectra = args.spectra.split(",") if args.spectra else list(SPECTRA)
    for name in methods:
        if name not in METHODS:
            ap.error(f"unknown method {name!r}")
        if name == "ana-cont" and not args.report_only and not ana_cont_available():
            ap.error("method ana-cont needs the optional peer ana-cont (see the docstring)")
    for name in spectra:
        if name not in SPECTRA:
            ap.error(f"unknown spectrum {name!r}")
    seeds_for = {}
    for item in filter(None, args.seeds_for.split(",")):
        name, _, n = item.partition("=")
        if name not in METHODS or not n.isdigit() or int(n) < 1:
            ap.error(f"--seeds-for takes METHOD=N with N >= 1, got {item!r}")
        seeds_for[name] = int(n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = out / "spectral-cells.jsonl"  # one line per finished cell
    seed_file = out / "spectral-seeds.jsonl"  # one line per finished data set: a killed run loses only those running
    done, seed_rows = {}, {}
    if args.report_only and not cells.exists():
        ap.error(f"--report-only needs {cells}")
    wanted = {(sname, pname, mname): cell_seeds(pname, seeds_for.get(mname, n_seeds), args.quick)
              for sname in spectra for pname, *_ in protocols(args.quick) for mname in methods}
    kept = {}  # every cell row read, the last of each cell, to write the file back in order
    if args.resume or args.report_only:
        for row in read_rows(cells, repair=args.resume):
            for k in METRICS:  # null (every seed failed) back to NaN
                row[k] = [float("nan") if v is None else v for v in row[k]]
            key = (row["spectrum"], row["protocol"], row["method"])
            kept[key] = row
            # a cell of other seeds than those asked for is made again (from the seeds file where it can)
            if args.report_only or key not in wanted or row_seeds(row) == wanted[key]:
                done[key] = row
    if args.resume:
        stale, codes = 0, {m: code_fingerprint(m) for m in methods}
        for row in read_rows(seed_file, repair=True):
            if row["method"] in codes and row.get("code") != codes[row["method"]]:
                stale += 1
                continue
            seed_rows.setdefault((row["spectrum"], row["protocol"], row["method"]), {})[row["seed"]] = row
        if stale:
            print(f"{seed_file}: {stale} fits made by other code or options are not reused", flush=True)
    elif not args.report_only:
        for f in (cells, seed_file):
            f.unlink(missing_ok=True)
    todo = {key: seeds_ for key, seeds_ in wanted.items() if key not in done and not args.report_only}
    tasks = [(*key, seed, args.quick) for key, seeds_ in todo.items() for seed in seeds_
             if seed not in seed_rows.get(key, {})]
    pool = None
    if args.jobs > 1:
        import multiprocessing
        import signal

        # SIGTERM must reach the finally below, or the workers outlive a killed run
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        pool = multiprocessing.get_context("spawn").Pool(args.jobs)
        results = pool.imap_unordered(run_seed, tasks)  # each recorded as it finishes
    else:
        results = map(run_seed, tasks)
    try:
        record(results, todo, seed_rows, seed_file, cells, done, total=len(tasks))
    finally:
        if pool is not None:
            pool.terminate()
    if not args.report_only:
        rewrite_in_order(cells, {**kept, **done})
    rows = [done[(s_, p_, m_)] for s_ in spectra for p_, *_ in protocols(args.quick) for m_ in methods
            if (s_, p_, m_) in done]
    for sname in spectra:
        examples = {r["method"]: r["example"] for r in rows if r["spectrum"] == sname and r.get("example")}
        plot(sname, SPECTRA[sname]()(OMEGA), examples, out / f"spectral-{sname}.png")
    write_table(rows, out / "spectral.md")
    (out / "spectral.json").write_text(json.dumps([json_safe({k: v for k, v in r.items() if k != "example"})
                                                   for r in rows],
                                                  indent=1))
    print(f"table: {out / 'spectral.md'}")
    return 0


def rewrite_in_order(cells, rows):
    """The cells file with one line per cell (the newest), in the order of SPECTRA, the protocols
    and METHODS, so the copy kept in git changes only where cells do; replaced atomically."""
    order = {key: i for i, key in enumerate((s, p[0], m) for s in SPECTRA for p in protocols(False) for m in METHODS)}
    tmp = cells.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(json_safe(rows[k])) + "\n"
                           for k in sorted(rows, key=lambda k: (order.get(k, len(order)), k))))
    os.replace(tmp, cells)


def read_rows(path, repair):
    """The JSON lines of a cells or seeds file. A line cut short (a run killed while it appended
    it) is skipped with a warning, so that fit is computed again; with repair, a file that does
    not end in a newline gets one, so that the next line starts on its own."""
    if not path.exists():
        return []
    text = path.read_text()
    rows = []
    for i, line in enumerate(text.splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"{path}, line {i + 1}: not JSON (cut short?), skipped: {line[:80]!r}", flush=True)
    if repair and text and not text.endswith("\n"):
        with path.open("a") as f:
            f.write("\n")
    return rows


def record(results, todo, seed_rows, seed_file, cells, done, total):
    """Appends each finished data set to the seeds file and each cell whose seeds are all in to
    the cells file (so --resume keeps both), printing the cell."""

    from tqdm import tqdm

    def finish_if_complete(key, bar):
        have = seed_rows.get(key, {})
        if key not in todo or not all(s in have for s in todo[key]):
            return
        row = aggregate(*key, [have[s] for s in todo.pop(key)])
        with cells.open("a") as f:
            f.write(json.dumps(json_safe(row)) + "\n")
        done[key] = row
        a = row["sum_drho2"]
        bar.write(f"{key[0]:<14}{key[1]:<22}{key[2]:<14} sum(drho^2) {a[0]:9.3f} +- {a[1]:7.3f}   "
                  f"chi2/N {row['chi2_per_point'][0]:8.3f}   {row['seconds'][0]:.2f} s   ({seeds(row)} seeds)")

    with tqdm(total=total, desc="data sets", unit="fit", disable=total == 0) as bar:
        for key in list(todo):  # cells whose seeds were all in the seeds file (killed before their row)
            finish_if_complete(key, bar)
        for row in results:
            with seed_file.open("a") as f:
                f.write(json.dumps({**row, "metrics": row["metrics"] and {
                    k: nan_to_none(v) for k, v in row["metrics"].items()}}) + "\n")
            key = (row["spectrum"], row["protocol"], row["method"])
            seed_rows.setdefault(key, {})[row["seed"]] = row
            bar.update()
            finish_if_complete(key, bar)


def nan_to_none(v):
    """Strict JSON has no NaN: a failed metric is written as null."""
    return None if isinstance(v, float) and np.isnan(v) else v


def json_safe(row):
    """A cell row with NaN metrics (a cell where every seed failed) as null."""
    return {k: [nan_to_none(v) for v in val] if k in METRICS else val for k, val in row.items()}


def seeds(row):
    """'20', or '14 (+6 failed)' where a method failed on some data sets (the outside peer)."""
    return f"{row['n']} (+{row['failed']} failed)" if row.get("failed") else str(row["n"])


def write_table(rows, path):
    lines = ["| spectrum | protocol | method | seeds | sum (Δρ)² | rel. L2 | χ²/N_p | Δ peak pos. | Δ peak height | "
             "Δ FWHM | time [s] |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: f"{v[0]:.3g} ± {v[1]:.2g}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['spectrum']} | {r['protocol']} | {r['method']} | {seeds(r)} | {f(r['sum_drho2'])} | "
                     f"{f(r['rel_l2'])} | "
                     f"{f(r['chi2_per_point'])} | {f(r['peak_position'])} | {f(r['peak_height'])} | "
                     f"{f(r['peak_width'])} | {r['seconds'][0]:.2f} |")
    notes = ["Δ FWHM is resolved to the grid spacing (0.04; see fwhm). χ²/N_p is every method's under this "
             "module's forward map ('linear'), ana-cont's included, not under ana-cont's own kernel sum: with the "
             "point at p = 0.001, whose sigma is ~1e-3 of its neighbours', it depends strongly on the quadrature.", ""]
    path.write_text("\n".join(lines + [""] + notes + targets(rows)) + "\n")


NEURAL = ("nn", "nn-log", "p2p")


def targets(rows):
    """The issue's targets, checked on the rows present: NN on the two-BW case (N_p = 100) at
    sum (Delta rho)^2 <= 0.6 (exact) and <= 1.1 (noisy); and, for every spectrum and protocol
    with eps <= 1e-3, each neural method against MEM (none is picked per cell after the fact):
    'no worse' when its mean is at most MEM's, 'within errors' when the excess is below the
    combined standard error of the two means (spread / sqrt(seeds)), 'worse' otherwise."""
    cell = {(r["spectrum"], r["protocol"], r["method"]): r for r in rows}
    out = ["## Targets", ""]
    for protocol, bound in (("Np100 eps1e-4 exact", 0.6), ("Np100 eps1e-4 noisy", 1.1)):
        r = cell.get(("two-bw", protocol, "nn"))
        if r:
            m = r["sum_drho2"]
            out.append(f"- two-bw {protocol}: NN {m[0]:.3g} +- {m[1]:.2g} (target <= {bound}): "
                       f"{'met' if m[0] <= bound else 'missed'}")
    out += ["", "sum (Δρ)² (mean ± spread over seeds) of each neural method against MEM, eps <= 1e-3:", "",
            "| spectrum | protocol | MEM | " + " | ".join(NEURAL) + " |", "|---|---|---|" + "---|" * len(NEURAL)]
    tally = {m: Counter() for m in NEURAL}
    for (sname, pname, mname), mem in cell.items():
        if mname != "mem" or "eps1e-02" in pname:  # the target is for eps <= 1e-3
            continue
        b, db = mem["sum_drho2"]
        entries = []
        for m in NEURAL:
            r = cell.get((sname, pname, m))
            if r is None:
                entries.append("-")
                continue
            a, da = r["sum_drho2"]
            if not (r["n"] and mem["n"] and np.isfinite(a) and np.isfinite(b)):  # every seed failed
                entries.append("n/a")
                continue
            se = np.hypot(da / np.sqrt(r["n"]), db / np.sqrt(mem["n"]))
            verdict = "no worse" if a <= b else ("within errors" if a - b <= se else "worse")
            tally[m][verdict] += 1
            entries.append(f"{a:.3g} ± {da:.2g} ({verdict})")
        out.append(f"| {sname} | {pname} | {b:.3g} ± {db:.2g} | " + " | ".join(entries) + " |")
    out.append("")
    for m in NEURAL:
        if tally[m]:
            out.append(f"- {m}: " + ", ".join(f"{n} {v}" for v, n in sorted(tally[m].items())) + " cells")
    return out


def plot(name, truth, recs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(OMEGA, truth, "k", lw=2, label="truth")
    for mname, (rho, band) in recs.items():
        rho = np.asarray(rho)
        line, = ax.plot(OMEGA, rho, lw=1, label=mname)
        if band is not None:
            band = np.asarray(band)
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
