"""`mfclr sweep --resume`: the same sweep, or a refusal naming what changed.

A resumed sweep trains its unfinished trials on: under another learning rate or batch size the
best trial would have trained partly under each, while sweep.yaml and config.yaml claimed the
new values. So the whole resolved sweep (the sweep file and its base config, as the sweep folder
recorded them) is compared with the one resuming it; only what changes no trained weight may
differ (`RESUMABLE`): more trials, how many run at once, tracking, paths, the final probe.
`--override-resume` goes on anyway and records the changes in `<sweep>/resume_overrides.json`.

Resuming unpickles Tune's saved searcher state, which runs code: the state files must belong to
this user and be writable by nobody else (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import yaml

from mfclr.config import Config, build_config, diff
from mfclr.config.formats import with_added_keys
from mfclr.errors import ConfigError
from mfclr.io import atomic_write_text, is_remote

# Sweep-file keys (spec.*) and config keys (config.*) a resume may change.
RESUMABLE = (
    "spec.budget.trials",
    "spec.budget.max_concurrent_trials",
    "spec.storage",
    "spec.resources.max_failures",
    "config.tracking.",
    "config.probe.",
    "config.ray.max_failures",
    "config.train.device",
    "config.data.cache_dir",
    "config.data.probe.root",
    "config.data.pretrain.root",
    "config.data.loader_workers",
)
OVERRIDES_FILE = "resume_overrides.json"


def _saved(out: Path) -> dict[str, Any] | None:
    """The resolved sweep the folder recorded ({"spec", "config"}), None if it has none."""
    try:
        spec = yaml.safe_load((out / "sweep.yaml").read_text())
        config = yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(spec, dict) or not isinstance(config, dict):
        return None
    # Keys added since it was written: the behaviour it ran with where that differs from today's
    # default (with_added_keys), else the default.
    with contextlib.suppress(ConfigError):
        config = build_config(with_added_keys(config)).to_dict()
    return {"spec": spec, "config": config}


def resume_changes(out: Path, spec: dict[str, Any], base: Config) -> dict[str, list[Any]]:
    """What differs between the sweep recorded in `out` and (spec, base), beyond RESUMABLE; fewer
    trials than before count as a change."""
    saved = _saved(out)
    if saved is None:
        return {}
    now = {"spec": spec, "config": base.to_dict()}
    changed = diff.changes(saved, now, RESUMABLE)
    before, after = saved["spec"].get("budget", {}).get("trials"), spec["budget"]["trials"]
    if isinstance(before, int) and after < before:
        changed["spec.budget.trials"] = [before, after]
    return changed


def check_resume(
    out: Path, spec: dict[str, Any], base: Config, *, override: bool
) -> dict[str, list[Any]]:
    """Refuse a resume under other settings unless `override`; return what changed."""
    changed = resume_changes(out, spec, base)
    if changed and not override:
        raise ConfigError(
            f"sweep '{out.name}' was started with other settings ({diff.describe(changed)}); "
            "resume with the original sweep file and --set values, start a new sweep under "
            "another name or --out, or pass --override-resume to go on with the new ones"
        )
    return changed


def record_overrides(out: Path, changed: dict[str, list[Any]]) -> None:
    """Append one entry to `<out>/resume_overrides.json`: when, and what changed."""
    path = out / OVERRIDES_FILE
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = []
    entries.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": changed})
    atomic_write_text(path, json.dumps(entries, indent=1) + "\n")


def check_state_files(folder: str) -> None:
    """Tune state that a resume would unpickle must be this user's and not world-writable."""
    if is_remote(folder) or not Path(folder).is_dir():
        return
    for path in Path(folder).rglob("*"):
        if path.suffix not in (".pkl", ".json") or not path.is_file():
            continue
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & stat.S_IWOTH:
            raise ConfigError(
                f"Tune state file '{path}' belongs to another user or others may write it; "
                "resuming would unpickle it (run its code): check who changed it, then fix its "
                "owner and mode (chmod go-w), or start a new sweep"
            )
