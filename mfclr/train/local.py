"""A pretraining run on this machine: a run folder, a checkpoint per epoch, resume, export.

Run folder layout:
    config.yaml        the resolved config (written at start)
    run.json           format, git SHA, status (and resume_overrides after --override-resume)
    metrics.jsonl      one line of metrics per epoch
    checkpoints/last.pt  the pretraining checkpoint (atomic; a Ctrl-C never corrupts it)
    encoder.pt         the exported frozen encoder, once training has finished
                       (cross-format: encoder-audio.pt and encoder-spectrogram.pt; export.py)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mfclr import checkpoint as ckpt
from mfclr.config import Config, build_config, diff, save_config
from mfclr.config.formats import foreign_keys, with_added_keys
from mfclr.data import Datasets
from mfclr.errors import CheckpointError, ConfigError
from mfclr.formats import components
from mfclr.io import append_json_line, atomic_write_json, clean_stale_temps, git_sha
from mfclr.locks import folder_lock
from mfclr.train.budget import resolve_epochs
from mfclr.train.export import export_encoders
from mfclr.train.harness import Sink, Tracking, run_pretraining

log = logging.getLogger(__name__)

# Config keys (dotted; a trailing "." is a whole section) that may differ between a run folder's
# checkpoint and the config that resumes it: more epochs extend a run, and where it runs, how
# fast it loads, what it logs, where its files lie, how it is validated and how it is probed
# change no trained weight.
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.steps",
    "train.device",
    "train.eval_every",
    "train.val_metric",
    "train.val_head",
    "train.max_eval_chunks",
    "train.knn_k",
    "ray.",  # Ray Train resources: a local run uses none
    "data.loader_workers",
    "data.cache_dir",
    "data.probe.root",
    "data.pretrain.root",
    "tracking.",
    "probe.",
    "compare.",  # which variants a run adds trains none of its own formats
)


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the keys added since it was written at their defaults, or at the
    behaviour they stand for where the default changed since (ADDED_KEYS); a saved config this
    version rejects is compared as it is."""
    try:
        return build_config(with_added_keys(saved)).to_dict()
    except ConfigError:
        return saved


def resume_changes(
    saved: dict[str, Any], current: dict[str, Any], parts: list[str] | None = None
) -> dict[str, list[Any]]:
    """Dotted config keys whose value differs between a checkpoint's config and the current one
    -> [saved, current], leaving out RESUMABLE_CHANGES and, for a run of `parts`, the sections
    it never reads (another format's encoder). A key the saved config lacks counts as its
    default."""
    ignored = RESUMABLE_CHANGES + tuple(f"{k}." for k in (foreign_keys(parts) if parts else ()))
    return diff.changes(_with_defaults(saved), current, ignored)


def check_resume(cfg: Config, fmt: str, run_dir: str | Path, *, override: bool = False) -> None:
    """Raise now, before a caller writes anything, if `pretrain_local` would refuse to resume
    the run in `run_dir` (another format; other settings unless `override`)."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if last.exists():
        state = ckpt.load(last, ckpt.PRETRAIN_KIND)
        _check_resume(Path(run_dir), fmt, state, cfg.for_format(fmt), override, quiet=True)


def _check_resume(
    run_dir: Path,
    fmt: str,
    state: dict[str, Any],
    cfg: Config,
    override: bool,
    quiet: bool = False,
) -> dict[str, list[Any]]:
    """Refuse to resume a run of another format, or with other hyperparameters unless
    `override`; returns what changed (recorded in run.json)."""
    if state.get("format") != fmt:
        raise CheckpointError(
            f"run folder '{run_dir}' holds a {state.get('format')} pretraining run, not "
            f"{fmt}; pretrain {fmt} in another --out, or pass --fresh to replace that run"
        )
    changed = resume_changes(state.get("config") or {}, cfg.to_dict(), components(fmt, cfg))
    if not changed:
        return {}
    if not override:
        raise ConfigError(
            f"run folder '{run_dir}' was trained with other settings ({diff.describe(changed)}); "
            "resume with the same ones, start over with --fresh, use another --out for a new "
            "run, or pass --override-resume to continue with the new ones"
        )
    if not quiet:
        log.warning("%s: resuming with changed settings (--override-resume): %s", fmt,
                    diff.describe(changed))  # fmt: skip
    return changed


class LocalSink(Sink):
    """A run folder: checkpoints/last.pt (atomic) and one metrics.jsonl line per epoch.
    `initial` is the checkpoint the run resumes from, already checked by `pretrain_local`."""

    def __init__(self, run_dir: Path, initial: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.run_dir, self.initial = run_dir, initial
        self.last = run_dir / "checkpoints" / "last.pt"

    def restore(self) -> dict[str, Any] | None:
        return self.initial

    def keep(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is not None:
            ckpt.atomic_save(state, self.last)
        append_json_line(self.run_dir / "metrics.jsonl", metrics)


def pretrain_local(
    cfg: Config,
    fmt: str,
    run_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    tracking_dir: str | Path | None = None,
    group: str | None = None,
    label: str | None = None,
    override_resume: bool = False,
    datasets: Datasets | None = None,
) -> dict[str, Path]:
    """Pretrain `fmt` in `run_dir` (resuming from its last checkpoint) and export the encoder.

    Returns the exported encoder path per input format (two for `cross`). A finished run is not
    trained again. W&B runs go under `tracking_dir` (default: run_dir), grouped by `group`
    (default: the run folder's name); `label` (default: the format) names the W&B run within
    the group, e.g. `ntxent-audio` for a compare variant. Resuming with settings other than the
    checkpoint's (see RESUMABLE_CHANGES) raises ConfigError unless `override_resume`; what
    changed is then kept in run.json under "resume_overrides". `datasets`: the process's opened
    datasets (a fresh `Datasets` when None).
    """
    run_dir = Path(run_dir)
    with folder_lock(run_dir):
        datasets = datasets or Datasets(progress=progress)
        cfg = resolve_epochs(cfg.for_format(fmt), datasets=datasets)
        last = run_dir / "checkpoints" / "last.pt"
        state, extra = _start_state(run_dir, last, fmt, cfg, resume, override_resume)
        save_config(cfg, run_dir / "config.yaml")
        running = {"format": fmt, "git_sha": git_sha(), **extra}
        atomic_write_json(run_dir / "run.json", {**running, "status": "running"})
        group = cfg.tracking.group or group or run_dir.name
        tracking = Tracking(str(tracking_dir or run_dir), group, label or fmt, restart=not resume)
        with _status_on_exit(run_dir / "run.json", running):
            state = run_pretraining(cfg, fmt, LocalSink(run_dir, state), tracking=tracking,
                                    datasets=datasets, progress=progress)  # fmt: skip
        assert state is not None  # a local run is rank zero
        return _finish(run_dir, fmt, state, extra)


def _finish(
    run_dir: Path, fmt: str, state: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Path]:
    """Export the encoder(s) and record the finished run in run.json."""
    paths = {f: Path(p) for f, p in export_encoders(state, run_dir).items()}
    finished = {
        "format": fmt,
        "git_sha": git_sha(),
        "status": "finished",
        "epochs": state["epoch"],
        "final_loss": state["history"][-1]["loss"],
        **extra,
    }
    atomic_write_json(run_dir / "run.json", finished)  # fmt: skip
    return paths


@contextmanager
def _status_on_exit(path: Path, running: dict[str, Any]) -> Iterator[None]:
    """run.json says `interrupted` (Ctrl-C, SIGTERM) or `failed` with the reason when the block
    ends by an exception, so it never stays `running` after the run stopped."""
    try:
        yield
    except BaseException as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        reason = (str(err).splitlines() or [""])[0] or type(err).__name__
        atomic_write_json(path, {**running, "status": status, "reason": reason[:300]})
        raise


def _start_state(
    run_dir: Path, last: Path, fmt: str, cfg: Config, resume: bool, override: bool
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The checkpoint to resume from (None: a fresh start) and run.json's extra keys.

    Removes stale temp files of a killed write first; a fresh start deletes the old checkpoint
    and metrics. A refused resume raises before anything is written or deleted.
    """
    for folder in (run_dir, last.parent):
        clean_stale_temps(folder)
    if not last.exists():
        return None, {}
    if not resume:
        last.unlink()
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None, {}
    state = ckpt.load(last, ckpt.PRETRAIN_KIND)
    changed = _check_resume(run_dir, fmt, state, cfg, override)
    log.info("%s: resuming from %s after epoch %d", fmt, last, state["epoch"])
    # Every resume with --override-resume adds to the record; later plain resumes keep it.
    record = _read_json(run_dir / "run.json").get("resume_overrides", [])
    if changed:
        record = [*record, {"after_epoch": state["epoch"], "changed": changed}]
    return state, {"resume_overrides": record} if record else {}


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when it is missing or unreadable."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}
