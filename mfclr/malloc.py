"""glibc's allocator, set to keep freed memory for the next CPU step.

SampleCNN's activations are hundreds of MB. By default glibc serves blocks that large with mmap
and hands them back to the OS on free, so every step faults them in again: 37-54 % of a CPU
step's time (docs/performance.md). Two settings keep them in the heap. glibc reads them from the
environment at process start (`MALLOC_ENV`: the Makefile exports them, and Ray workers get them
through their runtime env), and `keep_freed_memory` applies them to a process already running
(`mfclr` started by hand) with mallopt.
"""

from __future__ import annotations

import ctypes
import os
import sys

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}

# mallopt parameters (malloc.h); its value is a C int, so the trim threshold is 2 GiB here
# against the environment's 64 GiB: either is far above one step's activations.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Apply MALLOC_ENV's two settings to this process with glibc's mallopt; True if applied.

    Nothing happens where the environment already sets either variable (its values win), or
    off glibc (macOS, musl: no mallopt, and other allocators)."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in MALLOC_ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
