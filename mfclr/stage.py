"""The probe-and-report stage that `mfclr probe`, `mfclr run` and a sweep's final stage share:
probe the frozen encoders, write results.json/md, log the rows to W&B. Orchestration, so it
lives beside run.py: probe/ computes, report/ renders, tracking/ logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mfclr.config import Config
from mfclr.data import Datasets
from mfclr.distributed import resolve_device
from mfclr.formats.frozen import FrozenEncoder
from mfclr.io import clean_stale_temps, git_sha
from mfclr.locks import folder_lock
from mfclr.probe.variants import evaluate
from mfclr.report.results import write_results
from mfclr.tracking import log_probe_rows


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
    the caller's `facts` (checkpoints, embeddings, sweep, ...).
    """
    out = Path(out)
    device = device or resolve_device(cfg.train.device)
    with folder_lock(out):
        for folder in (out, out / "embeddings"):  # what a kill mid-write left behind
            clean_stale_temps(folder)
        table = evaluate(cfg, encoders, out, device=device, extra=extra_sets, datasets=datasets)
        all_facts = {**table.facts, "git_sha": git_sha(), **(facts or {})}
        json_path, md_path = write_results(out, table.rows, all_facts, sections)
        if group is not None:
            log_probe_rows(cfg, table.rows, dir=out, group=group, dataset=all_facts["dataset"],
                           label_names=all_facts["label_names"],
                           git_sha=all_facts["git_sha"])  # fmt: skip
    return {"rows": table.rows, "results_json": json_path, "results_md": md_path, **all_facts}
