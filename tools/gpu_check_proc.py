"""Subprocesses for `tools/gpu_check.py`: run one command in its own process group with a
timeout (the whole group, Ray's processes included, is stopped at the timeout) while polling
`nvidia-smi`, and read the last JSON line of an output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    rc: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    gpu: dict[str, float | None] = field(default_factory=dict)

    def tail(self, n: int = 800) -> str:
        return (self.stderr.strip() or self.stdout.strip())[-n:]


class SmiSampler:
    """Polls `nvidia-smi` for utilisation (%) and memory in use (MiB) while in its block."""

    def __init__(self, enabled: bool, every_s: float = 0.5) -> None:
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.every_s, self.util, self.mem = every_s, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            values = smi_query("utilization.gpu,memory.used")
            try:
                util, mem = float(values[0]), float(values[1])  # type: ignore[index]
            except (TypeError, ValueError, IndexError):
                continue  # a failed poll is a missing sample
            self.util.append(util)
            self.mem.append(mem)

    def __enter__(self) -> SmiSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> dict[str, float | None]:
        if not self.enabled:
            return {}
        u = self.util
        return {
            "smi_gpu_util_mean": round(statistics.mean(u), 1) if u else None,
            "smi_gpu_util_max": max(u) if u else None,
            "smi_gpu_mem_used_max_mb": max(self.mem) if self.mem else None,
        }


def smi_query(fields: str) -> list[str] | None:
    """`nvidia-smi --query-gpu=FIELDS` of the first GPU as strings, or None if it cannot run."""
    cmd = ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
        return [v.strip() for v in out.stdout.splitlines()[0].split(",")]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def run_cmd(cmd: list[str], cwd: Path, timeout_s: float, env: dict[str, str], gpu: bool) -> Run:
    """Run `cmd` in its own process group from the repository root; at the timeout the whole
    group (Ray's processes included) gets SIGTERM, then SIGKILL."""
    full_env = {**os.environ, **env}
    # The checkout first: `import mfclr` is this tree, not another editable install.
    paths = [str(cwd), os.environ.get("PYTHONPATH")]
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    t0 = time.perf_counter()
    with SmiSampler(gpu) as smi:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=full_env,
            text=True,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            out, err = _kill_group(proc)
            rc = None
    return Run(rc, out, err, round(time.perf_counter() - t0, 1), smi.summary())


def _kill_group(proc: subprocess.Popen) -> tuple[str, str]:
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.communicate(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.communicate()


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of `text` that is a JSON object, else None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None
