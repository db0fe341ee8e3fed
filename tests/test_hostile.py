"""Hostile and careless input, one table: each case is a command line, what it must end with (one
error line holding the needles, or a success), and the files that must not change. A case that
would wait for a missing Ray cluster runs in a subprocess with a deadline, so a hang fails it
instead of hanging the suite."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mfclr.config import load_config
from mfclr.train.local import pretrain_local
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hostilekey-0123456789abcdef0123456789abcdef"
SMOKE = ROOT / "sweeps" / "smoke.yaml"


@dataclass
class Case:
    """`argv` may hold `{tmp}`, `{cache}`, `{run}` (a finished tiny run folder) and `{sweep}`
    (a sweep file); `needles` must all be in the one error line (none: the command succeeds);
    `keep` are globs under `{tmp}` whose files must be unchanged afterwards; `subprocess`: run
    it as `python -m mfclr` with a deadline."""

    id: str
    argv: list[str]
    needles: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)
    subprocess: bool = False
    absent: list[str] = field(default_factory=list)  # paths under {tmp} that must not exist


TINY = ["--preset", "tiny", "--set", "data.cache_dir={cache}", "--quiet"]
CASES = [
    Case("secret-in-config-tracking-off",
         ["pretrain", "--format", "audio", "--out", "{tmp}/secret", *TINY,
          "--set", "tracking.wandb=disabled", "--set", f"tracking.entity={SECRET}"],
         ["config key 'tracking.entity'", "$WANDB_API_KEY"], env={"WANDB_API_KEY": SECRET},
         absent=["secret"]),
    Case("secret-in-config-offline",
         ["run", "--out", "{tmp}/secret2", *TINY, "--set", f"data.cache_dir=/tmp/{SECRET}"],
         ["holds the value of $WANDB_API_KEY"], env={"WANDB_API_KEY": SECRET},
         absent=["secret2"]),
    Case("empty-out", ["pretrain", "--format", "audio", "--out", "", *TINY], ["an empty path"]),
    Case("unlabelled-probe-data",
         ["run", "--out", "{tmp}/u", *TINY, "--set", "data.probe.kind=unlabelled",
          "--set", "data.probe.root={tmp}"], ["has no labels to probe"], absent=["u"]),
    Case("steps-and-epochs-in-one-layer",
         ["run", "--out", "{tmp}/b", *TINY, "--set", "train.steps=10", "--set", "train.epochs=3"],
         ["both train.steps and train.epochs"], absent=["b"]),
    Case("ray-address-nobody-answers",
         ["pretrain", "--format", "audio", "--workers", "1", "--out", "{tmp}/r", *TINY],
         ["no Ray cluster answers at RAY_ADDRESS='127.0.0.1:1'", "unset RAY_ADDRESS"],
         env={"RAY_ADDRESS": "127.0.0.1:1"}, subprocess=True),
    Case("ray-address-is-the-jobs-api",
         ["sweep", "{sweep}", "--out", "{tmp}/sw"],
         ["is a jobs API address", "ray job submit"],
         env={"RAY_ADDRESS": "http://127.0.0.1:8265"}, subprocess=True),
    Case("bad-storage-uri",
         ["pretrain", "--format", "audio", "--workers", "2", "--storage", "nosuch://x/y",
          "--out", "{tmp}/st", *TINY], ["'nosuch://x/y' is not a storage URI"]),
    Case("search-key-moves-the-split",
         ["sweep", "{sweep}", "--check", "--set",
          "search.space.split={{key: data.probe.split_seed, type: int, low: 0, high: 9}}"],
         ["'data.probe.split_seed' decides which tracks", "cannot be searched"]),
    Case("resume-under-other-settings",
         ["sweep", "{sweep}", "--resume", "--out", "{tmp}/sweeps", "--set", "train.lr=0.01"],
         ["started with other settings", "config.train.lr 0.001 -> 0.01", "--override-resume"],
         keep=["sweeps/smoke/*.yaml"]),
    Case("a-second-process-on-a-locked-folder",
         ["pretrain", "--format", "audio", "--out", "{run}", *TINY],
         ["is in use by another mfclr process (pid"], keep=["run/**/*"]),
    Case("probe-encoders-of-two-label-sets",
         ["probe", "--encoder", "audio={run}/encoder.pt", "--encoder",
          "spectrogram={tmp}/other/encoder.pt", "--out", "{tmp}/p", *TINY],
         ["trained beside different label sets"], keep=["run/**/*"]),
]  # fmt: skip


def _digest(root: Path, globs: list[str]) -> dict[str, str]:
    # The lock file holds its holder's pid: it changes by design.
    files = sorted({p for g in globs for p in root.glob(g) if p.is_file() and p.name != ".lock"})
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished tiny run, an encoder trained beside another label set, a sweep file, and the
    recorded settings of a sweep to resume."""
    tmp = tmp_path_factory.mktemp("hostile")
    cache = tmp / "cache"
    cfg = load_config(preset="tiny", overrides=[f"data.cache_dir={cache}", "train.epochs=1"])
    pretrain_local(cfg, "audio", tmp / "run", progress=False)
    other = cfg.with_overrides({"data.probe.embedded.n_classes": 4})
    pretrain_local(other, "spectrogram", tmp / "other", progress=False)
    from mfclr.tune.spec import load_sweep

    spec, base = load_sweep(SMOKE, [f"data.cache_dir={cache}"])
    folder = tmp / "sweeps" / "smoke"
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    (folder / "config.yaml").write_text(yaml.safe_dump(base.to_dict()))
    return {"tmp": tmp, "cache": cache, "run": tmp / "run", "sweep": SMOKE}


def _holding_the_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from mfclr.locks import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _run(case: Case, argv: list[str]) -> tuple[int, str]:
    if case.subprocess:
        env = {**os.environ, **case.env, "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "mfclr", *argv], capture_output=True,
                             text=True, env=env, timeout=120, cwd=ROOT)  # fmt: skip
        assert time.monotonic() - start < 60, "took as long as a hang"
        return out.returncode, out.stderr
    with pytest.MonkeyPatch.context() as mp:
        for key, value in case.env.items():
            mp.setenv(key, value)
        code, _, err = run_cli(*argv)
    return code, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case: Case, world: dict[str, Path]) -> None:
    names = {k: str(v) for k, v in world.items()}
    argv = [a.format(**names) for a in case.argv]
    before = _digest(world["tmp"], case.keep)
    lock = _holding_the_lock(world["run"]) if case.id == "a-second-process-on-a-locked-folder" \
        else None  # fmt: skip
    try:
        code, err = _run(case, argv)
    finally:
        if lock is not None:
            lock.kill()
            lock.wait()
    if case.needles:
        lines = [line for line in err.splitlines() if "error" in line]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
        for needle in case.needles:
            assert needle in lines[0], lines[0]
        assert SECRET not in err
    else:
        assert code == 0, err[-3000:]
    assert _digest(world["tmp"], case.keep) == before
    for path in case.absent:
        assert not (world["tmp"] / path).exists(), path


def test_a_killed_holder_does_not_block_the_next_run(world: dict[str, Path]) -> None:
    lock = _holding_the_lock(world["tmp"] / "killed")
    lock.kill()
    lock.wait()
    code, _, err = run_cli("pretrain", "--format", "audio", "--out", str(world["tmp"] / "killed"),
                           "--preset", "tiny", "--set", f"data.cache_dir={world['cache']}",
                           "--set", "train.epochs=1", "--quiet")  # fmt: skip
    assert code == 0, err


def test_override_resume_records_what_changed(world: dict[str, Path]) -> None:
    from mfclr.config import build_config
    from mfclr.tune.resume import OVERRIDES_FILE, check_resume, record_overrides

    folder = world["tmp"] / "sweeps" / "smoke"
    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    base = build_config(yaml.safe_load((folder / "config.yaml").read_text()))
    changed = check_resume(folder, spec, base.with_overrides({"train.lr": 0.01}), override=True)
    assert changed["config.train.lr"][1] == 0.01
    record_overrides(folder, changed)
    entries = json.loads((folder / OVERRIDES_FILE).read_text())
    assert entries[-1]["changed"]["config.train.lr"][1] == 0.01


def test_a_truncated_cache_is_rebuilt_not_read(world: dict[str, Path], caplog) -> None:
    from mfclr.data import load_dataset

    cfg = load_config(preset="tiny", overrides=[f"data.cache_dir={world['cache']}"])
    ds = load_dataset(cfg.data, "probe", progress=False)
    path = ds.splits["train"].path
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        again = load_dataset(cfg.data, "probe", progress=False)
    assert "rebuilding" in caplog.text and again.splits["train"].path.stat().st_size == 2 * (
        again.splits["train"].n_samples
    )
    assert len(again.splits["train"].track(0)) > 0


def test_run_json_says_failed_with_the_reason(world: dict[str, Path]) -> None:
    out = world["tmp"] / "nan"
    code, _, err = run_cli("pretrain", "--format", "audio", "--out", str(out), "--preset", "tiny",
                           "--set", f"data.cache_dir={world['cache']}", "--set", "train.lr=1e12",
                           "--quiet")  # fmt: skip
    assert code == 2 and "loss became" in err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "loss became" in record["reason"]
