"""What a benchmark's JSON needs, beside the build_info it records itself, to say where and
from what it was measured: the machine (CPU model, core count, load), the git commit of the
source tree (the package version stays 0.1.0 between commits) and the versions of the
libraries whose speed or numbers enter the figures."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str | None:
    """The model name, with the family / model / stepping numbers that tell one generation from
    another where a virtual machine's name says only "AMD EPYC", and whether AVX-512 is there."""
    try:
        info = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
        if "model name" in info:
            numbers = ", ".join(f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info)
            simd = "AVX-512" if "avx512f" in info.get("flags", "").split() else "no AVX-512"
            return f"{info['model name']} ({numbers}; {simd})"
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    """`git describe` of the tree this script sits in ('-dirty' when it has uncommitted changes)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The fraction of the machine's CPU time that others took over the next ``seconds`` (this
    process sleeps meanwhile): user, system, interrupts and, on a virtual machine, the time the
    host gave other guests (steal), from /proc/stat; None where it is missing. Unlike the load
    average, a one-minute mean, it is not raised by a benchmark that has just finished."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields[:8])  # user nice system idle iowait irq softirq steal
    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1.0 - (idle1 - idle0) / total


BUSY_LIMIT = 0.2  # a share of the CPU taken by others before the start that makes a run unreliable
# A timing whose median exceeds its minimum by this factor was measured through stalls: on a busy
# machine a 2-thread OpenMP region waits whole scheduler ticks, and a ratio taken from it can be
# off either way by several times.
NOISY_SPREAD = 1.5


def busy_at_start(device_type: str) -> float | None:
    """cpu_busy() before a CPU benchmark (None on other devices), warning when over BUSY_LIMIT."""
    busy = cpu_busy() if device_type == "cpu" else None
    if busy is not None and busy > BUSY_LIMIT:
        print(f"WARNING: other processes took {100 * busy:.0f}% of the CPU in the second before starting: "
              "timings will be noisy")
    return busy


def noisy(*min_median_pairs) -> bool:
    """Whether any (minimum, median) pair has its median over NOISY_SPREAD x its minimum."""
    return any(t is not None and m is not None and m > NOISY_SPREAD * t for t, m in min_median_pairs)


def unreliable(busy, n_noisy: int, n_rows: int, *others) -> list:
    """Why a run's figures are no verdict: the CPU others took at the start, rows measured through
    stalls, and the caller's own reasons (empty: no sign of that)."""
    why = [f"{100 * busy:.0f}% of the CPU busy with other work at the start"] if busy is not None and \
        busy > BUSY_LIMIT else []
    if n_noisy:
        why.append(f"{n_noisy} of {n_rows} problem(s) with a median over {NOISY_SPREAD}x its minimum")
    return why + [w for w in others if w]


def unreliable_line(why, what: str = "the lines above") -> str:
    return f"UNRELIABLE: {'; '.join(why)}. Rerun on an idle machine before reading {what} as a verdict."


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def provenance(args=None) -> dict:
    """The machine, the commit and the versions, with the script's arguments when given."""
    out = {"host": platform.node(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
           "git": _git_commit(), "python": sys.version.split()[0],
           "versions": {n: _version(n) for n in ("torch", "numpy", "scipy", "pyerrors", "h5py")}}
    if args is not None:
        out["args"] = vars(args)
    return out
