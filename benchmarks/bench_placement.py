"""How the compiled phi^4 action + gradient's time depends on where its gradient lies.

    python benchmarks/bench_placement.py                      # 64 x 64^2 and 1024 x 32^2, float64, 1 thread: ~10 s
    python benchmarks/bench_placement.py --problems 16x16x16x16:16 --threads 2

For each problem the gradient buffer is placed at each of the 64 offsets (0, 64, ..., 4032 bytes)
from the field modulo 4096, and the compiled function alone (lftaccel._C, as bench_kernels.py's
'core' column) is timed there: the minimum over rounds that visit the offsets in turn, each
sample after an untimed call, so that it finds its buffers in the caches. A core
that sees a load follow a store still in flight with the same low 12 address bits holds the
load (4K aliasing); the CPU vector rows hold their stores back where their model of that
expects fewer stalls (csrc/cpu/stencil.hpp, kStoreDelay). The table gives the fastest
placement's time, and the slowest and the mean over the placements relative to it, and lists
the placements more than 5 % slower than the fastest. A shared machine's spells show up as
slow placements too: rerun before reading one as the kernel's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import lftaccel
from lftaccel import _kernels
from lftaccel.runtime import steady_malloc

OFFSETS = range(0, 4096, 64)


def placed(like: torch.Tensor, offset: int) -> torch.Tensor:
    """An empty tensor like `like` whose data lie `offset` bytes past like's modulo 4096."""
    item = like.element_size()
    buf = torch.empty(like.numel() + 4096 // item, dtype=like.dtype)
    skip = ((like.data_ptr() - buf.data_ptr() + offset) % 4096) // item
    return buf[skip:skip + like.numel()].view_as(like)


def scan(batch: int, shape: tuple, dtype, threads: int, rounds: int) -> dict:
    x = lftaccel.random.normal(batch, shape, seed=1, dtype=dtype)
    theory = lftaccel.Phi4(0.18, 1.1)
    params = list(theory._params().values())
    calls = []
    for offset in OFFSETS:
        raw = [_kernels._raw(t, "buffer") for t in (x, x.new_empty(batch), placed(x, offset))]
        calls.append(lambda raw=raw: _kernels._C.phi4(*raw, *params, threads, 0))
    calls[0]()
    t0 = time.perf_counter()
    calls[0]()
    inner = max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))  # ~2 ms a sample
    best = [float("inf")] * len(calls)
    for _ in range(rounds):
        for k, call in enumerate(calls):
            call()  # (untimed: the sample finds its buffers in the caches, as a kernel reused is)
            t = time.perf_counter()
            for _ in range(inner):
                call()
            best[k] = min(best[k], (time.perf_counter() - t) / inner)
    fastest = min(best)
    return {"problem": f"{batch} x {'x'.join(map(str, shape))}", "fastest_ms": fastest * 1e3,
            "slowest": max(best) / fastest, "mean": statistics.mean(best) / fastest,
            "slow": {o: t / fastest for o, t in zip(OFFSETS, best) if t > 1.05 * fastest}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="64x64:64,32x32:1024",
                    help="comma-separated LATTICE:BATCH, e.g. 64x64:64 (default: 64x64:64,32x32:1024)")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=1, help="kernel threads (default 1: steadier)")
    ap.add_argument("--rounds", type=int, default=20, help="passes over the offsets (default 20)")
    args = ap.parse_args(argv)
    steady_malloc()
    dtype = getattr(torch, args.dtype)
    print(f"lftaccel {lftaccel.__version__}, phi^4 action + gradient, {args.dtype}, {args.threads} thread(s)")
    print(f"{'problem':>16} {'fastest ms':>11} {'slowest':>8} {'mean':>6}  placements > 5 % slower (bytes: ratio)")
    for item in args.problems.split(","):
        lattice, batch = item.split(":")
        r = scan(int(batch), tuple(int(s) for s in lattice.split("x")), dtype, args.threads, args.rounds)
        slow = " ".join(f"{o}:{v:.2f}" for o, v in r["slow"].items()) or "-"
        print(f"{r['problem']:>16} {r['fastest_ms']:>11.4f} {r['slowest']:>8.2f} {r['mean']:>6.3f}  {slow}")


if __name__ == "__main__":
    main()
