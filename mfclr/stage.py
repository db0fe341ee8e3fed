"""The probe-and-report stage that `mfclr probe`, `mfclr run` and a sweep's final stage share:
probe the frozen encoders, save the chosen row as classifier.pt, write results.json/md, log the
rows to W&B. Orchestration, so it lives beside run.py: probe/ computes, report/ renders,
tracking/ logs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mfclr.config import Config
from mfclr.data import Datasets
from mfclr.distributed import resolve_device
from mfclr.errors import ConfigError
from mfclr.formats.frozen import FrozenEncoder
from mfclr.io import clean_stale_temps, git_sha
from mfclr.locks import folder_lock
from mfclr.probe.bundle import FILE, classifier_state, config_hash, save_classifier
from mfclr.probe.mfcc import MFCC
from mfclr.probe.sets import is_control
from mfclr.probe.variants import ProbeTable, evaluate
from mfclr.report.markdown import BEST_KEY, best_indices
from mfclr.report.results import write_results
from mfclr.tracking import log_probe_rows

log = logging.getLogger(__name__)


def probe_and_report(
    cfg: Config,
    encoders: dict[str, FrozenEncoder],
    out: str | Path,
    *,
    extra_sets: dict[str, dict[str, FrozenEncoder]] | None = None,
    facts: Mapping[str, Any] | None = None,
    sections: Sequence[str] = (),
    group: str | None = None,
    device: torch.device | None = None,
    datasets: Datasets | None = None,
) -> dict[str, Any]:
    """Probe the frozen encoders (see `mfclr.probe.variants.evaluate`), write results.json and
    results.md in `out`, and with a `group` log one W&B probe run per row.

    Returns {"rows", "results_json", "results_md", **facts}: the dataset's facts, git_sha, then
    the caller's `facts` (checkpoints, embeddings, sweep, ...), and `classifier` (its path) with
    `classifier_row` (NAME/HEAD) when a row was saved (`save_table_classifier`).
    """
    out = Path(out)
    device = device or resolve_device(cfg.train.device)
    with folder_lock(out):
        for folder in (out, out / "embeddings"):  # what a kill mid-write left behind
            clean_stale_temps(folder)
        table = evaluate(cfg, encoders, out, device=device, extra=extra_sets, datasets=datasets)
        all_facts = {**table.facts, "git_sha": git_sha(), **(facts or {})}
        all_facts |= save_table_classifier(cfg, table, out / FILE, all_facts)
        json_path, md_path = write_results(out, table.rows, all_facts, sections)
        if group is not None:
            log_probe_rows(cfg, table.rows, dir=out, group=group, dataset=all_facts["dataset"],
                           label_names=all_facts["label_names"],
                           git_sha=all_facts["git_sha"])  # fmt: skip
    return {"rows": table.rows, "results_json": json_path, "results_md": md_path, **all_facts}


def classifier_row(table: ProbeTable, save_row: str | None) -> int | None:
    """The index of the row to save: `save_row` (NAME/HEAD), else the one with the best valid
    accuracy among the rows with trained encoders (not a random-init control, not MFCC), ties
    to the first in table order as results.md stars it; None when no row qualifies."""
    rows = table.rows
    if save_row is not None:
        name, _, head = save_row.rpartition("/")
        found = [i for i, r in enumerate(rows) if (r["name"], r["head"]) == (name, head)]
        if not found or (name, head) not in table.fitted:  # checked before probing already
            raise ConfigError(f"probe.save_row '{save_row}' is not a row that can be saved")
        return found[0]
    trained = [
        i
        for i, r in enumerate(rows)
        if not is_control(r["encoders"]) and r["encoders"] != MFCC
        and (r["name"], r["head"]) in table.fitted
    ]  # fmt: skip
    best = best_indices([rows[i] for i in trained], BEST_KEY)
    return trained[best.pop()] if best else None


def save_table_classifier(
    cfg: Config, table: ProbeTable, path: Path, facts: Mapping[str, Any]
) -> dict[str, str]:
    """Save the row `classifier_row` picks as a classifier at `path`; returns the facts that
    name it ({} when no row qualifies)."""
    index = classifier_row(table, cfg.probe.save_row)
    if index is None:
        log.info("no row with trained encoders to save as a classifier")
        return {}
    row = table.rows[index]
    state = classifier_state(
        row=row,
        predictor=table.fitted[(row["name"], row["head"])],
        encoders=table.sets[row["encoders"]],
        label_names=list(facts["label_names"]),
        max_chunks=cfg.train.max_eval_chunks,
        batch_size=cfg.train.batch_size,
        provenance={"dataset": facts.get("dataset"), "git_sha": facts.get("git_sha"),
                    "config_hash": config_hash(cfg.to_dict())},
    )  # fmt: skip
    save_classifier(path, state)
    chosen = f"{row['name']}/{row['head']}"
    log.info("classifier: %s (row %s)", path, chosen)
    return {"classifier": str(path), "classifier_row": chosen}
