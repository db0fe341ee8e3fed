"""Shared helpers for the pipeline-level tests: the tiny preset with caches under a tmp folder."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from mfclr.cli import main
from mfclr.config import Config, load_config


def tiny_config(cache: Path, *overrides: str) -> Config:
    return load_config(preset="tiny", overrides=[f"data.cache_dir={cache}", *overrides])


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run `mfclr argv...` in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
