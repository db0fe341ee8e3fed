"""classifier.pt: one row of a probe table made usable on new audio.

A plain dict, written atomically and read with `torch.load(weights_only=True)` (tensors, dicts,
lists, str, int, float, bool and None only):

    kind "mfclr.classifier", version 1 (checkpoint.VERSIONS; others are refused in one line)
    row            {name, head, fusion, encoders, formats}: the table row it is
    valid_accuracy, test_accuracy   that row's (fractions)
    label_names    class index -> name
    encoders       format -> an exported-encoder dict (formats/frozen.encoder_state: specs,
                   weights, sample rate, crop) + max_chunks (train.max_eval_chunks)
    fusion         {name: concat | gated | average | weighted | product, formats (sorted),
                   weights: the weighted fusion's K floats, else None}
    probes         one per format (decision-level fusions) or one (concat, gated), each
                   {spec: {module: head | gated, kwargs}, state: its weights,
                    mean, std: the train standardiser, (D,) float64 tensors}
    batch_size     chunks per forward batch when the probe embedded its tracks
    dataset, config_hash, git_sha   where it came from

What is fitted comes from the table's own `FusionPredictor` and is rebuilt as one, so a loaded
classifier predicts through the code that computed the row's test probabilities.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfclr import checkpoint as ckpt
from mfclr.encoders import build_from_spec
from mfclr.errors import CheckpointError, ConfigError, DataError
from mfclr.formats.frozen import FrozenEncoder, encoder_state, frozen_from_state
from mfclr.heads import ProbeHead
from mfclr.probe.fit import FittedProbe, Standardizer
from mfclr.probe.fusion import GatedFusion
from mfclr.probe.mfcc import MFCC
from mfclr.probe.predictor import CONCATENATED, POOLED, FusionPredictor

VERSION = ckpt.VERSIONS[ckpt.CLASSIFIER_KIND]
FILE = "classifier.pt"
# Probe model spec name -> constructor (FittedProbe.spec).
MODULES = {"head": ProbeHead, "gated": GatedFusion}
_KEYS = ("row", "label_names", "encoders", "fusion", "probes", "batch_size")


@dataclass
class SavedClassifier:
    """A loaded classifier.pt: its frozen encoders (format -> FrozenEncoder, with each one's
    chunk cap in `max_chunks`), the fitted fusion, label names, the embedding batch size, and
    `meta` (row, valid_accuracy, test_accuracy, dataset, config_hash, git_sha)."""

    encoders: dict[str, FrozenEncoder]
    max_chunks: dict[str, int]
    predictor: FusionPredictor
    label_names: list[str]
    batch_size: int
    meta: dict[str, Any]
    source: str


def config_hash(config: dict[str, Any]) -> str:
    """12 hex digits of a resolved config dict (every key: what the whole table depended on)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_save_row(save_row: str | None, rows: list[tuple[str, str, str]]) -> None:
    """Refuse, before any work, a probe.save_row that names no row of the table to come, or
    the MFCC row; `rows` are its (name, head, encoder set)."""
    if save_row is None:
        return
    name, _, head = save_row.rpartition("/")
    kinds = [kind for n, h, kind in rows if (n, h) == (name, head)]
    if not kinds:
        names = ", ".join(dict.fromkeys(n for n, _, _ in rows))
        raise ConfigError(
            f"probe.save_row '{save_row}' names no row of this table; rows: {names} "
            f"(each under {', '.join(dict.fromkeys(h for _, h, _ in rows))})"
        )
    if kinds[0] == MFCC:
        raise ConfigError(
            f"probe.save_row '{save_row}': the MFCC row has no encoder to save as a "
            "classifier; name a row with encoders"
        )


def _probe_state(probe: FittedProbe) -> dict[str, Any]:
    if not probe.spec:
        raise DataError("a probe without a model spec cannot be saved as a classifier")
    return {
        "spec": probe.spec,
        "state": {k: v.detach().cpu().clone() for k, v in probe.model.state_dict().items()},
        "mean": torch.from_numpy(np.array(probe.standardizer.mean, dtype=np.float64)),
        "std": torch.from_numpy(np.array(probe.standardizer.std, dtype=np.float64)),
    }


def classifier_state(
    *,
    row: dict[str, Any],
    predictor: FusionPredictor,
    encoders: dict[str, FrozenEncoder],
    label_names: list[str],
    max_chunks: int,
    batch_size: int,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The classifier.pt dict of table row `row` (a results row: name, head, fusion, encoders,
    formats, valid_accuracy, accuracy), fitted as `predictor` over `encoders` (format ->
    FrozenEncoder); `provenance`: dataset, config_hash, git_sha."""
    weights = predictor.weights
    return {
        "kind": ckpt.CLASSIFIER_KIND,
        "version": VERSION,
        "row": {k: row[k] for k in ("name", "head", "fusion", "encoders", "formats")},
        "valid_accuracy": row.get("valid_accuracy"),
        "test_accuracy": row.get("accuracy"),
        "label_names": [str(n) for n in label_names],
        "encoders": {
            f: {**encoder_state(encoders[f]), "max_chunks": int(max_chunks)}
            for f in predictor.formats
        },
        "fusion": {
            "name": predictor.fusion,
            "formats": list(predictor.formats),
            "weights": None if weights is None else [float(w) for w in weights],
        },
        "probes": [_probe_state(p) for p in predictor.probes],
        "batch_size": int(batch_size),
        **{k: provenance.get(k) for k in ("dataset", "config_hash", "git_sha")},
    }


def save_classifier(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a classifier dict atomically (a temp file renamed into place)."""
    return ckpt.atomic_save(state, path)


def _load_probe(entry: dict[str, Any], where: str) -> FittedProbe:
    model = build_from_spec(MODULES, entry["spec"], "module", "probe model")
    ckpt.load_state_strict(model, entry["state"], f"probe in '{where}'")
    std = Standardizer(mean=entry["mean"].numpy(), std=entry["std"].numpy())
    return FittedProbe(model=model.eval(), standardizer=std, spec=entry["spec"])


def _build(state: dict[str, Any], where: str) -> SavedClassifier:
    fusion = state["fusion"]
    if fusion["name"] not in CONCATENATED + POOLED:
        raise CheckpointError(
            f"classifier '{where}' uses the fusion '{fusion['name']}', which this mfclr does "
            f"not know ({', '.join(CONCATENATED + POOLED)}); upgrade mfclr"
        )
    encoders = {f: frozen_from_state(e, f"{where} ({f})") for f, e in state["encoders"].items()}
    probes = [_load_probe(p, where) for p in state["probes"]]
    weights = fusion["weights"]
    try:
        predictor = FusionPredictor(
            fusion["name"], list(fusion["formats"]), probes,
            None if weights is None else np.asarray(weights, dtype=np.float64),
        )  # fmt: skip
    except DataError as err:
        raise CheckpointError(f"classifier '{where}': {err}; it is damaged") from None
    missing = [f for f in predictor.formats if f not in encoders]
    if missing:
        raise CheckpointError(f"classifier '{where}' lacks the {missing[0]} encoder; re-save it")
    if any(p.spec["kwargs"]["n_classes"] != len(state["label_names"]) for p in probes):
        raise CheckpointError(f"classifier '{where}' has heads and label names that disagree")
    meta = {k: state.get(k) for k in ("row", "valid_accuracy", "test_accuracy", "dataset",
                                      "config_hash", "git_sha")}  # fmt: skip
    return SavedClassifier(
        encoders=encoders,
        max_chunks={f: int(e["max_chunks"]) for f, e in state["encoders"].items()},
        predictor=predictor,
        label_names=list(state["label_names"]),
        batch_size=int(state["batch_size"]),
        meta=meta,
        source=where,
    )


def load_classifier_file(path: str | Path) -> SavedClassifier:
    """Read a classifier.pt (weights_only) and rebuild it; CheckpointError in one line for a
    missing or unreadable file, another kind or version, or a damaged one."""
    state = ckpt.load(path, ckpt.CLASSIFIER_KIND)
    absent = [k for k in _KEYS if k not in state]
    if absent:
        raise CheckpointError(f"classifier '{path}' lacks '{absent[0]}'; it is damaged, re-save it")
    try:
        return _build(state, str(path))
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise CheckpointError(
            f"classifier '{path}' is damaged ({type(err).__name__}: {err}); re-save it"
        ) from None
