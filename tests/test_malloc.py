"""mfclr/malloc.py: an `mfclr` started without make's MALLOC_* settings keeps freed memory too."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mfclr.malloc import MALLOC_ENV

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Frees a 400 MB block and prints how much the resident set shrank. glibc serves a block that
# large with mmap and unmaps it on free, unless the two settings keep it in the heap.
PROBE = """
import os, sys
import numpy as np
from mfclr.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "apply" else False
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
block = np.ones(50_000_000)
before = rss()
del block
print(applied, (before - rss()) // 2**20)
"""


def _freed_mb(mode: str, env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return out[0], int(out[1])


def test_without_the_environment_freed_memory_stays_in_the_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    assert _freed_mb("apply", env)[0] == "True"
    assert _freed_mb("apply", env)[1] < 50
    # The control: glibc's defaults return the block to the OS.
    assert _freed_mb("none", env) == ("False", pytest.approx(381, abs=40))


def test_settings_in_the_environment_win() -> None:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env["MALLOC_MMAP_MAX_"] = "65536"  # the user's own choice: mmap allowed
    assert _freed_mb("apply", env) == ("False", pytest.approx(381, abs=40))
