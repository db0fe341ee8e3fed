"""Panel sweeps: a trial is judged on several datasets, its metric pooled over them.

One small valid split is too noisy to choose a recipe on (84 valid tracks move a choice by single
tracks). A sweep that names a `panel:` trains each trial on every dataset of the panel in turn,
each with the config's budget (train.steps or train.epochs, a format's own budget, a searched
one) and its own run folder `<train_storage>/<trial>/<dataset>/` (a `mfclr pretrain` folder:
resumable per epoch, W&B run `<trial>-<dataset>`). After each dataset the trial reports the mean
validation metric over the datasets done so far, with `epochs_done` counting datasets: ASHA's and
halving's rungs compare trials on the same finished datasets, never mid-schedule, so trials of
different lengths (a searched train.steps) are compared fairly. The final stage probes the best
trial's encoders on each dataset (`<sweep>/<dataset>/results.*`) and pools the paired
differences over the pooled datasets (`<sweep>/results.*`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from mfclr.config import Config
from mfclr.data import Datasets
from mfclr.errors import ConfigError, MfclrError
from mfclr.formats.frozen import load_frozen
from mfclr.io import atomic_write_text, is_remote
from mfclr.probe import pool
from mfclr.report.results import write_results
from mfclr.stage import probe_and_report
from mfclr.train.budget import resolve_epochs
from mfclr.train.keys import TIME_ATTR, VAL_METRIC
from mfclr.train.local import pretrain_local

STATE_FILE = "panel.json"
Panel = dict[str, dict[str, Any]]  # dataset name -> {"pooled": bool, "set": {key: value}}


def _done(checkpoint: Any) -> dict[str, Any]:
    """{dataset: {"val": float, "encoders": {format: path}}} of the datasets already reported."""
    if checkpoint is None:
        return {}
    with checkpoint.as_directory() as folder:
        return json.loads((Path(folder) / STATE_FILE).read_text())


def _dataset_config(cfg: Config, fmt: str, entry: dict[str, Any], datasets: Datasets) -> Config:
    """The trial's config on one dataset, validated at its last epoch only."""
    cfg_d = cfg.with_overrides(entry["set"])
    epochs = resolve_epochs(cfg_d.for_format(fmt), datasets=datasets).train.epochs
    return cfg_d.with_overrides({"train.eval_every": epochs})


def run_panel_trial(
    cfg: Config, fmt: str, name: str, panel: Panel, *, train_storage: str,
    tracking_dir: str | None, group: str | None,
) -> None:  # fmt: skip
    """Train trial `name` on every dataset of `panel` not yet reported, reporting the running
    mean of their validation metrics after each (a Tune checkpoint records what is done)."""
    if is_remote(train_storage):
        raise ConfigError("a panel: sweep keeps its trials' run folders on a local or shared "
                          "(NFS) storage path, not an object store")  # fmt: skip
    done = _done(tune.get_checkpoint())
    for dname, entry in panel.items():
        if dname in done:
            continue
        datasets = Datasets(progress=False)
        cfg_d = _dataset_config(cfg, fmt, entry, datasets)
        run_dir = Path(train_storage) / name / dname
        paths = pretrain_local(cfg_d, fmt, run_dir, progress=False, datasets=datasets,
                               tracking_dir=tracking_dir, group=group,
                               label=f"{name}-{dname}")  # fmt: skip
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        done[dname] = {"val": float(last[VAL_METRIC]),
                       "encoders": {f: str(p) for f, p in paths.items()}}  # fmt: skip
        vals = [d["val"] for d in done.values()]
        metrics = {VAL_METRIC: sum(vals) / len(vals), TIME_ATTR: len(done),
                   **{f"val/{d}": v["val"] for d, v in done.items()}}  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="mfclr-panel-") as tmp:
            atomic_write_text(Path(tmp) / STATE_FILE, json.dumps(done))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def export_best(checkpoint: Any, out: Path, fmt: str) -> dict[str, dict[str, str]]:
    """The best trial's encoders, copied to `<out>/best/<dataset>/<encoder file>`: dataset ->
    input format -> path."""
    exported: dict[str, dict[str, str]] = {}
    for dname, entry in _done(checkpoint).items():
        target = out / "best" / dname
        target.mkdir(parents=True, exist_ok=True)
        exported[dname] = {}
        for part, path in entry["encoders"].items():
            dest = target / (f"{fmt}.pt" if part == fmt else f"{fmt}-{part}.pt")
            shutil.copyfile(path, dest)
            exported[dname][part] = str(dest)
    return exported


def _accuracies(per: dict[str, dict[str, Any]]) -> str:
    """Test accuracy (%) of every row on every dataset, a table per head; each dataset's own
    results.md has the intervals."""
    heads = list(dict.fromkeys(r["head"] for r in next(iter(per.values()))["rows"]))
    title = "## Test accuracy (%) per dataset (each `<dataset>/results.md` has the rest)"
    return "\n\n".join([title, *(pool.accuracy_table(per, h) for h in heads)])


def finish_panel(
    spec: Any, base: Config, best: dict[str, dict[str, Any]], out: Path, facts: dict[str, Any],
    sections: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Probe the best encoders on each panel dataset (`<out>/<dataset>/results.*`), then pool
    the paired differences over the pooled datasets into `<out>/results.*`."""
    panel: Panel = spec.panel["datasets"]
    per: dict[str, dict[str, Any]] = {}
    for dname, entry in panel.items():
        cfg_d = base.with_overrides(entry["set"])
        encoders = {}
        for fmt, b in best.items():
            if dname not in b["encoders"]:
                raise MfclrError(f"the best {fmt} trial has no encoder for dataset '{dname}'")
            encoders |= {f: load_frozen(p, f) for f, p in b["encoders"][dname].items()}
        per[dname] = probe_and_report(cfg_d, encoders, out / dname, facts=facts,
                                      group=spec.name)  # fmt: skip
    pooled = [n for n, e in panel.items() if e["pooled"]]
    summary = {
        "vs_control": pool.pool([pool.vs_control(per[n]) for n in pooled]),
        "vs_mfcc": pool.pool([pool.vs_mfcc(per[n]) for n in pooled]),
        "vs_best_single": pool.pool([pool.vs_best_single(per[n]) for n in pooled]),
    }
    md = [_accuracies(per), *(f"## Pooled over {', '.join(pooled)}: {key.replace('_', ' ')}\n\n"
          f"{pool.table(rows, pooled)}" for key, rows in summary.items() if rows)]  # fmt: skip
    results = {n: str(per[n]["results_json"]) for n in panel}
    first = per[next(iter(panel))]
    # The rows are each dataset's (in its own results.json); the sweep's own file holds the
    # pooled verdicts.
    extra = {**facts, "panel": results, "pooled": summary, "pooled_datasets": pooled,
             "dataset": f"panel of {len(panel)}",
             "test_tracks": sum(per[n]["test_tracks"] for n in panel),
             "label_names": first["label_names"]}  # fmt: skip
    json_path, md_path = write_results(out, [], extra, [*md, *sections])
    return {"rows": [], "results_json": json_path, "results_md": md_path, **extra}
