"""Ray Tune + Optuna: the define-by-run space (conditional mask size, seeded TPE), a real sweep
that is interrupted with SIGINT after its first trial and finished by `--resume` without running
that trial again, and a one-worker trial (trained in the trial's own process) killed mid-run and
retried from its checkpoint. One local Ray runtime for the module; the sweep subprocesses join it
through RAY_ADDRESS. Two-worker trials (a Ray Train run each) are covered by test_ray_jobs.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from wandb_files import settled_steps

ray = pytest.importorskip("ray")

import faults  # noqa: E402
from ray import tune  # noqa: E402
from wandb_files import inspect_run, offline_runs  # noqa: E402

from mfclr.errors import ConfigError  # noqa: E402
from mfclr.report.document import write_report  # noqa: E402
from mfclr.train.keys import VAL_METRIC  # noqa: E402
from mfclr.train.ray import load_checkpoint  # noqa: E402
from mfclr.tune.halving import planned_epochs  # noqa: E402
from mfclr.tune.search import best_trial, tune_format  # noqa: E402
from mfclr.tune.spec import final_stage_config, load_sweep  # noqa: E402
from mfclr.tune.sweep import run_sweep  # noqa: E402
from mfclr.tune.trial import TuneSink  # noqa: E402
from tests.helpers import check_classifier_reproduces_its_row  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "sweeps" / "smoke.yaml"


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray.cloudpickle.register_pickle_by_value(faults)  # trials do not have tests/ on their path
    with pytest.MonkeyPatch.context() as mp:
        # A W&B service an earlier test started in this process would be inherited by every
        # trial process, and a killed trial's run id stays registered there: a retry would
        # find it "in use". Trials start their own, as under `mfclr sweep`.
        mp.delenv("WANDB_SERVICE", raising=False)
        ctx = ray.init(
            num_cpus=2, include_dashboard=True, log_to_driver=False, configure_logging=False
        )
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


OVERRIDES = [
    "formats=[spectrogram]",
    "budget.trials=2",
    "budget.epochs=2",
    "budget.grace_period=2",
    "train.max_steps_per_epoch=2",
    "train.batch_size=8",
    "probe.heads=[linear]",
    "probe.random_init_control=false",
    "probe.mfcc_baseline=false",
    "tracking.wandb=offline",
]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"sweep exited early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < end, f"timed out waiting for {path}"
        time.sleep(0.5)


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(
    ray_address: str, tmp_path: Path, tiny_cache: Path
) -> None:
    out = tmp_path / "sweeps"
    overrides = [*OVERRIDES, f"data.cache_dir={tiny_cache}"]
    cmd = [sys.executable, "-m", "mfclr", "sweep", str(SMOKE), "--out", str(out), "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    sweep = out / "smoke"
    # The CLI, joined to this module's Ray runtime, gets a real SIGTERM (`kill`, a scheduler)
    # mid-trial 2: it stops as Ctrl-C does, Tune saving its state, with one line and no core dump.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": ray_address},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(sweep / "train" / "spectrogram_001" / "encoder.pt", proc, 150)
        _wait_for(sweep / "train" / "spectrogram_002", proc, 60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "1 of 2 trials finished" in stderr and "--resume" in stderr
    # One mfclr line, no core dump (a trial's own log, which Ray forwards, may show its teardown).
    mfclr_lines = [ln for ln in stderr.splitlines() if ln.startswith("mfclr:")]
    assert len(mfclr_lines) == 1 and "core dumped" not in stderr and "Aborted" not in stderr
    assert not (sweep / "results.json").exists()
    # The study file says where the sweep stopped: trial 1 done, trial 2 waiting for --resume.
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep / "study-spectrogram.log"))
    )
    stopped = optuna.load_study(study_name="smoke-spectrogram", storage=storage).trials
    assert {t.user_attrs["trial"]: t.state.name for t in stopped} == {
        "spectrogram_001": "COMPLETE", "spectrogram_002": "WAITING"}  # fmt: skip
    first = _snapshot(sweep / "train" / "spectrogram_001")
    tune_results = sweep / "tune" / "spectrogram" / "spectrogram_001" / "result.json"
    first_results = tune_results.read_text()

    # Without --resume the saved state is refused in one line; with it the sweep finishes.
    spec, base = load_sweep(SMOKE, overrides)
    with pytest.raises(ConfigError, match="pass --resume"):
        run_sweep(spec, base, out, resume=False, verbose=0)
    results = run_sweep(spec, base, out, resume=True, verbose=0)

    # The finished trial was not run again: its Train run and its Tune results are untouched.
    assert _snapshot(sweep / "train" / "spectrogram_001") == first
    assert tune_results.read_text() == first_results
    assert json.loads((sweep / "results.json").read_text())["best"] == results["best"]
    best = results["best"]["spectrogram"]
    trials = {t["trial"]: t for t in best["trials"]}
    assert set(trials) == {"spectrogram_001", "spectrogram_002"}  # stable names
    assert all(t["epochs_done"] == 2 and t["error"] is None for t in trials.values())
    assert best["trial"] in trials and {"temperature", "mask_size"} <= set(best["hyperparameters"])
    assert best[VAL_METRIC] == max(t[VAL_METRIC] for t in trials.values())
    assert Path(best["encoders"]["spectrogram"]).is_file()
    # The fused-probe table is on the test split; the selection used validation only.
    rows = results["rows"]
    # probe.heads is [linear]; the search tried mlp too (probe_head): both heads are compared.
    assert {r["head"] for r in rows} == {"linear", "mlp"}
    assert results["validation_metric"] == VAL_METRIC
    for row in rows:  # test accuracy as the confusion matrix and the per-track record say
        cm = np.array(row["confusion_matrix"])
        assert row["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        assert row["accuracy"] == pytest.approx(np.mean(row["test_correct"]))
    # The best trial's metric is the last one Tune recorded for that trial.
    logged = (sweep / "tune" / "spectrogram" / best["trial"] / "result.json").read_text()
    last = json.loads(logged.strip().splitlines()[-1])
    assert best[VAL_METRIC] == pytest.approx(last[VAL_METRIC])
    assert "Best trial per format" in (sweep / "results.md").read_text()
    # The final stage saved the row chosen on valid; `mfclr predict` reproduces it track by track.
    assert results["classifier"] == str(sweep / "classifier.pt")
    check_classifier_reproduces_its_row(sweep, final_stage_config(spec, base), tmp_path)
    _check_study_file(sweep, best, 2)
    # Each trial's W&B run kept one id over the interruption and logged each epoch at most once,
    # in order, up to the last. (The interrupted trial's process is killed: a row that its W&B
    # service had not yet written to disk is lost, as with any killed W&B process.)
    for name in trials:
        steps = settled_steps(sweep, f"smoke-{name}", [1, 2])
        assert steps[-1:] == [2] and set(steps) <= {1, 2} and steps == sorted(set(steps)), name


def _check_study_file(sweep: Path, best: dict, n: int) -> None:
    """The on-disk Optuna study says what Tune's results say: one trial per Tune trial, the
    same final values, the validation metric per epoch; `mfclr report` reads it."""
    study = optuna.load_study(
        study_name="smoke-spectrogram",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(best["study"])
        ),
    )
    assert Path(best["study"]) == sweep / "study-spectrogram.log"
    by_name = {t.user_attrs["trial"]: t for t in study.trials}
    tune_rows = {t["trial"]: t for t in best["trials"]}
    assert len(study.trials) == n and set(by_name) == set(tune_rows)
    for name, t in by_name.items():
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.value == pytest.approx(tune_rows[name][VAL_METRIC])
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.params["mask_size"] == tune_rows[name]["config"]["mask_size"]
    assert study.best_trial.user_attrs["trial"] == best["trial"]
    report = write_report(sweep)
    assert "optuna_history_spectrogram.png" in report.read_text()


def test_a_sweep_compares_cross_format_with_separate_training(
    ray_address: str, tmp_path: Path, tiny_cache: Path
) -> None:
    overrides = ["formats=[spectrogram,cross]", "budget.trials=1", "budget.epochs=1",
                 "budget.grace_period=1", "train.max_steps_per_epoch=2", "train.batch_size=8",
                 "probe.heads=[linear]", f"data.cache_dir={tiny_cache}"]  # fmt: skip
    spec, base = load_sweep(SMOKE, overrides)
    results = run_sweep(spec, base, tmp_path / "sweeps", verbose=0)
    assert set(results["best"]) == {"spectrogram", "cross"}
    cross = results["best"]["cross"]["encoders"]
    assert set(cross) == {"audio", "spectrogram"}
    assert all(Path(p).is_file() for p in cross.values())
    names = {r["name"] for r in results["rows"]}
    # Separate training (spectrogram alone), cross-format (both encoders), and the control.
    expected = {"spectrogram", "cross-audio", "cross-spectrogram", "cross-fused", "random-init"}
    assert expected <= names
    # The same table as `mfclr run`: intervals, and each trained row paired with its control.
    rows = results["rows"]
    assert all(len(r["accuracy_ci95"]) == 2 for r in rows)
    trained = [r for r in rows if r["encoders"] not in ("random-init", "mfcc")]
    assert trained and all(r["control"].startswith("random-init") for r in trained)
    assert all(len(r["delta_ci95"]) == 2 and "delta_vs_control" in r for r in trained)
    md = (tmp_path / "sweeps" / "smoke" / "results.md").read_text()
    assert "random-init" in md and "Best trial per format" in md


def test_a_killed_one_worker_trial_is_retried_from_its_checkpoint(
    ray_address: str, tmp_path: Path, tiny_cache: Path
) -> None:
    overrides = ["formats=[audio]", "budget.trials=1", "budget.epochs=3", "budget.grace_period=3",
                 "train.max_steps_per_epoch=2", "train.batch_size=8", "tracking.wandb=offline",
                 f"data.cache_dir={tiny_cache}"]  # fmt: skip
    spec, base = load_sweep(SMOKE, overrides)
    assert base.ray.workers == 1 and base.ray.max_failures == 1
    marker, out, storage = tmp_path / "fault-fired", tmp_path / "out", tmp_path / "storage"
    kill = faults.KillAfterEpoch(TuneSink(), epoch=2, marker=str(marker))
    grid = tune_format(spec, base, "audio", str(storage), resume=False, verbose=0,
                       tracking_dir=str(out), sink=kill)  # fmt: skip
    assert marker.exists(), "the fault hook never fired"
    (result,) = list(grid)
    assert result.error is None
    m = result.metrics
    # Trained in the trial's process, killed after epoch 2, retried by Tune from that checkpoint.
    assert m["workers"] == 1 and m["epochs_done"] == 3 and m["resumed_from_epoch"] == 2
    assert "checkpoint_path" not in m  # no Ray Train run: the trial's own Tune checkpoint
    state = load_checkpoint(result.checkpoint, "audio")
    assert state["epoch"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert Path(result.checkpoint.path).parent == storage / "smoke" / "tune" / "audio" / "audio_001"
    assert (storage / "smoke" / "train" / "audio_001" / "encoder.pt").is_file()
    best = best_trial(spec, "audio", grid, out)
    assert best["checkpoint"] == result.checkpoint.path and best["epochs_done"] == 3
    assert Path(best["encoders"]["audio"]).is_file()
    # One W&B run id for the trial, continued by the retry. (The killed process's last row may
    # be lost: W&B holds a row until the next step or finish.)
    runs = [inspect_run(r) for r in offline_runs(out)]
    assert runs and {(r["run_id"], r["group"], r["job_type"]) for r in runs} == {
        ("smoke-audio_001", "smoke", "pretrain")
    }
    logged = {h["epoch"] for r in runs for h in r["history"] if "epoch" in h}
    assert {1, 3} <= logged <= {1, 2, 3}


def test_synchronous_halving_pauses_each_rung_and_spends_the_planned_epochs(
    ray_address: str, tmp_path: Path, tiny_cache: Path
) -> None:
    overrides = ["formats=[audio]", "budget.trials=16", "budget.epochs=6", "budget.grace_period=1",
                 "budget.reduction_factor=4", "budget.scheduler=halving",
                 "budget.max_concurrent_trials=null", "train.max_steps_per_epoch=2",
                 "train.batch_size=8", "tracking.wandb=disabled",
                 f"data.cache_dir={tiny_cache}"]  # fmt: skip
    spec, base = load_sweep(SMOKE, overrides)
    storage = tmp_path / "storage"
    # Two trials train at once (2 CPUs): rungs complete while another trial is still pausing.
    grid = tune_format(spec, base, "audio", str(storage), resume=False, verbose=0)
    results = list(grid)
    assert len(results) == 16 and all(r.error is None for r in results)
    # Rungs 1, 4, 6: all 16 train 1 epoch, the best four go on to 4, the best one to 6
    # (16 + 4 * 3 + 2 = planned_epochs(16, 6, 1, 4)); paused trials resume from their checkpoint.
    done = sorted(r.metrics["epochs_done"] for r in results)
    assert done == [1] * 12 + [4, 4, 4, 6] and sum(done) == planned_epochs(16, 6, 1, 4)
    # Who went on was decided on the whole rung: every trial stopped at epoch 1 scored at most
    # what each one that went on scored there.
    at_rung_1 = {r.path: r.metrics_dataframe.query("epochs_done == 1")[VAL_METRIC].iloc[0]
                 for r in results}  # fmt: skip
    stopped = [at_rung_1[r.path] for r in results if r.metrics["epochs_done"] == 1]
    went_on = [at_rung_1[r.path] for r in results if r.metrics["epochs_done"] > 1]
    assert max(stopped) <= min(went_on)
    # The saved experiment state (what --resume and the study file read) has every trial done.
    saved = ray.tune.ExperimentAnalysis(str(storage / "smoke" / "tune" / "audio"))
    assert sorted(t.status for t in saved.trials) == ["TERMINATED"] * 16
    (best,) = [r for r in results if r.metrics["epochs_done"] == 6]
    assert load_checkpoint(best.checkpoint, "audio")["epoch"] == 6


def test_a_panel_sweep_pools_its_metric_and_probes_every_dataset(
    ray_address: str, tmp_path: Path, tiny_cache: Path
) -> None:
    """Each trial trains on both datasets of the panel (with a searched step budget), reports the
    mean of their validation metrics with `epochs_done` counting datasets, and the final stage
    probes the best encoders on each dataset and pools the paired differences."""
    data = yaml.safe_load(SMOKE.read_text())
    data.pop("dataset")
    data["formats"] = ["audio"]
    data["budget"] = {"trials": 2, "grace_period": 1, "reduction_factor": 2,
                      "max_concurrent_trials": 1}  # fmt: skip
    data["panel"] = {"datasets": {"s0": {"set": {"data.probe.embedded.seed": 0}},
                                  "s1": {"set": {"data.probe.embedded.seed": 1}}}}  # fmt: skip
    data["search"]["space"] = {"steps": {"key": "train.steps", "type": "choice",
                                         "choices": [4, 6]}}  # fmt: skip
    path = tmp_path / "panel.yaml"
    path.write_text(yaml.safe_dump(data))
    spec, base = load_sweep(path, ["probe.heads=[linear]", f"data.cache_dir={tmp_path / 'c'}",
                                   "train.batch_size=8"])  # fmt: skip
    results = run_sweep(spec, base, tmp_path / "sweeps", verbose=0)
    best = results["best"]["audio"]
    assert set(best["encoders"]) == {"s0", "s1"}
    assert all(Path(p["audio"]).is_file() for p in best["encoders"].values())
    for trial in best["trials"]:
        assert trial["epochs_done"] == 2 and trial["error"] is None  # both datasets trained
    sweep = tmp_path / "sweeps" / "smoke"
    grid = tune.ExperimentAnalysis(str(sweep / "tune" / "audio"))
    for trial in grid.trials:
        last = trial.last_result
        assert last[VAL_METRIC] == pytest.approx((last["val/s0"] + last["val/s1"]) / 2)
    per = {n: json.loads(Path(p).read_text()) for n, p in results["panel"].items()}
    assert set(per) == {"s0", "s1"} and all(r["rows"] for r in per.values())
    (row,) = [r for r in results["pooled"]["vs_control"] if r["name"] == "audio"]
    assert len(row["gains"]) == 2 and row["ci95"][0] <= row["mean_gain"] <= row["ci95"][1]
    md = (sweep / "results.md").read_text()
    assert "Pooled over s0, s1" in md and "| name | fusion |" not in md  # no empty row table
    audio = 100 * next(r["accuracy"] for r in per["s1"]["rows"] if r["name"] == "audio")
    assert any(ln.startswith("| audio | ") and f"| {audio:.1f} |" in ln for ln in md.splitlines())
