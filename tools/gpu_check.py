"""The GPU checks in one run (`make gpu-check`): at most 8 minutes on one GPU, one JSON object.

Each check runs the project the way a user does, as a subprocess with its own timeout (the whole
run shares one budget, `--budget-s`); a failing check does not stop the others:

- `cuda_tests`: the tests marked `cuda` (skipped without a device), `pytest -m cuda`;
- `ray_train`: `mfclr pretrain --workers 1 --use-gpu` (Ray Train, one worker, nccl), tiny preset;
- `sweep`: `mfclr sweep sweeps/gpu_check.yaml` (2 one-worker trials, each training in its own
  process on one GPU, `gpus_per_worker: 1`; no process group), tiny preset;
- `throughput`: `benchmarks/throughput.py` on the GPU: augmentation speed-up over one CPU core
  of audiomentations (target >= 50), pipeline efficiency (>= 0.9), GPU utilisation, peak memory;
- `step_times`: `benchmarks/step_times.py`, ms per step with bf16, channels_last and
  torch.compile on and off.

While a check runs on a GPU, `nvidia-smi` is polled: its mean/max utilisation and the most memory
in use on the device go into the check's section. The last stdout line is the JSON object (also
written to OUT/gpu_check.json); the exit code is 1 when a check that ran failed. Without CUDA
every check is skipped (exit 0) unless `--allow-cpu`, which runs them all on the CPU with tiny
settings so the plumbing is exercised (the GPU targets are then not judged).

    python -m tools.gpu_check [--out runs/gpu_check] [--only sweep ...] [--allow-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.gpu_check_proc import Run, last_json, run_cmd, smi_query

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("cuda_tests", "ray_train", "sweep", "throughput", "step_times")
RAY_CHECKS = ("ray_train", "sweep")  # each starts a local Ray of its own
# Seconds per check on a GPU; together more than the budget, which caps each at what is left.
TIMEOUTS = {"cuda_tests": 90, "ray_train": 120, "sweep": 150, "throughput": 180, "step_times": 240}
GPU_BUDGET_S, CPU_BUDGET_S, CPU_TIMEOUT_SCALE = 470, 1500, 3
MIN_SLOT_S = 20  # a check given less than this is reported failed, not started
THROUGHPUT_TARGETS = {
    "augment_speedup_audio": 50.0,
    "pipeline_efficiency_audio": 0.9,
    "pipeline_efficiency_spectrogram": 0.9,
}
THROUGHPUT_FIGURES = (
    *THROUGHPUT_TARGETS,
    "augment_torch_clips_per_s_audio",
    "augment_reference_clips_per_s_audio",
    "gpu_utilization_audio",
    "gpu_utilization_spectrogram",
    "gpu_utilization_bare_audio",
    "gpu_utilization_bare_spectrogram",
    "peak_gpu_mem_mb",
    "e2e_samples_per_s_audio",
    "e2e_samples_per_s_spectrogram",
    "bare_samples_per_s_audio",
    "bare_samples_per_s_spectrogram",
    "device_name",
    "preset",
    "batch_size",
    "seconds",
)
SWITCHES = ("bf16", "channels_last", "compile")
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False); --allow-cpu runs them on CPU"


@dataclass
class Check:
    name: str
    cmd: list[str]
    parse: Callable[[Run, Check], dict[str, Any]]
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None
    ctx: dict[str, Any] = field(default_factory=dict)


def execute(check: Check, deadline: float, gpu: bool) -> dict[str, Any]:
    """One check's section: status ok / failed / skipped, a reason, its figures."""
    left = deadline - time.monotonic()
    if left < MIN_SLOT_S:
        return {
            "status": "failed",
            "reason": f"not started: {max(left, 0):.0f} s left in the budget",
        }
    slot = min(check.timeout_s, left)
    try:
        if check.prepare:
            check.prepare()
        run = run_cmd(check.cmd, ROOT, slot, check.env, gpu)
    except OSError as err:
        return {"status": "failed", "reason": f"could not start {check.cmd[0]}: {err}"}
    section: dict[str, Any] = {"status": "ok", "reason": None, "seconds": run.seconds, **run.gpu}
    try:
        section.update(check.parse(run, check))
    except Exception as err:  # noqa: BLE001 - a parser bug is this check's failure only
        section.update(status="failed", reason=f"could not read the output: {err!r}")
    if run.rc != 0:  # None: killed at the timeout
        why = f"timed out after {slot:.0f} s" if run.rc is None else f"exit code {run.rc}"
        parsed = section["reason"] if section["status"] == "failed" else None
        section.update(status="failed", reason="; ".join(filter(None, [why, parsed])))
    if section["status"] == "failed":
        section["tail"] = run.tail()
    section["command"] = " ".join(check.cmd)
    return section


# ----------------------------------------------------------------------------- parsers


def parse_pytest(run: Run, check: Check) -> dict[str, Any]:
    """Counts from pytest's summary line; on a GPU a skipped CUDA test is a failure."""
    summary = [ln for ln in run.stdout.splitlines() if re.search(r" in [\d.]+s\b", ln)]
    found = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", "".join(summary[-1:]))
    counts = dict.fromkeys(("passed", "failed", "skipped", "error", "deselected"), 0)
    for n, what in found:
        counts[what.rstrip("s") if what.startswith("error") else what] += int(n)
    out: dict[str, Any] = {"counts": counts, "files": check.ctx.get("files")}
    if counts["failed"] or counts["error"]:
        out.update(status="failed", reason=f"{counts['failed']} failed, {counts['error']} errors")
    elif check.ctx["cuda"] and (counts["skipped"] or not counts["passed"]):
        out.update(status="failed", reason="CUDA tests were skipped on a machine with CUDA")
    elif not any(counts[k] for k in ("passed", "skipped")):
        out.update(status="failed", reason="no test marked `cuda` was collected")
    return out


def backends_in_logs(run: Run, ray_tmp: Path) -> list[str]:
    """The process-group backends Ray Train's worker logs name (`using nccl`: a DEBUG line of its
    structured logs, under the run's own RAY_TMPDIR)."""
    texts = [run.stdout, run.stderr]
    texts += [p.read_text(errors="replace") for p in ray_tmp.glob("ray/session_*/logs/train/*.log")]
    hits = [m for t in texts for m in re.findall(r"using (nccl|gloo)\b|ProcessGroup(NCCL|Gloo)", t)]
    names = sorted({(a or b).lower() for a, b in hits})
    shutil.rmtree(ray_tmp, ignore_errors=True)  # only this run's Ray session lived there
    return names


def _judge_backend(run: Run, check: Check, out: dict[str, Any]) -> None:
    names = backends_in_logs(run, Path(check.ctx["ray_tmp"]))
    expected = check.ctx["backend"]
    out.update(backend_expected=expected, backend_seen=names or None)
    if expected is None:  # no Ray Train run: nothing to judge
        return
    if run.rc == 0 and out.get("status") != "failed" and names != [expected]:
        seen = ", ".join(names) or "none"
        out.update(status="failed", reason=f"Ray Train's logs name backend {seen}, not {expected}")


def parse_ray_train(run: Run, check: Check) -> dict[str, Any]:
    """Did the run finish and export its encoder, with the expected process-group backend
    (`mfclr.train.ray` picks nccl with --use-gpu, gloo without)."""
    out: dict[str, Any] = {"encoder_exported": (Path(check.ctx["out"]) / "encoder.pt").is_file()}
    if run.rc == 0 and not out["encoder_exported"]:
        out.update(status="failed", reason="the run exited 0 but wrote no encoder.pt")
    _judge_backend(run, check, out)
    return out


def parse_sweep(run: Run, check: Check) -> dict[str, Any]:
    folder = Path(check.ctx["folder"])
    trials = sorted(p.name for p in (folder / "train").glob("*_*") if p.is_dir())
    out: dict[str, Any] = {"trials": trials, "results": (folder / "results.json").is_file()}
    if run.rc == 0 and not out["results"]:
        out.update(status="failed", reason="the sweep exited 0 but wrote no results.json")
    _judge_backend(run, check, out)
    return out


def parse_throughput(run: Run, check: Check) -> dict[str, Any]:
    result = last_json(run.stdout)
    if result is None:
        return {"status": "failed", "reason": "no JSON line from throughput.py"}
    figures = {k: result.get(k) for k in THROUGHPUT_FIGURES}
    out: dict[str, Any] = {"figures": figures, "targets": judge(result, check.ctx["cuda"])}
    missed = [
        f"{k} {t['value']} < {t['target']}" for k, t in out["targets"].items() if t["met"] is False
    ]
    if missed:
        out.update(status="failed", reason="below target: " + "; ".join(missed))
    return out


def judge(result: dict[str, Any], cuda: bool) -> dict[str, dict[str, Any]]:
    """Each target figure with its value and whether it is met (None: not judged, on CPU)."""
    targets = {}
    for key, target in THROUGHPUT_TARGETS.items():
        value = result.get(key)
        met = None if not cuda else value is not None and value >= target
        targets[key] = {"value": value, "target": target, "met": met}
    return targets


def parse_step_times(run: Run, check: Check) -> dict[str, Any]:
    """The table; on a timeout the rows finished so far (streamed as `{"row": ...}` lines)."""
    result = last_json(run.stdout)
    if result is None or "rows" not in result:
        rows = [r["row"] for r in map(_json_or_none, run.stdout.splitlines()) if r and "row" in r]
        result = {"rows": rows, "complete": False}
    out: dict[str, Any] = {"table": result}
    bad = [r for r in result["rows"] if r.get("error")]
    if bad:
        first = bad[0]
        where = ", ".join(f"{k}={first.get(k)}" for k in ("format", *SWITCHES))
        reason = f"{len(bad)} combination(s) failed, first {where}: {first['error']}"
        out.update(status="failed", reason=reason)
    return out


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


# ----------------------------------------------------------------------------- the checks


def _commands(args: argparse.Namespace, cuda: bool, out: Path) -> dict[str, list[str]]:
    """Each check's command line: GPU-sized when `cuda`, tiny on CPU."""
    py, device = sys.executable, "cuda" if cuda else "cpu"
    cache = f"data.cache_dir={out}/data_cache"  # one decoded cache for every check
    if cuda:
        tput = ["--preset", "defaults", "--steps", "10", "--workers", "4"]
        steps = ["--preset", "defaults", "--steps", "10", "--warmup", "3"]
    else:
        tput = ["--preset", "tiny", "--steps", "2", "--augment-repeats", "1", "--threads", "1"]
        steps = ["--preset", "tiny", "--steps", "1", "--warmup", "1", "--batch-size", "2"]
        steps += ["--threads", "1"]
    backend = args.compile_backend or ("inductor" if cuda else "eager")
    # On a GPU each switch on alone, all off and all on (4 inductor builds, not 6); on CPU all.
    steps += ["--grid", args.step_grid or ("each" if cuda else "full")]
    return {
        "cuda_tests": [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                       *cuda_test_files()],
        "ray_train": [py, "-m", "mfclr", "pretrain", "--preset", "tiny", "--format", "spectrogram",
                      "--out", str(out / "ray_train"), "--workers", "1",
                      *(["--use-gpu"] if cuda else []), "--quiet",
                      "--set", "train.epochs=1", "--set", cache],
        "sweep": [py, "-m", "mfclr", "sweep", "sweeps/gpu_check.yaml", "--out", str(out / "sweeps"),
                  "--quiet", "--set", cache,
                  *([] if cuda else ["--set", "resources.gpus_per_worker=0"])],
        "throughput": [py, "benchmarks/throughput.py", "--device", device, *tput, "--set", cache],
        "step_times": [py, "benchmarks/step_times.py", "--device", device, *steps,
                       "--compile-backend", backend],
    }  # fmt: skip


def cuda_test_files() -> list[str]:
    """The test files with a test marked `cuda` (collecting only them keeps pytest quick)."""
    tests = sorted((ROOT / "tests").rglob("test_*.py"))
    marked = re.compile(r"^\s*@pytest\.mark\.cuda\b", re.M)
    return [str(p.relative_to(ROOT)) for p in tests if marked.search(p.read_text())]


def _fresh(*folders: Path) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    folders[-1].mkdir(parents=True)


def build_checks(args: argparse.Namespace, cuda: bool) -> list[Check]:
    """The checks to run, in order (`--only` selects some)."""
    out = Path(args.out).resolve()
    cmds = _commands(args, cuda, out)
    run_dir, sweep_dir = out / "ray_train", out / "sweeps" / "gpu_check"
    parse = {"cuda_tests": parse_pytest, "ray_train": parse_ray_train, "sweep": parse_sweep,
             "throughput": parse_throughput, "step_times": parse_step_times}  # fmt: skip
    ctx: dict[str, dict[str, Any]] = {
        "cuda_tests": {"files": cuda_test_files()},
        "ray_train": {"out": run_dir},
        "sweep": {"folder": sweep_dir},
    }
    # Each Ray run gets its own short temp dir (Unix socket paths are limited to ~107 bytes),
    # so its logs can be read afterwards.
    ray_tmp = {n: Path(tempfile.gettempdir()) / f"gcr-{os.getpid()}-{n[0]}" for n in RAY_CHECKS}
    for name in ray_tmp:
        ctx[name].update(ray_tmp=ray_tmp[name], backend="nccl" if cuda else "gloo")
    # One-worker trials train in the trial's own process (mfclr.tune.trial): no process group.
    ctx["sweep"]["backend"] = None
    prepare = {  # start from scratch: an old sweep's state would be refused without --resume
        "ray_train": lambda: _fresh(run_dir, ray_tmp["ray_train"]),
        "sweep": lambda: _fresh(sweep_dir, ray_tmp["sweep"]),
    }
    env = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
    env["WANDB_MODE"] = "disabled"
    scale = 1 if cuda else CPU_TIMEOUT_SCALE
    return [
        Check(
            name,
            cmds[name],
            parse[name],
            TIMEOUTS[name] * scale,
            {**env, **({"RAY_TMPDIR": str(ray_tmp[name])} if name in ray_tmp else {})},
            prepare.get(name),
            {**ctx.get(name, {}), "cuda": cuda},
        )
        for name in CHECKS
        if not args.only or name in args.only
    ]


def run_checks(checks: list[Check], cuda: bool, allow_cpu: bool, budget_s: float) -> dict[str, Any]:
    """Every section, in order; skipped ones when there is no CUDA and CPU runs are not allowed."""
    deadline = time.monotonic() + budget_s
    sections: dict[str, Any] = {}
    for check in checks:
        if not cuda and not allow_cpu:
            sections[check.name] = {"status": "skipped", "reason": NO_CUDA}
            continue
        print(f"gpu_check: {check.name} ...", file=sys.stderr, flush=True)
        sections[check.name] = execute(check, deadline, cuda)
        s = sections[check.name]
        print(f"gpu_check: {check.name} {s['status']} {s.get('reason') or ''}", file=sys.stderr)
    return sections


def exit_code(result: dict[str, Any]) -> int:
    """1 when any check that ran failed (skipped ones do not count)."""
    return int(any(s["status"] == "failed" for s in result["checks"].values()))


def environment(cuda: bool, args: argparse.Namespace, budget_s: float) -> dict[str, Any]:
    import torch

    # The GPU's name from nvidia-smi: a CUDA context here would hold device memory all along.
    gpu = smi_query("name,driver_version") if cuda else None
    return {
        "cuda": cuda,
        "device_name": gpu[0] if gpu else None,
        "driver": gpu[1] if gpu and len(gpu) > 1 else None,
        "allow_cpu": args.allow_cpu,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "budget_s": budget_s,
        "ran_on_gpu": cuda,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gpu_check", help="run folders and gpu_check.json")
    p.add_argument("--only", action="append", choices=CHECKS, help="run only these (repeatable)")
    p.add_argument("--allow-cpu", action="store_true", help="without CUDA, run on CPU (tiny)")
    budget = f"time limit of the whole run, s ({GPU_BUDGET_S} on a GPU, {CPU_BUDGET_S} on CPU)"
    p.add_argument("--budget-s", type=float, default=None, help=budget)
    compile_help = "torch.compile backend for step_times (inductor on a GPU, eager on CPU)"
    p.add_argument("--compile-backend", default=None, help=compile_help)
    grid_help = "step_times grid: full (every combination) or each (default on a GPU)"
    p.add_argument("--step-grid", choices=["full", "each"], default=None, help=grid_help)
    return p.parse_args(argv)


def main(argv: list[str] | None = None, cuda: bool | None = None) -> int:
    args = parse_args(argv)
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    budget_s = args.budget_s or (GPU_BUDGET_S if cuda else CPU_BUDGET_S)
    t0 = time.perf_counter()
    checks = build_checks(args, cuda)
    result: dict[str, Any] = {"environment": environment(cuda, args, budget_s)}
    result["checks"] = run_checks(checks, cuda, args.allow_cpu, budget_s)
    result["failed"] = [n for n, s in result["checks"].items() if s["status"] == "failed"]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(result, default=str))
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
