"""A pretraining run on this machine: a run folder, a checkpoint per epoch, resume, export.

Run folder layout:
    config.yaml        the resolved config (written at start)
    run.json           format, git SHA, status
    metrics.jsonl      one line of metrics per epoch
    checkpoints/last.pt  the pretraining checkpoint (atomic; a Ctrl-C never corrupts it)
    encoder.pt         the exported frozen encoder, once training has finished
                       (cross-format: encoder-audio.pt and encoder-spectrogram.pt)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mfclr import checkpoint as ckpt
from mfclr.config import Config, save_config
from mfclr.io import atomic_write_text

log = logging.getLogger(__name__)


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


class LocalReporter:
    """The `report` callable of a local run: log, append metrics, write the checkpoint."""

    def __init__(self, run_dir: Path, fmt: str, epochs: int) -> None:
        self.run_dir, self.fmt, self.epochs = run_dir, fmt, epochs
        self.last = run_dir / "checkpoints" / "last.pt"

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is not None:
            ckpt.atomic_save(state, self.last)
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        from mfclr.train import epoch_line

        log.info("%s", epoch_line(self.fmt, self.epochs, metrics))


def pretrain_local(
    cfg: Config,
    fmt: str,
    run_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    tracking_dir: str | Path | None = None,
    group: str | None = None,
) -> dict[str, Path]:
    """Pretrain `fmt` in `run_dir` (resuming from its last checkpoint) and export the encoder.

    Returns the exported encoder path per input format (two for `cross`). A finished run is not
    trained again. W&B runs go under `tracking_dir` (default: run_dir), grouped by `group`
    (default: the run folder's name).
    """
    from mfclr.tracking import safe_run_id, start_run, tracking_reporter
    from mfclr.train import components, pretrain  # torch-heavy: kept out of CLI start-up

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reporter = LocalReporter(run_dir, fmt, cfg.train.epochs)
    state = None
    if resume and reporter.last.exists():
        state = ckpt.load(reporter.last, ckpt.PRETRAIN_KIND, fmt)
        log.info("%s: resuming from %s after epoch %d", fmt, reporter.last, state["epoch"])
    elif reporter.last.exists():
        reporter.last.unlink()
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    write_json(
        run_dir / "run.json", {"format": fmt, "git_sha": ckpt.git_sha(), "status": "running"}
    )
    if state is None or state["epoch"] < cfg.train.epochs:
        group = cfg.tracking.group or group or run_dir.name
        tracker = start_run(cfg, job_type="pretrain", name=f"{group}-{fmt}",
                            run_id=safe_run_id(group, fmt), dir=tracking_dir or run_dir, fmt=fmt,
                            dataset=cfg.data.probe.kind, group=group)  # fmt: skip
        with tracker:
            pretrain(cfg, fmt, tracking_reporter(tracker, reporter), initial_state=state,
                     progress=progress)  # fmt: skip
        state = ckpt.load(reporter.last, ckpt.PRETRAIN_KIND, fmt)
    else:
        log.info("%s: already trained for %d epochs; skipping", fmt, state["epoch"])
    paths = {}
    for f in components(fmt):  # cross-format runs export one encoder per format
        name = "encoder.pt" if f == fmt else f"encoder-{f}.pt"
        paths[f] = ckpt.atomic_save(ckpt.pretrain_to_encoder(state, f), run_dir / name)
    write_json(
        run_dir / "run.json",
        {
            "format": fmt,
            "git_sha": ckpt.git_sha(),
            "status": "finished",
            "epochs": state["epoch"],
            "final_loss": state["history"][-1]["loss"],
        },
    )
    return paths
