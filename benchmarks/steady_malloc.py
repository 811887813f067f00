"""Keep glibc from returning freed memory to the OS during a benchmark.

The pure-torch twins allocate a fresh tensor per operation (2 MiB for a 64 x 64^2 float64
batch). By default glibc serves such blocks with mmap and gives freed memory back (mmap
threshold and trim threshold, both adjusted at run time), so whether every op page-faults
its output anew depends on the process's allocation history: the same twin timed 1.2 ms in
some processes and 10 ms in others, which made the speed-up targets pass or fail by chance
(phi^4 action + gradient at 64 x 64^2, float64: 23x against one twin, 180x against the
other). Fixing both thresholds high keeps the memory in the heap, and the twin always in its
fast state: the honest reference. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def steady_malloc(threshold: int = 1 << 30) -> bool:
    """Set glibc's mmap and trim thresholds to ``threshold`` bytes; True if it took effect."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, min(threshold, 1 << 30))) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
