"""Experiment tracking: the only package that imports wandb (lazily, so importing it is cheap).

Offline by default: runs are written under `<dir>/wandb/offline-run-*` and uploaded later with
`wandb sync`; with `WANDB_DIR` set (W&B's own convention), under `$WANDB_DIR/wandb/` instead.
`WANDB_MODE` (offline | online | disabled), when set, overrides `cfg.tracking.wandb`. Only
rank 0 logs; every other rank, and the disabled mode, get a `NullTracker` that writes nothing.

A run's id is stable (a restarted trial or a resumed pretraining continues it, `resume="allow"`)
and its step is the epoch. Steps only ever increase within a run, across restarts too: each
run's last logged step is kept in `<dir>/wandb/mfclr-steps/<id>.step`, and an epoch that a
restart trains again (its checkpoint was lost) is not logged a second time. Offline, each start
writes a new `offline-run-*-<id>` folder; together they hold each step once.

Every run carries the same flat config keys (`flat_keys()`), so W&B's group-by and parallel
coordinates work across pretraining trials (job_type=pretrain) and probe variants
(job_type=probe) of one sweep (the run group). Credentials travel only in the environment or a
file: no environment value is ever copied into a config, and `start_run` refuses a config that
contains the value of a secret-looking environment variable or of the key file.

The API key for online runs: `WANDB_API_KEY` (or `wandb login`'s ~/.netrc) as usual, or
`WANDB_API_KEY_FILE`, the path of a file holding the key (on a cluster, written on each node at
set-up from the cloud's secret store): only the path travels in a job's environment, so the key
never shows in `ray job list`, job metadata or the runtime-env agent's logs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mfclr.config import Config
from mfclr.errors import ConfigError, DataError
from mfclr.io import atomic_write_text
from mfclr.io import git_sha as detect_sha
from mfclr.tracking.records import (
    RunInfo,
    api_key_from_file,
    cell,
    check_no_secrets,
    flatten,
    is_number,
    probe_metrics,
    resolve_mode,
    run_config,
    safe_run_id,
    variant_row,
)

log = logging.getLogger("mfclr.tracking")

Report = Callable[[dict[str, Any], dict[str, Any] | None], None]
ONLINE_TIMEOUT_S = 20  # the longest wait for the W&B server when a run starts online


class Tracker(Protocol):
    """What the training loop and the probe stage may do with a run."""

    def log(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def summary(self, values: dict[str, Any]) -> None: ...
    def log_table(self, key: str, rows: list[dict[str, Any]]) -> None: ...
    def log_confusion(self, key: str, matrix: list[list[int]], label_names: list[str]) -> None: ...
    def finish(self) -> None: ...


class NullTracker:
    """Does nothing: ranks other than 0, and tracking disabled."""

    run_id: str | None = None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def summary(self, values: dict[str, Any]) -> None: ...
    def log_table(self, key: str, rows: list[dict[str, Any]]) -> None: ...
    def log_confusion(self, key: str, matrix: list[list[int]], label_names: list[str]) -> None: ...
    def finish(self) -> None: ...

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> None: ...


class WandbTracker:
    """Wraps one wandb run. Use as a context manager: an exception marks the run failed."""

    def __init__(
        self, run: Any, data_dir: Path | None = None, steps_file: Path | None = None
    ) -> None:
        self._run = run
        self._done = False
        self._data_dir = data_dir
        self._steps_file = steps_file
        self.last_step = read_last_step(steps_file)
        self.run_id: str = run.id

    def _log_media(self, values: dict[str, Any]) -> None:
        # wandb stages a logged table in $WANDB_DATA_DIR (default ~/.local/share/wandb) and
        # `wandb sync` uploads it from there; unless the user chose a place, keep it next to the
        # run files so syncing the output folder works (on shared storage, from any node).
        if self._data_dir is None or "WANDB_DATA_DIR" in os.environ:
            self._run.log(values)
            return
        os.environ["WANDB_DATA_DIR"] = str(self._data_dir)
        try:
            self._run.log(values)
        finally:
            del os.environ["WANDB_DATA_DIR"]

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log at `step` (None: W&B's next step); a step at or below the last one logged by this
        run, in this process or an earlier one, is dropped (W&B would refuse it online)."""
        if step is not None and self.last_step is not None and step <= self.last_step:
            log.info("W&B run %s already has step %d; not logging step %d again", self.run_id,
                     self.last_step, step)  # fmt: skip
            return
        # commit: W&B otherwise holds a step's row until the next step or finish(), and a trial
        # process that Tune or ASHA stops loses it (each step is logged in one call here).
        self._run.log(dict(metrics), step=step, commit=True)
        if step is not None:
            self.last_step = step
            if self._steps_file is not None:
                atomic_write_text(self._steps_file, f"{step}\n")

    def summary(self, values: dict[str, Any]) -> None:
        self._run.summary.update(dict(values))

    def log_table(self, key: str, rows: list[dict[str, Any]]) -> None:
        """`rows` share no fixed schema: columns are the union of keys, missing cells None."""
        import wandb

        columns = list(dict.fromkeys(k for row in rows for k in row))
        data = [[cell(row.get(c)) for c in columns] for row in rows]
        self._log_media({key: wandb.Table(columns=columns, data=data, allow_mixed_types=True)})

    def log_confusion(self, key: str, matrix: list[list[int]], label_names: list[str]) -> None:
        """A confusion-matrix chart (rows = true, cols = predicted) stored as `<key>_table`.

        Built from counts with the same chart spec as `wandb.plot.confusion_matrix` (which
        wants per-example labels); it is a table plus a chart preset, so it works offline.
        """
        import wandb

        n = len(label_names)
        if len(matrix) != n or any(len(r) != n for r in matrix):
            raise DataError(
                f"confusion matrix '{key}' is not {n} x {n} (one row and column per label name); "
                "pass the matrix that matches label_names"
            )
        data = [
            [label_names[i], label_names[j], int(matrix[i][j])] for i in range(n) for j in range(n)
        ]
        table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
        chart = wandb.plot_table(
            "wandb/confusion_matrix/v1",
            table,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": "Confusion matrix (test)"},
        )
        self._log_media({key: chart})

    def finish(self, exit_code: int | None = None) -> None:
        if not self._done:
            self._done = True
            self._run.finish(exit_code=exit_code)

    def __enter__(self) -> WandbTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.finish(exit_code=1 if exc_type is not None else None)


# ----------------------------------------------------------------------------- starting runs


def wandb_root(default: str | Path) -> Path:
    """The folder whose `wandb/` holds the runs: `$WANDB_DIR` when set, else `default`
    (absolute, so Ray workers with another working dir agree)."""
    raw = os.environ.get("WANDB_DIR", "").strip()
    return Path(raw or default).expanduser().resolve()


def read_last_step(path: Path | None) -> int | None:
    """The step in a run's steps file (None: no file, or unreadable)."""
    try:
        return int(path.read_text().strip()) if path is not None else None
    except (OSError, ValueError):
        return None


def start_run(cfg: Config, info: RunInfo, *, rank: int = 0) -> NullTracker | WandbTracker:
    """Start one run (rank 0 only) under `<root>/wandb`, root = `$WANDB_DIR` or `info.dir`;
    other ranks and mode disabled get a no-op. `info.restart`: forget the steps logged before."""
    mode = resolve_mode(cfg)
    if rank != 0 or mode == "disabled":
        return NullTracker()
    sha = info.git_sha if info.git_sha is not None else detect_sha()
    config = run_config(cfg, fmt=info.fmt, fusion=info.fusion, head=info.head,
                        dataset=info.dataset, git_sha=sha, encoders=info.encoders)  # fmt: skip
    check_no_secrets(config, f"run '{info.name}'")
    labels = (("format", info.fmt), ("fusion", info.fusion), ("head", info.head),
              ("encoders", info.encoders))  # fmt: skip
    tags = [f"{k}:{v}" for k, v in labels if v is not None] + [info.job_type]
    kw = dict(id=safe_run_id(info.run_id), name=info.name, tags=tags, job_type=info.job_type,
              config=config)  # fmt: skip
    root = wandb_root(info.dir)
    steps = root / "wandb" / "mfclr-steps" / f"{kw['id']}.step"
    if info.restart:
        steps.unlink(missing_ok=True)
    run = _init(cfg, mode, root, group=cfg.tracking.group or info.group, **kw)
    log.info("W&B %s run %s (%s, group %s) in %s", mode, run.id, info.job_type, run.group,
             run.dir)  # fmt: skip
    steps.parent.mkdir(parents=True, exist_ok=True)
    return WandbTracker(run, data_dir=root / "wandb" / "data", steps_file=steps)


def wandb_settings(mode: str) -> Any:
    """The wandb.Settings of every run; online, the key of `WANDB_API_KEY_FILE` when the
    environment holds no WANDB_API_KEY (the key goes to wandb, never into os.environ, so no child
    process inherits it)."""
    import wandb

    key = None
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        key = api_key_from_file()
    return wandb.Settings(
        # Offline rows are flushed every 15 s by default: a trial killed by ASHA lost them all.
        x_transaction_log_flush_interval=1.0,
        # Online without a network, wandb waits 90 s per run before it says so.
        init_timeout=ONLINE_TIMEOUT_S,
        login_timeout=ONLINE_TIMEOUT_S,
        # No banners in our CLI output (warnings and errors still show). No console capture:
        # progress bars would fill output.log, and stray prints could leak into the run files.
        silent=True,
        console="off",
        **({"api_key": key} if key else {}),
    )


def _init(cfg: Config, mode: str, root: Path, **kw: Any) -> Any:
    """wandb.init with our settings; a failure becomes one ConfigError line with the fix."""
    import wandb

    # The process-wide settings decide whether wandb's own usage telemetry may phone home; an
    # offline run alone does not stop that, so tell the global settings the mode too.
    wandb.setup(wandb.Settings(mode=mode))
    settings = wandb_settings(mode)
    if mode == "online":  # a slow or absent server shows, instead of a silent wait
        log.warning("W&B: starting online run '%s': contacting the server (up to %d s; "
                    "WANDB_MODE=offline writes the run locally instead)", kw["name"],
                    ONLINE_TIMEOUT_S)  # fmt: skip
    try:
        root.mkdir(parents=True, exist_ok=True)
        return wandb.init(project=cfg.tracking.project, entity=cfg.tracking.entity, dir=str(root),
                          mode=mode, resume="allow", reinit="create_new", save_code=False,
                          settings=settings, **kw)  # fmt: skip
    except (OSError, wandb.errors.Error) as err:
        online = "set WANDB_API_KEY (or `wandb login`) and check the network, or WANDB_MODE=offline"
        fix = online if mode == "online" else f"check that '{root}' is writable"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"W&B could not start {mode} run '{kw['name']}' ({first}); {fix}"
        ) from None


# ----------------------------------------------------------------------------- training and probes


def tracking_reporter(tracker: Tracker, inner: Report) -> Report:
    """Wrap a training loop's `report(metrics, state)`: log every numeric metric (loss, lr,
    samples_per_s, val_* ...) at step = metrics["epoch"], then call `inner`.

    Logging comes first: under Ray Tune, `inner` may be where an early-stopped trial ends.
    """

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        values = {
            k: (v if isinstance(v, int) else float(v)) for k, v in metrics.items() if is_number(v)
        }
        step = metrics.get("epoch")
        tracker.log(values, step=int(step) if is_number(step) else None)
        inner(metrics, state)

    return report


def log_probe_rows(
    cfg: Config,
    rows: list[dict[str, Any]],
    *,
    dir: str | Path,
    group: str | None,
    dataset: str,
    label_names: list[str],
    git_sha: str | None,
    rank: int = 0,
) -> list[str]:
    """One probe run per row (named "<name>-<head>"), each with accuracy, macro mAP, per-class
    AP (`per_class_ap/<class>`), the confusion-matrix chart and the table of all variants.

    Returns the ids of the runs written ([] when tracking is disabled or rank != 0).
    """
    table = [variant_row(r) for r in rows]
    prefix = cfg.tracking.group or group or "probe"
    ids: list[str] = []
    for row in rows:
        name = f"{row['name']}-{row['head']}"
        base, n = safe_run_id(prefix, name), 1
        run_id = base
        while run_id in ids:  # two rows with one name and head
            run_id, n = f"{base}-{n + 1}", n + 1
        fmt = "+".join(row.get("formats") or []) or None
        info = RunInfo(job_type="probe", name=name, run_id=run_id, dir=dir, dataset=dataset,
                       group=group, fmt=fmt, fusion=row.get("fusion"), head=row.get("head"),
                       encoders=row.get("encoders"), git_sha=git_sha)  # fmt: skip
        tracker = start_run(cfg, info, rank=rank)
        if isinstance(tracker, NullTracker):
            return []
        with tracker:
            tracker.log(probe_metrics(row))
            info = flatten(row.get("probe_info") or {}, "probe_info/")
            tracker.summary({k: v for k, v in info.items() if is_number(v) or isinstance(v, str)})
            if row.get("confusion_matrix") is not None:
                tracker.log_confusion("confusion_matrix", row["confusion_matrix"], label_names)
            tracker.log_table("variants", table)
        ids.append(tracker.run_id)
    return ids
