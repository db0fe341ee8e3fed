"""Experiment tracking, the only package that talks to W&B: what a run is made of (records.py,
no wandb) and starting, logging and finishing runs (runs.py, which imports wandb lazily).
Offline by default; only rank 0 logs. See runs.py for the details."""

from __future__ import annotations

from mfclr.tracking.records import (
    FLAT_KEYS,
    KEY_FILE_ENV,
    MODES,
    JobType,
    RunInfo,
    api_key_from_file,
    flat_keys,
    resolve_mode,
    run_config,
    safe_run_id,
    variant_row,
)
from mfclr.tracking.runs import (
    NullTracker,
    Tracker,
    WandbTracker,
    log_probe_rows,
    start_run,
    tracking_reporter,
    wandb_root,
    wandb_settings,
)

__all__ = [
    "FLAT_KEYS",
    "KEY_FILE_ENV",
    "MODES",
    "JobType",
    "NullTracker",
    "RunInfo",
    "Tracker",
    "WandbTracker",
    "api_key_from_file",
    "flat_keys",
    "log_probe_rows",
    "resolve_mode",
    "run_config",
    "safe_run_id",
    "start_run",
    "tracking_reporter",
    "variant_row",
    "wandb_root",
    "wandb_settings",
]
