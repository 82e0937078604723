"""glibc's allocator, set for a training process on a CPU.

A d = 64 training step allocates and frees a few hundred activations of 0.1-4 MiB. With
glibc's defaults, freed blocks above its adaptive mmap threshold, and the top of the
heap beyond its trim threshold, go back to the kernel, so the next step page-faults the
same memory in again (about 8k minor faults per step of `s-d64-E16-k4`, 16 x 128
tokens). ``keep_freed_memory`` raises the mmap threshold to glibc's maximum (32 MiB) and
stops trimming: freed memory stays in the process for the next step. The arithmetic is
untouched (same kernels, same bits); the cost is that the process keeps its peak
resident set until it exits, which a training process does anyway. BENCHMARKS.md
measures the effect (the `study_train` rows).

Only glibc has ``mallopt``; elsewhere, or where the user set any ``MALLOC_*`` variable
(their choice wins), nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper bound on 64-bit (4 MiB x sizeof(long))
TOP_PAD = 64 << 20
NO_TRIM = 2**31 - 1  # an int: mallopt takes one


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory() -> bool:
    """Set glibc to keep freed memory in the process; True if it was set."""
    if any(k.startswith("MALLOC_") for k in os.environ):
        return False
    libc = _libc()
    if libc is None:
        return False
    ok = all(libc.mallopt(opt, val) == 1 for opt, val in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, NO_TRIM),
        (M_TOP_PAD, TOP_PAD)))
    return bool(ok)
