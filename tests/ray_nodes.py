"""Test-only: real Ray nodes on this machine, started and stopped by process id.

A node is `ray start --block` as the test's child, so every Ray process of the node descends from
it; stopping it stops exactly that tree (never `ray stop`, which stops every Ray process of the
user: a background sweep's, another test's cluster). Each node has its own temp dir and ports.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray  # noqa: F401

# Ray vendors psutil: importing ray puts it on the path.
psutil = importlib.import_module("psutil")
ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
# Token auth is on by default for local clusters since Ray 2.59: CLI clients must opt in too.
BASE_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **BASE_ENV, **extra}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def short_tmp(prefix: str) -> str:
    """A fresh folder under /tmp: Ray's Unix socket paths must stay under ~107 characters."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`ray start --block` as our child, waited for until the node runs."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    end = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None, f"ray start failed: {log.read_text()[-2000:]}"
        assert time.monotonic() < end, f"ray start timed out: {log.read_text()[-2000:]}"
        time.sleep(0.5)
    return proc


def tree(pid: int) -> list[Any]:
    """The process and every process below it (empty once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_procs(procs: list[Any], timeout: float = 5) -> None:
    """Terminate these processes (children first); kill what lingers. A process that has
    already exited, or whose pid now belongs to another process, is left alone (psutil checks
    the creation time)."""
    for p in reversed(procs):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


def stop_node(proc: subprocess.Popen) -> None:
    """Terminate the node we started and every process below it; kill what lingers."""
    stop_procs(tree(proc.pid))


def ray_cli(
    *args: str, env: dict[str, str], timeout: float = 60, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def sweep_entrypoint(out: Path, overrides: list[str], *extra: str) -> list[str]:
    """`python -m mfclr sweep sweeps/smoke.yaml --out OUT --quiet --set ...` for a Ray job."""
    entry = [sys.executable, "-m", "mfclr", "sweep", "sweeps/smoke.yaml", "--out", str(out)]
    entry += ["--quiet", *extra]
    for item in overrides:
        entry += ["--set", item]
    return entry
