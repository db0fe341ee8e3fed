"""A dataset panel: several datasets one recipe is judged on, pooled (e.g. panels/real.yaml).

    datasets:
      style-s7: {pooled: true, set: {data.probe.kind: folder, data.probe.root: $SCORES/style-s7}}
      embedded-s0: {pooled: false, set: {data.probe.embedded.seed: 0}}

Each dataset is a set of dotted config overrides on top of the recipe; `pooled: false` datasets
are reported beside the others but left out of the pooled verdicts. `$SCORES` is the folder the
real-music sets were built in (env SCORES, default ~/scores). Read by the panel experiment and by
sweep files that name a `panel:`. No torch, no Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mfclr.errors import ConfigError

SCORES_ENV = "SCORES"


def scores_dir() -> str:
    return os.environ.get(SCORES_ENV) or str(Path("~/scores").expanduser())


def parse_panel(data: Any, where: str) -> dict[str, dict[str, Any]]:
    """name -> {"pooled": bool, "set": {dotted key: value}} from a panel mapping, `$SCORES`
    expanded and every folder checked."""
    datasets = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"{where}: 'datasets' must map dataset names to their settings")
    out = {}
    for name, entry in datasets.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("set", {}), dict):
            raise ConfigError(f"{where}: dataset '{name}' needs a 'set:' mapping of config keys")
        sets = {k: v.replace("$SCORES", scores_dir()) if isinstance(v, str) else v
                for k, v in (entry.get("set") or {}).items()}  # fmt: skip
        root = sets.get("data.probe.root")
        if root and not Path(root).is_dir():
            raise ConfigError(
                f"{where}: dataset '{name}': '{root}' does not exist; build it with "
                "../shared/tools/scores (experiments/README.md) or set SCORES"
            )
        out[str(name)] = {"pooled": bool(entry.get("pooled", True)), "set": sets}
    return out


def load_panel(path: str | Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The panel in `path` (a YAML file), or its datasets `names` in that order."""
    from mfclr.config import read_yaml

    panel = parse_panel(read_yaml(path, "panel file"), f"panel file '{path}'")
    if names is None:
        return panel
    unknown = [n for n in names if n not in panel]
    if unknown:
        raise ConfigError(f"panel file '{path}' has no dataset '{unknown[0]}'; choose from "
                          f"{', '.join(panel)}")  # fmt: skip
    return {n: panel[n] for n in names}


def resolve_panel(panel: dict[str, Any], path: Path, base: Any) -> dict[str, Any]:
    """A sweep's `panel:` as the datasets it names, each {pooled, set}: from `file:` (relative
    to the sweep file; `datasets:` a list picks some) or inline (`datasets:` a mapping). Each
    dataset's overrides must give a valid config."""
    extra = set(panel) - {"file", "datasets"}
    if extra:
        raise ConfigError(f"panel: unknown key '{sorted(extra)[0]}'; use file: and datasets:")
    if "file" in panel:
        file = Path(str(panel["file"]))
        file = file if file.is_absolute() else path.parent / file
        names = panel.get("datasets")
        if names is not None and not isinstance(names, list):
            raise ConfigError("panel.datasets with a file: is a list of its dataset names")
        datasets = load_panel(file, names)
    else:
        datasets = parse_panel(panel, "panel")
    for name, entry in datasets.items():  # `base`: the sweep's base Config
        try:
            base.with_overrides(entry["set"])
        except ConfigError as err:
            raise ConfigError(f"panel dataset '{name}': {err}") from None
    return {"datasets": datasets}
