"""`make gpu-check` (tools/gpu_check.py) on a machine without a GPU: its checks report
skipped with a reason, a failing or hanging check is reported failed with its reason and fails the
run, the parsers judge the figures against the targets, and the step-time table
(benchmarks/step_times.py) has every bf16 / channels_last / compile combination on CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.step_times as st
import tools.gpu_check as gc
import tools.gpu_check_proc as gc_proc

ROOT = Path(__file__).resolve().parents[1]


def _run(stdout: str = "", stderr: str = "", rc: int | None = 0) -> object:
    return gc.Run(rc, stdout, stderr, 1.0)


def _check(name: str, **ctx: object) -> object:
    return gc.Check(name, ["true"], getattr(gc, f"parse_{name}"), 10, ctx={"cuda": False, **ctx})


def test_without_cuda_every_check_is_skipped_with_a_reason(tmp_path: Path, capsys) -> None:
    rc = gc.main(["--out", str(tmp_path)], cuda=False)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and result["failed"] == []
    assert list(result["checks"]) == list(gc.CHECKS)
    for section in result["checks"].values():
        assert section["status"] == "skipped" and "no CUDA device" in section["reason"]
    assert result["environment"]["cuda"] is False and result["environment"]["ran_on_gpu"] is False
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == result


def test_on_cpu_the_checks_are_tiny_and_ask_for_no_gpu(tmp_path: Path) -> None:
    args = gc.parse_args(["--allow-cpu", "--out", str(tmp_path)])
    checks = {c.name: c for c in gc.build_checks(args, cuda=False)}
    assert list(checks) == list(gc.CHECKS)
    assert "--use-gpu" not in checks["ray_train"].cmd
    assert "resources.gpus_per_worker=0" in checks["sweep"].cmd
    assert "eager" in checks["step_times"].cmd and "tiny" in checks["throughput"].cmd
    for name in ("ray_train", "sweep"):  # its own short Ray temp dir, to read its logs from
        assert checks[name].env["RAY_TMPDIR"] == str(checks[name].ctx["ray_tmp"])
        assert len(checks[name].env["RAY_TMPDIR"]) < 48
    assert "RAY_TMPDIR" not in checks["cuda_tests"].env
    gpu = {c.name: c for c in gc.build_checks(gc.parse_args(["--out", str(tmp_path)]), cuda=True)}
    assert "--use-gpu" in gpu["ray_train"].cmd and gpu["ray_train"].ctx["backend"] == "nccl"
    assert gpu["sweep"].ctx["backend"] is None  # one-worker trials: no Ray Train process group
    assert "resources.gpus_per_worker=0" not in gpu["sweep"].cmd
    assert "inductor" in gpu["step_times"].cmd and "each" in gpu["step_times"].cmd
    assert "full" in checks["step_times"].cmd
    assert sum(c.timeout_s for c in gpu.values()) >= gc.GPU_BUDGET_S  # the budget caps them
    assert gc.GPU_BUDGET_S <= 8 * 60
    only = gc.build_checks(gc.parse_args(["--only", "sweep", "--out", str(tmp_path)]), True)
    assert [c.name for c in only] == ["sweep"]


def test_the_gpu_sweep_file_asks_for_one_gpu_per_worker() -> None:
    text = (ROOT / "sweeps" / "gpu_check.yaml").read_text()
    assert re.search(r"gpus_per_worker: 1\b", text) and "preset: tiny" in text


def test_every_cuda_only_test_is_marked_for_the_gpu_check() -> None:
    skip = "skipif(not torch.cuda.is_available()"
    marked = 0
    for path in (ROOT / "tests").rglob("test_*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if skip in line and line.lstrip().startswith("@"):
                assert "@pytest.mark.cuda" in lines[i - 1], f"{path.name}:{i + 1}"
                marked += 1
    files = gc.cuda_test_files()
    assert marked >= 2 and "tests/augment/test_augment_audio.py" in files
    assert "tests/test_gpu_check.py" not in files  # it names the marker but has no such test


def test_a_failing_or_hanging_check_is_failed_with_its_reason(tmp_path: Path) -> None:
    args = gc.parse_args(["--allow-cpu", "--out", str(tmp_path)])
    checks = {c.name: c for c in gc.build_checks(args, cuda=False)}
    bad, hang = checks["throughput"], checks["step_times"]
    bad.cmd = [sys.executable, "-c", "import sys; print('bad input', file=sys.stderr); sys.exit(3)"]
    row = json.dumps({"row": {"format": "audio", "bf16": False, "channels_last": False,
                              "compile": False, "error": None, "ms_per_step": 5.0}})  # fmt: skip
    hang.cmd = [sys.executable, "-c", f"import time; print({row!r}, flush=True); time.sleep(60)"]
    hang.timeout_s = 3
    sections = gc.run_checks([bad, hang], cuda=False, allow_cpu=True, budget_s=120)
    assert sections["throughput"]["status"] == "failed"
    assert "exit code 3" in sections["throughput"]["reason"]
    assert "bad input" in sections["throughput"]["tail"]
    timed_out = sections["step_times"]
    assert timed_out["status"] == "failed" and "timed out" in timed_out["reason"]
    assert timed_out["seconds"] < 30
    assert timed_out["table"]["complete"] is False and len(timed_out["table"]["rows"]) == 1
    assert gc.exit_code({"checks": sections}) == 1
    assert gc.exit_code({"checks": {"a": {"status": "ok"}, "b": {"status": "skipped"}}}) == 0


def test_a_check_is_not_started_when_the_budget_is_spent(tmp_path: Path) -> None:
    check = gc.build_checks(gc.parse_args(["--only", "sweep", "--out", str(tmp_path)]), False)
    sections = gc.run_checks(check, cuda=False, allow_cpu=True, budget_s=1)
    assert sections["sweep"]["status"] == "failed" and "budget" in sections["sweep"]["reason"]


def test_nvidia_smi_is_polled_while_a_check_runs_on_a_gpu(tmp_path: Path, monkeypatch) -> None:
    smi = tmp_path / "bin" / "nvidia-smi"  # a stand-in that answers like the real one
    smi.parent.mkdir()
    smi.write_text(
        "#!/bin/sh\ncase \"$1\" in *name*) echo 'NVIDIA H200, 570.1';; *) echo '37, 1024';; esac\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:{os.environ['PATH']}")
    proc = gc_proc
    run = proc.run_cmd([sys.executable, "-c", "import time; time.sleep(2)"], ROOT, 60, {}, True)
    assert run.rc == 0 and run.gpu["smi_gpu_util_max"] == 37.0
    assert run.gpu["smi_gpu_mem_used_max_mb"] == 1024.0
    env = gc.environment(True, gc.parse_args([]), 470)
    assert env["device_name"] == "NVIDIA H200" and env["driver"] == "570.1"
    assert proc.run_cmd(["true"], ROOT, 60, {}, False).gpu == {}  # not polled without a GPU


def test_pytest_counts_and_skips_on_a_gpu_count_as_failures() -> None:
    cpu, gpu = _check("pytest"), _check("pytest")
    gpu.ctx["cuda"] = True
    out = gc.parse_pytest(_run("ss\n2 skipped in 0.51s\n"), cpu)
    assert out["counts"]["skipped"] == 2 and "status" not in out
    assert gc.parse_pytest(_run("ss\n2 skipped in 0.51s\n"), gpu)["status"] == "failed"
    assert "status" not in gc.parse_pytest(_run("..\n2 passed in 1.0s\n"), gpu)
    failed = gc.parse_pytest(_run("F.\n1 failed, 1 passed in 1.0s\n", rc=1), gpu)
    assert failed["status"] == "failed" and failed["counts"] == {
        "passed": 1, "failed": 1, "skipped": 0, "error": 0, "deselected": 0}  # fmt: skip
    assert gc.parse_pytest(_run("no tests ran in 0.1s\n", rc=5), cpu)["status"] == "failed"


def test_throughput_figures_are_judged_against_the_targets_on_a_gpu_only() -> None:
    line = json.dumps({"augment_speedup_audio": 61.0, "pipeline_efficiency_audio": 0.95,
                       "pipeline_efficiency_spectrogram": 0.8, "peak_gpu_mem_mb": 900.0,
                       "gpu_utilization_audio": 71.0})  # fmt: skip
    gpu = _check("throughput", cuda=True)
    out = gc.parse_throughput(_run("augmentation done\n" + line), gpu)
    assert (
        out["status"] == "failed" and "pipeline_efficiency_spectrogram 0.8 < 0.9" in out["reason"]
    )
    assert out["targets"]["augment_speedup_audio"] == {"value": 61.0, "target": 50.0, "met": True}
    assert out["figures"]["peak_gpu_mem_mb"] == 900.0
    cpu = gc.parse_throughput(_run(line), _check("throughput"))
    assert "status" not in cpu and {t["met"] for t in cpu["targets"].values()} == {None}
    assert gc.parse_throughput(_run("Traceback ...", rc=1), gpu)["status"] == "failed"


def _ray_log(ray_tmp: Path, message: str) -> None:
    logs = ray_tmp / "ray" / "session_2026-01-01_00-00-00_0_1" / "logs" / "train"
    logs.mkdir(parents=True)
    line = {"levelname": "DEBUG", "message": message, "filename": "config.py"}
    (logs / "ray-train-sys-worker-1.log").write_text(json.dumps(line) + "\n")


def test_the_ray_run_records_the_backend_its_logs_show(tmp_path: Path) -> None:
    (tmp_path / "encoder.pt").write_bytes(b"x")
    ray_tmp = tmp_path / "ray_tmp"
    check = _check("ray_train", out=tmp_path, backend="nccl", ray_tmp=ray_tmp)
    _ray_log(ray_tmp, "using nccl")
    out = gc.parse_ray_train(_run(), check)
    assert out["backend_seen"] == ["nccl"] and "status" not in out and out["encoder_exported"]
    assert not ray_tmp.exists()  # the run's Ray temp dir is removed once read
    _ray_log(ray_tmp, "using gloo")
    wrong = gc.parse_ray_train(_run(), check)
    assert wrong["status"] == "failed" and "backend gloo, not nccl" in wrong["reason"]
    unknown = gc.parse_ray_train(_run(), check)
    assert unknown["status"] == "failed" and "backend none" in unknown["reason"]
    (tmp_path / "encoder.pt").unlink()
    assert "encoder.pt" in gc.parse_ray_train(_run(), check)["reason"]
    sweep = _check("sweep", folder=tmp_path / "none", backend="gloo", ray_tmp=ray_tmp)
    _ray_log(ray_tmp, "using gloo")
    assert "results.json" in gc.parse_sweep(_run(), sweep)["reason"]


def _table(*extra: str) -> dict:
    argv = ["--preset", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "1",
            "--batch-size", "2", "--threads", "1", *extra]  # fmt: skip
    return st.run(st.parse_args(argv))


def _combos(with_compile: bool) -> set[tuple]:
    compiles = (False, True) if with_compile else (False,)
    on_off = (False, True)
    audio = {("audio", b, False, c) for b in on_off for c in compiles}
    return audio | {("spectrogram", b, cl, c) for b in on_off for cl in on_off for c in compiles}


def _check_table(result: dict, with_compile: bool) -> None:
    rows = result["rows"]
    got = [(r["format"], r["bf16"], r["channels_last"], r["compile"]) for r in rows]
    assert len(got) == len(set(got)) and set(got) == _combos(with_compile)
    assert result["errors"] == 0 and result["device"] == "cpu"
    assert all(r["ms_per_step"] > 0 and r["speedup_vs_all_off"] > 0 for r in rows)
    assert all(r["speedup_vs_all_off"] == 1.0 for r in rows if not (r["bf16"] or r["compile"]
               or r["channels_last"]))  # fmt: skip
    table = gc.parse_step_times(_run(json.dumps(result)), _check("step_times"))
    assert "status" not in table and table["table"]["rows"] == rows


def test_step_time_table_has_every_bf16_and_channels_last_combination_on_cpu() -> None:
    _check_table(_table("--no-compile"), with_compile=False)
    assert len(st.combinations("spectrogram", "each")) == 5
    assert len(st.combinations("audio", "full")) == 4


@pytest.mark.slow
@pytest.mark.slow  # an end-to-end run of the instrument: `make test` only
def test_step_time_table_with_torch_compile_on_cpu() -> None:
    # Dynamo's graph capture with the `eager` backend: what compile changes, without inductor's
    # C++ build (minutes on a small CPU).
    _check_table(_table("--compile-backend", "eager"), with_compile=True)


@pytest.mark.slow
@pytest.mark.slow  # an end-to-end run of the instrument: `make test` only
def test_the_script_runs_the_cuda_tests_selection_on_cpu(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tools.gpu_check", "--allow-cpu", "--only", "cuda_tests",
            "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    section = result["checks"]["cuda_tests"]
    assert section["status"] == "ok" and section["counts"]["skipped"] >= 2
    assert (
        section["counts"]["failed"] == 0
        and "tests/augment/test_augment_audio.py" in section["files"]
    )
