"""Test-only: read offline W&B runs back without a server (`wandb leet inspect`).

wandb 0.31 has no Python reader for `.wandb` files; its CLI prints a run's config, summary,
tags, state and history as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfclr.errors import DataError, MfclrError


def offline_runs(dir: str | Path) -> list[Path]:
    """The `offline-run-*` folders under `<dir>/wandb`, oldest first."""
    return sorted(p for p in (Path(dir) / "wandb").glob("offline-run-*") if p.is_dir())


def logged_steps(dir: str | Path, run_id: str, key: str = "epoch") -> list[int]:
    """The steps of the rows with `key` that run `run_id` logged, over all its offline folders
    (one per start of the run, oldest first), in the order they were written. A start within the
    same second as the previous one gets W&B's `-<n>` suffix on the folder name."""
    own = re.compile(rf"-{re.escape(run_id)}(-\d+)?$")
    folders = [p for p in offline_runs(dir) if own.search(p.name)]
    runs = [inspect_run(p) for p in folders]
    # A start killed before W&B's service wrote anything leaves a folder that names no run and
    # holds no row (an interrupted trial that had just begun); every other folder is this run's.
    runs = [r for r in runs if r["run_id"] or r["history"]]
    ids = [r["run_id"] for r in runs]
    assert all(i == run_id for i in ids), f"{[p.name for p in folders]} hold runs {ids}"
    return [int(row["_step"]) for r in runs for row in r["history"] if key in row]


def settled_steps(
    dir: str | Path, run_id: str, expected: list[int], timeout: float = 30.0
) -> list[int]:
    """`logged_steps`, read again until it equals `expected` or `timeout` seconds pass: W&B's
    service process writes a finished run's last rows to disk shortly after `finish()` returns,
    later on a loaded machine. The last read is the strict one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if logged_steps(dir, run_id) == expected:
                break
        except (AssertionError, DataError):  # a run file still being written
            pass
        time.sleep(0.5)
    return logged_steps(dir, run_id)


def _wandb_cli() -> str:
    exe = Path(sys.executable).parent / "wandb"
    found = str(exe) if exe.is_file() else shutil.which("wandb")
    if not found:
        raise MfclrError(
            f"the wandb command is not installed next to {sys.executable}; "
            "install wandb in this environment"
        )
    return found


def inspect_run(run_dir: str | Path) -> dict[str, Any]:
    """Read one offline run back without a server (`wandb leet inspect`).

    Returns run_id, name, state, config (without W&B internals), summary, tags, group, job_type,
    history (one dict per logged step, tables as flattened "key._type"-style entries) and tables
    ({summary key: {"columns": [...], "data": [[...]]}} for every logged table).
    """
    run_dir = Path(run_dir)
    if not list(run_dir.glob("*.wandb")):
        raise DataError(f"'{run_dir}' holds no .wandb run file; pass an offline-run-* folder")
    cli = _wandb_cli()
    # Offline, else the reader sends its own usage telemetry to the W&B server. The two reads
    # are independent: start both, then wait (each costs ~0.6 s of Python startup).
    env = {**os.environ, "WANDB_MODE": "offline"}
    procs = [subprocess.Popen([cli, "leet", "inspect", *flags, "--json", str(run_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for flags in (["--summary"], [])]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise DataError(
                f"`wandb leet inspect {run_dir}` failed: "
                f"{(err.strip().splitlines() or ['no message'])[-1]}"
            )
    summary = json.loads(outs[0][0])
    records = [json.loads(line) for line in outs[1][0].splitlines() if line.startswith("{")]
    run = next((r["run"] for r in records if r.get("type") == "run"), {})
    history = [r["history"]["item"] for r in records if r.get("type") == "history"]
    values = summary.get("summary") or {}
    return {
        "run_id": summary.get("run_id"),
        "name": summary.get("name"),
        "state": summary.get("state"),
        "config": {k: v for k, v in (summary.get("config") or {}).items() if k != "_wandb"},
        "summary": values,
        "tags": summary.get("tags") or run.get("tags") or [],
        "group": run.get("run_group"),
        "job_type": run.get("job_type"),
        "history": history,
        "tables": _read_tables(run_dir, values),
    }


def _read_tables(run_dir: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    tables = {}
    for key, value in summary.items():
        if isinstance(value, Mapping) and value.get("_type") == "table-file":
            path = run_dir / "files" / str(value["path"])
            if path.is_file():
                tables[key] = json.loads(path.read_text())
    return tables
