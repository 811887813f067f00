"""Process-wide settings for long CPU jobs.

:func:`steady_malloc` stops glibc from handing freed memory back to the operating system.
Torch allocates a fresh tensor per operation. Blocks of 128 KiB and more are served by mmap
by default, and glibc returns freed memory under thresholds that it adjusts at run time, so
whether each operation page-faults its output anew depends on the process's allocation
history. Measured on a 2-core AMD EPYC: a pure-torch phi^4 action + gradient at 64 x 64^2
took 1.2 ms in some fresh processes and 10 ms in others, and a small convolutional
network's training step (batch 256, 32^2) 100-112 ms against 63-66 ms with the thresholds
fixed. The ``lftaccel`` command calls it at start (``LFTACCEL_STEADY_MALLOC=0`` opts out), and
so do the benchmarks, whose pure-torch references must not be slowed at random. A library
should not change its host process's allocator on import, so ``import lftaccel`` does not;
call it yourself in a long-running script. The cost: the process keeps its peak heap until
it exits.
"""

from __future__ import annotations

import ctypes

__all__ = ["steady_malloc"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
# The mmap threshold's ceiling in many glibc versions (HEAP_MAX_SIZE / 2 on 64-bit); glibc 2.36
# here accepts 1 GiB. Where only this much is accepted, larger tensors are still mmapped.
_MMAP_CEILING = 32 << 20


def steady_malloc(threshold: int = 1 << 30) -> bool:
    """Fix glibc's mmap and trim thresholds at ``threshold`` bytes (the mmap threshold at 32 MiB
    where glibc refuses more, as many versions do), so freed memory stays in the heap and is
    reused without page faults. Returns whether mallopt accepted it (False where the C library
    has no mallopt; an allocator preloaded over glibc's, such as jemalloc, is not detected).
    Safe to call at any time, also after torch is imported."""
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1 << 20:
        raise ValueError(f"threshold must be an integer number of bytes >= 1 MiB, got {threshold!r}")
    try:  # the process's own symbols: no library search (find_library would spawn ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    value = min(threshold, (1 << 31) - 1)
    mmap_ok = bool(mallopt(M_MMAP_THRESHOLD, value)) or bool(
        mallopt(M_MMAP_THRESHOLD, min(value, _MMAP_CEILING)))
    return mmap_ok and bool(mallopt(M_TRIM_THRESHOLD, value))
