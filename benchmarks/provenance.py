"""What a benchmark's JSON needs, beside the build_info it records itself, to say where and
from what it was measured: the machine (CPU model, core count, load), the git commit of the
source tree (the package version stays 0.1.0 between commits) and the versions of the
libraries whose speed or numbers enter the figures."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
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
