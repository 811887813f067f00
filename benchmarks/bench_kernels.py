"""Kernel benchmark: lftaccel's compiled kernels against their pure-torch twins and against copy.

    python benchmarks/bench_kernels.py                  # --quick (default): < 1 min on 2 cores
    python benchmarks/bench_kernels.py --full --dtype both
    python benchmarks/bench_kernels.py --device cuda --full --compile
    python benchmarks/bench_kernels.py --kernels phi4,xy --json /tmp/kernels.json

For every problem (kernel, dtype, batch, lattice) the same run times
  kernel  the public call with preallocated outputs: phi4 / xy / oscillator fused action+grad
          (Theory.action_and_grad(x, action_out=, grad_out=)); fourier = the elementwise
          Matsubara kernel (preallocated outputs); philox = normal fill of a preallocated tensor;
  core    for phi4 / xy / oscillator, the compiled function alone (lftaccel._C) on buffers
          prepared once: the kernel without the Python wrapper's checks and buffer views, which
          cost a few microseconds a call (column 'core x' is the twin's time over it);
  twin    the pure-torch reference (lftaccel.reference) computing the same outputs from the same
          inputs, i.e. what a physicist would otherwise run (for fourier, the elementwise terms
          given c and the path: R.oscillator_matsubara_terms), and with --compile also
          torch.compile of it; for philox, torch's own Tensor.normal_ of the same size (another
          generator, the same job; the pure-torch Philox is a test oracle, not a baseline).
          For phi4 / xy / oscillator the twin is the two plain functions R.<theory>_action and
          R.<theory>_grad, one pass each;
  fused   for phi4 / xy / oscillator, R.<theory>_action_and_grad: both outputs in one pass of plain
          torch written for speed (rolls shared, phi^4's action read off its gradient as the
          kernel does), a faster pure-torch baseline (not torch's best: more in-place work and
          torch.compile go further); column 'x fused' is its time over the kernel's (public
          call). 1.8-2.1x faster than the twin for phi^4 at 64 x 64^2 (five runs);
  copy    dst.copy_(src) moving the same bytes as the kernel: read x + write grad = 2 N itemsize for
          the stencils (the batch action values are ignored), 4 N itemsize for fourier (read c and x,
          write both grads), N itemsize for philox (write only).
Row 'fourier+fft' is the end-to-end Matsubara action+grad (from_fourier, kernel, to_fourier) against
the time-domain twin with one transform each way; it has no bandwidth figure. Each time is the
minimum (the JSON also has the median) over samples filling a ~0.2 s budget (>= 5 samples after a
warm-up; tiny calls are looped so that a sample lasts ~1 ms, so small problems measure cache, not
memory, bandwidth). A problem's kernel, twin and copy are sampled in four alternating rounds, so
that all three see the same spells of the machine.
The kernels use torch.get_num_threads() threads (--threads N to set it); on a shared machine other
processes make OpenMP threads wait for scheduler slices (a stall of a scheduler tick turned one
64 x 64^2 ratio into 134x, another into 21x). The script measures the share of the CPU others
take in the second before it starts (provenance.cpu_busy: /proc/stat, steal time included).
On CUDA, samples are timed with CUDA events and --quick adds one 2**24-site problem per kernel.
The run ends with PASS/MISS lines for the targets: phi4 (batch 64, 64x64, float64) >= 25x faster
than its twin (with its ratio to the one-pass torch version beside it), and >= 60% of copy
bandwidth for every problem with batch*volume >= 2**16 sites (on CUDA: >= 80% for >= 2**24
sites), then an UNRELIABLE line where the run shows why not to read them as a verdict: others
took over 20% of the CPU at the start, a row's median exceeds 1.5x its minimum, or a kernel
beat a copy of its own bytes. Results go to benchmarks/results/kernels-<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import lftaccel
from lftaccel.runtime import steady_malloc
from lftaccel import _kernels
from lftaccel import reference as R
from lftaccel.fourier import from_fourier, to_fourier

from provenance import busy_at_start, noisy, provenance, unreliable, unreliable_line

# the pure-torch references must not page-fault at random (lftaccel/runtime.py)
STEADY_MALLOC = steady_malloc()

KERNELS = ("phi4", "xy", "oscillator", "fourier", "philox")
NO_COMPILE = ("philox",)  # its baseline is a single torch call already
DTYPES = {"float64": torch.float64, "float32": torch.float32}

_STENCIL_QUICK = [(1, (8, 8)), (64, (64, 64)), (1024, (32, 32)), (1, (1024, 1024)), (16, (16,) * 4)]
_PATH_QUICK = [(64, (1024,)), (256, (4096,))]
QUICK = {"phi4": _STENCIL_QUICK, "xy": _STENCIL_QUICK, "oscillator": _PATH_QUICK,
         "fourier": _PATH_QUICK, "philox": [(64, (64, 64)), (1, (1024, 1024))]}
# on CUDA --quick also runs one 2**24-site problem per kernel, where the GPU target applies
QUICK_CUDA_EXTRA = {"phi4": [(16, (1024, 1024))], "xy": [(16, (1024, 1024))],
                    "oscillator": [(4096, (4096,))], "fourier": [(4096, (4096,))],
                    "philox": [(16, (1024, 1024))]}


def full_grid():
    batches = (1, 4, 16, 64, 256, 1024)
    lat2d = [(L, L) for L in (8, 16, 32, 64, 128, 256, 512, 1024)]
    lat4d = [(L,) * 4 for L in (8, 16, 24)]
    paths = [(n,) for n in (64, 256, 1024, 4096)]
    grid = lambda lats: [(b, s) for s in lats for b in batches]  # noqa: E731
    return {"phi4": grid(lat2d + lat4d), "xy": grid(lat2d + lat4d), "oscillator": grid(paths),
            "fourier": grid(paths), "philox": grid(lat2d)}


class Timer:
    """(min, median) seconds per call of fn() over samples filling a time budget."""

    def __init__(self, device: torch.device, budget: float):
        self.cuda, self.budget = device.type == "cuda", budget

    def _run(self, fn, n: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n

    def _plan(self, fn) -> tuple:
        """Warms fn up (and compiles it, for torch.compile); returns (calls per sample, samples)."""
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        t0 = max(self._run(fn, 1), 1e-9)
        inner = min(1000, max(1, int(1e-3 / t0)))
        return inner, max(3 if t0 > self.budget else 5, min(200, int(self.budget / (inner * t0))))

    def __call__(self, fn) -> tuple:
        return self.paired([fn])[0]

    def paired(self, fns, rounds: int = 4) -> list:
        """(min, median) for each of fns, their samples taken in alternating rounds: the kernel,
        its twin and the copy then see the same spells of a shared machine (a busy neighbour
        slows compute-bound code more than memory-bound code, so timing them one after the
        other moved their ratios)."""
        plans = [self._plan(fn) for fn in fns]
        times = [[] for _ in fns]
        for r in range(rounds):
            for fn, (inner, samples), ts in zip(fns, plans, times):
                share = samples // rounds + (r < samples % rounds)
                ts += [self._run(fn, inner) for _ in range(share)]
        return [(min(ts), statistics.median(ts)) for ts in times]


def setup(name: str, batch: int, shape: tuple, dtype, device):
    """Returns (kernel_fn, twin, bytes, core_fn, fused_fn): twin = (f, args) with f(*args) the
    pure-torch action+grad (None where there is no twin on this device); bytes = what the kernel
    moves (None: not reported); core_fn = the compiled function alone on prepared buffers, fused_fn
    the one-pass pure-torch action+grad (None: not timed)."""
    n = batch * math.prod(shape)
    item = torch.finfo(dtype).bits // 8
    x = lftaccel.random.normal(batch, shape, seed=1, dtype=dtype, device=device)
    if name in ("phi4", "xy", "oscillator"):
        th = {"phi4": lambda: lftaccel.Phi4(0.18, 1.1), "xy": lambda: lftaccel.XY(1.0),
              "oscillator": lambda: lftaccel.Oscillator(beta=0.1 * shape[-1])}[name]()
        p = th._params()
        ref_a, ref_g = getattr(R, f"{name}_action"), getattr(R, f"{name}_grad")
        a, g = x.new_empty(batch), torch.empty_like(x)
        kernel = lambda: th.action_and_grad(x, action_out=a, grad_out=g)  # noqa: E731
        raw = [_kernels._raw(t, "buffer") for t in (x, a, g)]
        call = (getattr(_kernels._C, name), *raw, *p.values(), _kernels._nthreads(), _kernels._stream(x))
        core = lambda: call[0](*call[1:])  # noqa: E731
        ref_fused = getattr(R, f"{name}_action_and_grad")
        fused = lambda: ref_fused(x, **p)  # noqa: E731
        return kernel, (lambda x: (ref_a(x, **p), ref_g(x, **p)), (x,)), 2 * n * item, core, fused
    if name in ("fourier", "fourier+fft"):
        p = lftaccel.Oscillator(beta=0.1 * shape[-1])._params()
        c = to_fourier(x).contiguous()
        path = from_fourier(c).contiguous()
        if name == "fourier":
            # the same three outputs from the same two inputs, in torch: like for like
            bufs = (c.new_empty(batch), torch.empty_like(c), torch.empty_like(c))
            twin = (lambda c, path: R.oscillator_matsubara_terms(c, path, **p), (c, path))
            return lambda: _kernels.oscillator_fourier(c, path, p, out=bufs), twin, 4 * n * item, None, None

        def twin_end_to_end(c):  # one transform each way, as the kernel's caller does
            x = from_fourier(c)
            return R.oscillator_action(x, **p), to_fourier(R.oscillator_grad(x, **p))

        twin = (twin_end_to_end, (c,))

        def end_to_end():
            a, gc, gx = _kernels.oscillator_fourier(c, from_fourier(c).contiguous(), p)
            return a, gc + to_fourier(gx)
        return end_to_end, twin, None, None, None
    if name == "philox":
        out = torch.empty_like(x)
        kernel = lambda: _kernels.philox_fill(out, "normal", seed=7, step=3)  # noqa: E731
        # The baseline is what a torch user runs for normals, torch's own generator filling the
        # same tensor; the pure-torch Philox (lftaccel.reference) is the test oracle, emulating
        # 32-bit multiplies in int64, and 6-9x slower than normal_ again.
        gen = torch.Generator(device=device).manual_seed(7)
        other = torch.empty_like(x)
        return kernel, (lambda: other.normal_(generator=gen), ()), n * item, None, None
    raise ValueError(f"unknown kernel {name!r}")


def make_copy(nbytes: int, dtype, device):
    """dst.copy_(src) moving nbytes (read + write), preallocated dst."""
    n = max(1, nbytes // (2 * (torch.finfo(dtype).bits // 8)))
    src = torch.ones(n, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def compiled_twin(twin):
    """torch.compile of the twin, compiled here (None where it fails), so that its samples join
    the paired rounds of the others."""
    try:
        f = torch.compile(twin[0], dynamic=False)
        f(*twin[1])
        return lambda: f(*twin[1])
    except Exception as exc:  # noqa: BLE001 - torch.compile is optional and fragile
        print(f"  [torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}]")
        return None


def bench_one(timer, name, batch, shape, dtype, device, use_compile) -> dict:
    kernel, twin, nbytes, core, fused = setup(name, batch, shape, dtype, device)
    row = {"kernel": name, "dtype": str(dtype).replace("torch.", ""), "batch": batch,
           "shape": list(shape), "sites": batch * math.prod(shape), "bytes": nbytes}
    fns = {"kernel": kernel, "twin": (lambda: twin[0](*twin[1])) if twin else None,
           "copy": make_copy(nbytes, dtype, device) if nbytes else None, "core": core, "fused": fused,
           "compiled": compiled_twin(twin) if use_compile and twin and name not in NO_COMPILE else None}
    names = [k for k, f in fns.items() if f is not None]
    measured = dict(zip(names, timer.paired([fns[k] for k in names])))
    ms = lambda k, i=0: 1e3 * measured[k][i] if k in measured else None  # noqa: E731
    row["kernel_ms"], row["kernel_median_ms"] = ms("kernel"), ms("kernel", 1)
    row["twin_ms"], row["twin_median_ms"] = ms("twin"), ms("twin", 1)
    row["core_ms"] = ms("core")
    row["core_speedup"] = row["twin_ms"] / row["core_ms"] if core and twin else None
    row["fused_ms"], row["fused_median_ms"] = ms("fused"), ms("fused", 1)
    row["fused_speedup"] = row["fused_ms"] / row["kernel_ms"] if fused else None
    row["compiled_ms"] = ms("compiled")
    ratio = lambda t: None if t is None else t / row["kernel_ms"]  # noqa: E731
    row["speedup"], row["compiled_speedup"] = ratio(row["twin_ms"]), ratio(row["compiled_ms"])
    row["kernel_GBps"] = row["copy_GBps"] = row["pct_copy"] = None
    if nbytes:
        row["kernel_GBps"] = nbytes / row["kernel_ms"] / 1e6
        row["copy_GBps"] = nbytes / measured["copy"][0] / 1e9
        row["pct_copy"] = 100 * row["kernel_GBps"] / row["copy_GBps"]
    return row


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def header(use_compile):
    cols = (f"{'kernel':<12}{'dtype':<8}{'batch':>6} {'shape':<14}{'sites':>10}"
            f"{'kernel ms':>11}{'twin ms':>10}")
    if use_compile:
        cols += f"{'compiled':>10}{'x cmp':>7}"
    return cols + (f"{'speed-up':>9}{'kern GB/s':>10}{'copy GB/s':>10}{'%copy':>7}{'core ms':>10}{'core x':>7}"
                   f"{'fused ms':>10}{'x fused':>8}")


def line(r, use_compile):
    s = (f"{r['kernel']:<12}{r['dtype']:<8}{r['batch']:>6} {'x'.join(map(str, r['shape'])):<14}"
         f"{r['sites']:>10}{r['kernel_ms']:>11.4f}{fmt(r['twin_ms'], '.4f'):>10}")
    if use_compile:
        s += f"{fmt(r['compiled_ms'], '.4f'):>10}{fmt(r['compiled_speedup'], '.1f'):>7}"
    return s + (f"{fmt(r['speedup'], '.1f'):>9}{fmt(r['kernel_GBps'], '.2f'):>10}"
                f"{fmt(r['copy_GBps'], '.2f'):>10}{fmt(r['pct_copy'], '.0f'):>7}"
                f"{fmt(r['core_ms'], '.4f'):>10}{fmt(r['core_speedup'], '.1f'):>7}"
                f"{fmt(r['fused_ms'], '.4f'):>10}{fmt(r['fused_speedup'], '.1f'):>8}")


def row_noisy(r) -> bool:
    """Whether the kernel's or the twin's median exceeds its minimum by NOISY_SPREAD."""
    return noisy((r["kernel_ms"], r["kernel_median_ms"]), (r["twin_ms"], r["twin_median_ms"]))


def reliability(rows, busy) -> list:
    """Why this run's figures cannot be trusted (empty: no sign of that)."""
    faster = sum(r["pct_copy"] is not None and r["pct_copy"] > 100 for r in rows)
    return unreliable(busy, sum(map(row_noisy, rows)), len(rows),
                      faster and f"{faster} problem(s) faster than a copy of the same bytes, which a stencil "
                                 "cannot be")


def targets(rows, device, busy=None) -> list:
    out = []
    hit = [r for r in rows if r["kernel"] == "phi4" and r["dtype"] == "float64"
           and r["batch"] == 64 and r["shape"] == [64, 64]]
    if not hit or hit[0]["speedup"] is None:
        out.append("NOT RUN  phi4 action+grad (64, 64x64, float64) speed-up vs twin >= 25x")
    else:
        r = hit[0]
        s, c = r["speedup"], r["core_speedup"]
        out.append(f"{'PASS' if s >= 25 else 'MISS'}     phi4 action+grad (64, 64x64, float64) "
                   f"speed-up vs twin {s:.1f}x through the public call, {c:.1f}x the compiled "
                   f"function alone (target >= 25x){' [noisy row]' if row_noisy(r) else ''}")
        if r["fused_speedup"] is not None:
            out.append(f"         (against the one-pass pure-torch action+grad, R.phi4_action_and_grad: "
                       f"{r['fused_speedup']:.1f}x"
                       + (f"; against torch.compile of the twin: {r['compiled_speedup']:.1f}x"
                          if r.get("compiled_speedup") else "") + ")")
    min_sites, frac = (2**24, 80) if device.type == "cuda" else (2**16, 60)
    big = [r for r in rows if r["pct_copy"] is not None and r["sites"] >= min_sites]
    miss = [r for r in big if r["pct_copy"] < frac]
    what = f">= {frac}% of copy bandwidth at batch*volume >= 2**{int(math.log2(min_sites))}"
    if not big:
        out.append(f"NOT RUN  {what} (no such problem measured)")
    elif not miss:
        out.append(f"PASS     {what}: all {len(big)} problems")
    else:
        out.append(f"MISS     {what}: {len(miss)} of {len(big)} problems miss:")
        out += [f"           {r['kernel']} {r['dtype']} batch {r['batch']} "
                f"{'x'.join(map(str, r['shape']))}: {r['pct_copy']:.0f}%" for r in miss]
    why = reliability(rows, busy)
    if why:
        out.append(unreliable_line(why))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few problems, ~1 min on 2 cores (default)")
    mode.add_argument("--full", action="store_true", help="the whole grid")
    ap.add_argument("--kernels", default=",".join(KERNELS), help=f"comma list of {','.join(KERNELS)}")
    ap.add_argument("--dtype", choices=("float64", "float32", "both"),
                    help="default: float64 with --quick, both with --full")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--max-sites", type=int, help="skip batch*volume above this "
                    "(default 2**20 for --quick on the CPU, else 2**24)")
    ap.add_argument("--threads", type=int, help="torch (and kernel) threads; default: torch's")
    ap.add_argument("--budget", type=float, default=0.2, help="seconds of timing per measurement")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the twins (slow)")
    ap.add_argument("--json", help="output path (default benchmarks/results/kernels-<device>.json)")
    args = ap.parse_args(argv)

    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    bad = [k for k in kernels if k not in KERNELS]
    if bad:
        ap.error(f"unknown kernel(s) {bad}; choose from {','.join(KERNELS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda requested but torch sees no CUDA device")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype_arg = args.dtype or ("both" if args.full else "float64")
    dtypes = list(DTYPES.values()) if dtype_arg == "both" else [DTYPES[dtype_arg]]
    max_sites = args.max_sites or (2**24 if args.full or device.type == "cuda" else 2**20)
    grid = full_grid() if args.full else dict(QUICK)
    if device.type == "cuda" and not args.full:
        grid = {k: v + QUICK_CUDA_EXTRA[k] for k, v in grid.items()}
    if args.compile:
        for opt in ("cache_size_limit", "recompile_limit"):  # one recompilation per problem
            if hasattr(torch._dynamo.config, opt):
                setattr(torch._dynamo.config, opt, 4096)
    timer = Timer(device, args.budget)

    print(f"lftaccel {lftaccel.build_info().get('version')}, torch {torch.__version__}, device {device}, "
          f"{torch.get_num_threads()} threads, max sites {max_sites}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    busy = busy_at_start(device.type)
    print(header(args.compile))
    rows, skipped, t_start = [], [], time.perf_counter()
    for name in kernels:
        todo = [(b, s) for b, s in grid[name] if b * math.prod(s) <= max_sites]
        skipped += [f"{name} {b}x({'x'.join(map(str, s))})" for b, s in grid[name] if (b, s) not in todo]
        variants = [name, "fourier+fft"] if name == "fourier" else [name]
        for dtype in dtypes:
            for batch, shape in todo:
                for v in variants:
                    rows.append(bench_one(timer, v, batch, shape, dtype, device, args.compile))
                    print(line(rows[-1], args.compile), flush=True)
    wall = time.perf_counter() - t_start
    if skipped:
        shown = "; ".join(skipped[:6]) + ("; ..." if len(skipped) > 6 else "")
        print(f"\nskipped {len(skipped)} problem(s) over --max-sites={max_sites} "
              f"(batch x lattice; all listed in the JSON): {shown}")
    print(f"\ntargets ({device}):")
    checks = targets(rows, device, busy)
    print("\n".join(checks))
    print(f"\nbenchmark wall time {wall:.1f} s")

    default = Path(__file__).parent / "results" / f"kernels-{device.type}.json"
    path = Path(args.json) if args.json else default
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "build_info": lftaccel.build_info(), "args": vars(args), "max_sites": max_sites,
              "load_avg_at_start": load, "cpu_busy_at_start": busy, "steady_malloc": STEADY_MALLOC,
              "wall_s": wall, "rows": rows,
              "skipped": skipped, "targets": checks, "provenance": provenance()}
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
