"""The throughput benchmark runs end to end in a tiny configuration and prints one JSON object
with every figure docs/performance.md quotes (no timing thresholds: the machine is shared)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "throughput.py"
FORMATS = ("audio", "spectrogram")


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
    argv = [
        sys.executable,
        str(SCRIPT),
        "--preset=tiny",
        "--steps=1",
        "--batch-size=4",
        "--threads=1",
        "--device=cpu",
        "--augment-repeats=1",
        f"--set=data.cache_dir={cache}",
        "--set=data.probe.embedded.clips_per_class=4",
    ]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # an end-to-end run of the instrument: `make test` only
def test_the_last_line_holds_every_figure_positive_and_finite(result: dict) -> None:
    keys = ["augment_speedup_audio", "peak_rss_mb", "load_avg_1m", "load_ms_per_step"]
    for fmt in FORMATS:
        keys += [f"pipeline_efficiency_{fmt}", f"e2e_samples_per_s_{fmt}"]
        keys += [f"bare_samples_per_s_{fmt}", f"augment_ms_per_step_{fmt}"]
        keys += [f"e2e_ms_per_step_{fmt}", f"bare_ms_per_step_{fmt}"]
    keys += ["augment_torch_clips_per_s_audio", "augment_reference_clips_per_s_audio"]
    for key in keys:
        assert _positive(result[key]), (key, result.get(key))
    for fmt in FORMATS:
        assert _positive(result[f"pipeline_efficiency_{fmt}_mean"])
        for key in (f"bare_samples_per_s_{fmt}_chunks", f"e2e_samples_per_s_{fmt}_epochs"):
            assert result[key] and all(_positive(v) for v in result[key]), key


def test_it_records_the_setup_it_measured(result: dict) -> None:
    assert result["preset"] == "tiny" and result["device"] == "cpu"
    assert result["threads"] == 1 and result["batch_size"] == 4 and result["steps"] == 1
    # No GPU here: the GPU-only figures are null, not made up.
    assert result["peak_gpu_mem_mb"] is None
    assert all(result[f"gpu_utilization_{fmt}"] is None for fmt in FORMATS)


def test_make_exports_the_allocator_settings_the_benchmark_checks() -> None:
    """`make bench` must run with exactly the MALLOC_* values whose absence the script warns
    about (the benchmark's `malloc_env_set` compares the environment with MALLOC_ENV)."""
    exported = dict(re.findall(r"^export (MALLOC_\w+) := (\S+)$", (ROOT / "Makefile").read_text(),
                               flags=re.M))  # fmt: skip
    assert exported == _load_script().MALLOC_ENV


def test_the_documented_benchmark_commands_parse() -> None:
    import shlex

    throughput = _load_script()
    doc = (ROOT / "docs" / "performance.md").read_text()
    lines = [ln.split("#")[0] for ln in doc.splitlines() if "benchmarks.throughput " in ln]
    # A command ends at the line's end or at the backtick closing inline code.
    commands = [shlex.split(ln.split("benchmarks.throughput", 1)[1].split("`")[0]) for ln in lines]
    assert len(commands) >= 2 and any("--device" in c for c in commands)  # the GPU one too
    for argv in commands:
        argv = [a for a in argv if not a.startswith("[")]  # `[--compile]`: optional
        throughput.parse_args(argv)


@pytest.mark.slow  # an end-to-end run of the instrument: `make test` only
def test_the_predict_benchmark_times_every_stage(tmp_path: Path) -> None:
    """benchmarks/predict.py in a tiny setting: 3 files of 2 s, both tiny encoders (random)."""
    out = tmp_path / "predict.json"
    argv = [sys.executable, str(ROOT / "benchmarks" / "predict.py"), "--preset=tiny", "--files=3",
            "--seconds=2", "--threads=1", f"--out={out}"]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result == json.loads(proc.stdout.strip().splitlines()[-1])
    stages = [result[f"seconds_{k}"] for k in ("decode", "embed", "head")]
    assert all(_positive(s) for s in stages) and sum(stages) <= result["seconds_total"]
    assert result["chunks"] == 3 * 2 * 2  # 3 files x 2 formats x two 1 s crops of a 2 s file
    assert result["clips_per_s"] == pytest.approx(3 / result["seconds_total"])
    assert result["classifier"] == "random tiny" and set(result["encoders"]) == set(FORMATS)
