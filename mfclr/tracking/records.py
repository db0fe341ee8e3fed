"""What W&B runs are made of, without wandb: the run config with its flat keys, run ids, the
mode, the API key file and the check that no secret rides in a config, and probe rows as flat
table rows (the wandb-facing half is runs.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mfclr.config import CROSS, Config
from mfclr.config.formats import flatten as flatten_config
from mfclr.config.formats import format_flat_keys
from mfclr.config.secrets import (  # noqa: F401 (re-exported: one import path)
    KEY_FILE_ENV,
    api_key_from_file,
    check_no_secrets,
)
from mfclr.errors import ConfigError

log = logging.getLogger("mfclr.tracking")

JobType = Literal["pretrain", "probe"]
MODES = ("offline", "online", "disabled")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older WANDB_MODE spellings
# The flat keys of every run, whatever it trains or probes (W&B group-by needs one schema);
# each registered format adds its own (`flat_keys()`), None on runs without that format.
FLAT_KEYS = (
    "format", "fusion", "head", "encoders", "temperature", "weight_decay", "lr", "epochs",
    "batch_size", "projector", "dataset", "seed", "git_sha",
)  # fmt: skip


def resolve_mode(cfg: Config) -> str:
    """`WANDB_MODE` when set (offline | online | disabled), else `cfg.tracking.wandb`."""
    raw = os.environ.get("WANDB_MODE", "").strip()
    if not raw:
        return cfg.tracking.wandb
    mode = _MODE_ALIASES.get(raw.lower(), raw.lower())
    if mode not in MODES:
        raise ConfigError(f"WANDB_MODE='{raw}' is not one of {', '.join(MODES)}; fix or unset it")
    return mode


def run_config(
    cfg: Config,
    *,
    fmt: str | None,
    fusion: str | None,
    head: str | None,
    dataset: str,
    git_sha: str | None,
    encoders: str | None = None,
) -> dict[str, Any]:
    """The run config: the same flat keys (`flat_keys()`) on every run, plus the full config
    under "config".

    `fmt` is a format, `cross` or formats joined by "+" (a fused probe); a format's own flat keys
    (the spectrogram's mask sizes) are None when that format is not involved.
    """
    involved = set(fmt.split("+")) if fmt else set()
    if CROSS in involved:
        involved |= set(cfg.train.cross_pair)
    values = flatten_config(cfg.to_dict())
    tc = cfg.train
    flat = {
        "format": fmt,
        "fusion": fusion,
        "head": head,
        "encoders": encoders,
        "temperature": tc.temperature,
        **{
            k: values.get(dotted) if owner in involved else None
            for k, (owner, dotted) in format_flat_keys().items()
        },  # fmt: skip
        "weight_decay": tc.weight_decay,
        "lr": tc.lr,
        "epochs": tc.epochs,
        "batch_size": tc.batch_size,
        "projector": cfg.model.projector,
        "dataset": dataset,
        "seed": tc.seed,
        "git_sha": git_sha,
    }
    return {**flat, "config": cfg.to_dict()}


def flat_keys() -> tuple[str, ...]:
    """Every run's flat config keys: FLAT_KEYS and those of the registered formats."""
    return (*FLAT_KEYS, *format_flat_keys())


def safe_run_id(*parts: str) -> str:
    """A W&B run id from parts: [A-Za-z0-9_.-] only, at most 64 characters (hash-shortened)."""
    rid = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(p for p in parts if p)).strip("-.")
    if len(rid) > 64:
        rid = f"{rid[:55]}-{hashlib.sha1(rid.encode()).hexdigest()[:8]}"
    return rid or "run"


@dataclass(frozen=True)
class RunInfo:
    """What names and describes one W&B run.

    `run_id` should be stable per trial: a restarted trial resumes the same run. `group` (the
    sweep id) is used unless `cfg.tracking.group` is set. `fmt`, `fusion`, `head`, `encoders`
    become tags and flat config keys. `git_sha` None means: detect it. `restart`: the history
    starts over (a fresh run reusing the id), so steps below the last one logged are logged.
    """

    job_type: JobType
    name: str
    run_id: str
    dir: str | Path
    dataset: str
    group: str | None = None
    fmt: str | None = None
    fusion: str | None = None
    head: str | None = None
    encoders: str | None = None
    git_sha: str | None = None
    restart: bool = False


def is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def cell(value: Any) -> Any:
    if value is None or isinstance(value, str | bool) or is_number(value):
        return value.item() if hasattr(value, "item") else value
    return json.dumps(value, default=str)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> "a/b" keys; lists of scalars -> "x+y"; other lists are dropped."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        elif isinstance(value, list | tuple):
            if all(v is None or isinstance(v, str) or is_number(v) for v in value):
                out[name] = "+".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def variant_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One probe row as a flat table row (the confusion matrix is logged as its own chart)."""
    flat = flatten({k: v for k, v in row.items() if k != "confusion_matrix"})
    return {k.replace("per_class_ap/", "ap/"): v for k, v in flat.items()}


def probe_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    values = {k: row.get(k) for k in ("accuracy", "macro_map", "valid_accuracy", "n")}
    values |= {f"per_class_ap/{c}": ap for c, ap in (row.get("per_class_ap") or {}).items()}
    return {k: v for k, v in values.items() if is_number(v)}  # None: AP of an absent class
