"""The table of probe rows: frozen encoders in, one row per variant and head out.

Each format's encoder embeds every track of the probe dataset (the mean over all of its chunks);
the variants are single formats, every configured fusion, a random-init control of each encoder
set (its own architectures, untrained) and MFCC statistics, each under every probe head. Probe
settings are chosen on valid; the metrics are on test. `evaluate` returns the rows with the
facts of the dataset they were computed on, so no caller loads the dataset again to describe
them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfclr.config import SPLITS, Config
from mfclr.data import Datasets
from mfclr.data.store import PreparedDataset
from mfclr.formats.frozen import CONTROL, FrozenEncoder
from mfclr.probe.bundle import check_save_row
from mfclr.probe.fusion import get_fusion
from mfclr.probe.metrics import classification_metrics
from mfclr.probe.mfcc import MFCC, mfcc_features
from mfclr.probe.predictor import FusionPredictor
from mfclr.probe.sets import check_label_sets, embed_sets, is_control, with_controls
from mfclr.probe.stats import accuracy_ci, paired_delta

log = logging.getLogger(__name__)


Variant = tuple[str, str, str, list[str]]  # (encoder set, row name, fusion, formats)


@dataclass
class ProbeTable:
    """The probe rows (plain dicts, see mfclr/report/results.py) and the dataset's facts:
    dataset (name), test_tracks, label_names. In memory only (never in results.json), what a
    saved classifier needs: `fitted` (row name, head) -> the row's FusionPredictor, and `sets`
    encoder set -> format -> FrozenEncoder (the MFCC row has neither)."""

    rows: list[dict[str, Any]]
    facts: dict[str, Any] = field(default_factory=dict)
    fitted: dict[tuple[str, str], FusionPredictor] = field(default_factory=dict)
    sets: dict[str, dict[str, FrozenEncoder]] = field(default_factory=dict)


def dataset_facts(data: PreparedDataset) -> dict[str, Any]:
    """What results files say about the probe dataset."""
    return {
        "dataset": data.name,
        "test_tracks": len(data.splits["test"]),
        "label_names": list(data.label_names),
    }


def _variants(cfg: Config, formats: list[str]) -> list[tuple[str, str, list[str]]]:
    """(row name, fusion, formats) for single formats, each fusion, and the random control."""
    rows = [(f, "none", [f]) for f in formats]
    if len(formats) > 1:
        for fusion in cfg.probe.fusions:
            rows.append(("fused" if fusion == "concat" else f"fused-{fusion}", fusion, formats))
    return rows


def _row_name(kind: str, name: str) -> str:
    """`audio` / `fused-average` for trained encoders; `cross-audio` for another set; a control
    set's fused rows drop "fused" (`random-init`, `random-init-average`)."""
    if kind == "trained":
        return name
    if is_control(kind) and name.startswith("fused"):
        return kind + name.removeprefix("fused")
    return f"{kind}-{name}"


def evaluate(
    cfg: Config,
    encoders: dict[str, FrozenEncoder],
    out_dir: str | Path,
    device: torch.device | None = None,
    *,
    extra: dict[str, dict[str, FrozenEncoder]] | None = None,
    datasets: Datasets | None = None,
) -> ProbeTable:
    """Embed, fit every probe variant on train (settings chosen on valid), score on test.

    `encoders` are the separately trained ones (rows `audio`, `spectrogram`, `fused`, ...);
    each `extra` set (`cross`: both encoders of a cross-format run; a compare variant such as
    `ntxent`) adds the same rows with its name as a prefix (`cross-audio`, `ntxent-fused`, ...);
    the random-init controls (each encoder's own architecture, frontend and seed) and the MFCC
    row follow, and every other row gets its paired difference to them. `datasets`: the
    process's opened datasets; each encoder embeds the tracks at its own sample rate.
    """
    out_dir = Path(out_dir)
    device = device or torch.device("cpu")
    datasets = datasets or Datasets()
    data = datasets.get(cfg.data, "probe")
    sets = {k: v for k, v in {"trained": encoders, **(extra or {})}.items() if v}
    check_label_sets(sets)
    control_of: dict[str, str] = {}
    if cfg.probe.random_init_control:
        sets, control_of = with_controls(sets)
    variants = [(kind, _row_name(kind, name), fusion, fmts)
                for kind, encs in sets.items()
                for name, fusion, fmts in _variants(cfg, sorted(encs))]  # fmt: skip
    if cfg.probe.mfcc_baseline:
        variants.append((MFCC, MFCC, "none", [MFCC]))
    # A row to save that the table will not have fails now, not after the embedding.
    check_save_row(cfg.probe.save_row, [(v[1], h, v[0]) for h in cfg.probe.heads for v in variants])
    feats = embed_sets(cfg, sets, data, datasets, out_dir, device)
    if cfg.probe.mfcc_baseline:
        log.info("MFCC statistics of the whole %s tracks (the feature baseline)", data.name)
        feats[MFCC] = {MFCC: mfcc_features(data, cfg.mel)}
    table = ProbeTable([], dataset_facts(data), sets=sets)
    for head in cfg.probe.heads:
        for variant in variants:
            table.rows.append(_probe_row(cfg, variant, head, feats, data, control_of, table))
    table.rows = add_control_deltas(table.rows)
    return table


def _probe_row(
    cfg: Config, variant: Variant, head: str, feats: dict[str, dict[str, dict[str, np.ndarray]]],
    data: PreparedDataset, control_of: dict[str, str], table: ProbeTable,
) -> dict[str, Any]:  # fmt: skip
    """Fit one variant under one head (settings on valid), score it on test; its fitted
    predictor goes to `table.fitted`."""
    kind, name, fusion, fmts = variant
    labels = {s: data.splits[s].labels for s in SPLITS}
    result = get_fusion("concat" if fusion == "none" else fusion)(
        {f: feats[kind][f] for f in fmts}, labels, head, cfg.probe, len(data.label_names)
    )
    if result.predictor is not None:
        table.fitted[(name, head)] = result.predictor
    metrics = classification_metrics(labels["test"], result.probs, data.label_names)
    correct = (result.probs.argmax(axis=1) == labels["test"]).astype(int)
    paired = {"control_set": control_of[kind]} if kind in control_of else {}
    log.info("%-18s %-7s accuracy %.3f  macro mAP %.3f", name, head,
             metrics["accuracy"], metrics["macro_map"])  # fmt: skip
    return {"name": name, "fusion": fusion, "head": head, "formats": fmts, "encoders": kind,
            "valid_accuracy": result.info.get("valid_accuracy"), **metrics,
            "accuracy_ci95": list(accuracy_ci(correct)), "test_correct": correct.tolist(),
            "probe_info": result.info, **paired}  # fmt: skip


def add_control_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every trained row the paired test-accuracy difference to its random-init
    counterpart (same head, fusion and formats): `control`, `delta_vs_control`, `delta_ci95`
    and `beats_control` (the interval lies above zero); and to the MFCC row of its head:
    `delta_vs_mfcc`, `mfcc_delta_ci95`, `beats_mfcc`."""
    controls = {
        (r["encoders"], r["head"], r["fusion"], tuple(r["formats"])): r
        for r in rows
        if is_control(r.get("encoders", ""))
    }
    mfcc = {r["head"]: r for r in rows if r.get("encoders") == MFCC}
    for r in rows:
        if is_control(r.get("encoders", "")) or r.get("encoders") == MFCC:
            continue
        key = (r.get("control_set", CONTROL), r["head"], r["fusion"], tuple(r["formats"]))
        c = controls.get(key)
        if c is not None:
            delta, ci = paired_delta(r["test_correct"], c["test_correct"])
            r.update(control=c["name"], delta_vs_control=delta, delta_ci95=list(ci),
                     beats_control=ci[0] > 0)  # fmt: skip
        m = mfcc.get(r["head"])
        if m is not None:
            delta, ci = paired_delta(r["test_correct"], m["test_correct"])
            r.update(delta_vs_mfcc=delta, mfcc_delta_ci95=list(ci), beats_mfcc=ci[0] > 0)
    return rows


def aggregate_seeds(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (name, head) from the same table repeated over pretraining seeds.

    accuracy, macro_map, valid_accuracy: means (`accuracies`, `accuracy_std` over seeds);
    `test_correct`: each test track's fraction of seeds that got it right, so `accuracy_ci95` and
    the paired `delta_ci95` resample test tracks of the seed-averaged predictions;
    `delta_std` and `seeds_beating_control` come from the seeds' own paired differences;
    per-class AP is the mean, the confusion matrix the sum over seeds.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rows in per_seed:
        for r in rows:
            groups.setdefault((r["name"], r["head"]), []).append(r)
    out = []
    for rs in groups.values():
        acc = np.array([r["accuracy"] for r in rs], dtype=float)
        correct = np.mean([r["test_correct"] for r in rs], axis=0)
        first = rs[0]
        keys = ("name", "fusion", "head", "formats", "encoders", "control_set")
        row = {k: first[k] for k in keys if k in first}
        row.update(
            accuracy=float(acc.mean()),
            accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            accuracies=acc.tolist(),
            macro_map=_mean_or_none([r.get("macro_map") for r in rs]),
            valid_accuracy=_mean_or_none([r.get("valid_accuracy") for r in rs]),
            accuracy_ci95=list(accuracy_ci(correct)),
            test_correct=correct.tolist(),
            per_class_ap={c: _mean_or_none([r["per_class_ap"].get(c) for r in rs])
                          for c in first.get("per_class_ap", {})},
            confusion_matrix=np.sum([r["confusion_matrix"] for r in rs], axis=0).tolist(),
            n_seeds=len(rs),
            probe_info=first.get("probe_info"),
        )  # fmt: skip
        deltas = [r["delta_vs_control"] for r in rs if "delta_vs_control" in r]
        if deltas:
            row["delta_std"] = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else 0.0
            row["seeds_beating_control"] = sum(bool(r.get("beats_control")) for r in rs)
        out.append(row)
    return add_control_deltas(out)


def _mean_or_none(values: list[Any]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))
