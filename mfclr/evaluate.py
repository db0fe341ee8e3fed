"""Frozen encoders in, a table of probe variants out.

Each format's encoder embeds every track of the probe dataset (the mean over all of its chunks);
the variants are single formats, every configured fusion, and a random-init control (the same
architectures, untrained), each under every probe head. Probe settings are chosen on valid; the
metrics are on test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mfclr import checkpoint as ckpt
from mfclr.augment import build_frontend
from mfclr.config import Config, build_config
from mfclr.data import load_dataset
from mfclr.data.cache import PreparedDataset
from mfclr.data.clips import iter_track_chunks
from mfclr.encoders import build_encoder, encoder_from_spec
from mfclr.errors import CheckpointError
from mfclr.probe.embed import embed_tracks, save_embeddings
from mfclr.probe.fusion import get_fusion
from mfclr.probe.metrics import classification_metrics
from mfclr.probe.stats import accuracy_ci, paired_delta

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
# The random-init control's encoder-set name and row-name prefix.
CONTROL = "random-init"


@dataclass
class FrozenEncoder:
    """An encoder ready to embed: weights, its input frontend, and what it expects."""

    fmt: str
    encoder: nn.Module
    frontend: nn.Module
    sample_rate: int
    crop_samples: int
    source: str


def load_frozen(path: str | Path, fmt: str | None = None) -> FrozenEncoder:
    """An exported encoder (or a pretraining checkpoint) as a FrozenEncoder."""
    state = ckpt.load(path, ckpt.ENCODER_KIND, fmt)
    encoder = encoder_from_spec(state["encoder_spec"])
    ckpt.load_state_strict(encoder, state["encoder"], f"encoder in '{path}'")
    enc_cfg = build_config(state["config"])
    return FrozenEncoder(
        state["format"],
        encoder.eval(),
        build_frontend(state["format"], enc_cfg),
        state["sample_rate"],
        state["crop_samples"],
        str(path),
    )


def random_frozen(cfg: Config, fmt: str) -> FrozenEncoder:
    """The random-init control: the same architecture and seed as pretraining, never trained."""
    torch.manual_seed(cfg.train.seed)
    encoder = build_encoder(fmt, cfg.model).eval()
    return FrozenEncoder(
        fmt,
        encoder,
        build_frontend(fmt, cfg),
        cfg.data.sample_rate,
        cfg.data.crop_samples,
        "random-init",
    )


def embed_splits(
    frozen: FrozenEncoder,
    data: PreparedDataset,
    cfg: Config,
    device: torch.device,
    *,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Track-level embeddings (split -> (n_tracks, D)) of every split of the probe dataset."""
    if frozen.sample_rate != data.sample_rate:
        raise CheckpointError(
            f"encoder '{frozen.source}' was trained at {frozen.sample_rate} Hz but the probe data "
            f"is at {data.sample_rate} Hz; set data.sample_rate={frozen.sample_rate}"
        )
    encoder, frontend = frozen.encoder.to(device), frozen.frontend.to(device)
    out = {}
    for split in SPLITS:
        sp = data.splits[split]
        chunks = iter_track_chunks(sp, frozen.crop_samples, cfg.train.max_eval_chunks)
        out[split] = embed_tracks(
            encoder,
            frontend,
            chunks,
            len(sp),
            device=device,
            batch_size=cfg.train.batch_size,
            progress=progress,
        )
    return out


def _variants(cfg: Config, formats: list[str]) -> list[tuple[str, str, list[str]]]:
    """(row name, fusion, formats) for single formats, each fusion, and the random control."""
    rows = [(f, "none", [f]) for f in formats]
    if len(formats) > 1:
        for fusion in cfg.probe.fusions:
            rows.append(("fused" if fusion == "concat" else f"fused-{fusion}", fusion, formats))
    return rows


def _row_name(kind: str, name: str) -> str:
    """`audio` / `fused-average` for trained encoders; `cross-audio` for another set; the
    controls are `random-init-audio`, `random-init` (fused, concat), `random-init-average`."""
    if kind == "trained":
        return name
    if kind == CONTROL and name.startswith("fused"):
        return CONTROL + name.removeprefix("fused")
    return f"{kind}-{name}"


def _embed_sets(
    cfg: Config, sets: dict[str, dict[str, FrozenEncoder]], data: PreparedDataset,
    out_dir: Path, device: torch.device,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:  # fmt: skip
    """kind -> format -> split -> (n, D), each also saved as embeddings/<prefix><format>.npz."""
    labels = {s: data.splits[s].labels for s in SPLITS}
    feats: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for kind, encs in sets.items():
        feats[kind] = {}
        for fmt, frozen in sorted(encs.items()):
            log.info("embedding %s tracks with the %s %s encoder", data.name, kind, fmt)
            feats[kind][fmt] = embed_splits(frozen, data, cfg, device)
            prefix = "" if kind == "trained" else f"{kind}-".replace("random-init-", "random-")
            save_embeddings(
                out_dir / "embeddings" / f"{prefix}{fmt}.npz", feats[kind][fmt], labels,
                data.label_names, {s: data.splits[s].track_ids for s in SPLITS},
                {"format": fmt, "encoder": frozen.source, "encoders": kind},
            )  # fmt: skip
    return feats


def evaluate(
    cfg: Config,
    encoders: dict[str, FrozenEncoder],
    out_dir: str | Path,
    device: torch.device | None = None,
    *,
    extra: dict[str, dict[str, FrozenEncoder]] | None = None,
) -> list[dict[str, Any]]:
    """Embed, fit every probe variant on train (settings chosen on valid), score on test.

    `encoders` are the separately trained ones (rows `audio`, `spectrogram`, `fused`, ...);
    each `extra` set (`cross`: both encoders of a cross-format run; a compare variant such as
    `ntxent`) adds the same rows with its name as a prefix (`cross-audio`, `ntxent-fused`, ...);
    the random-init controls follow, and every other row gets its paired difference to them.
    """
    out_dir = Path(out_dir)
    device = device or torch.device("cpu")
    data = load_dataset(cfg.data, "probe")
    labels = {s: data.splits[s].labels for s in SPLITS}
    sets = {"trained": encoders, **(extra or {})}
    sets = {k: v for k, v in sets.items() if v}
    formats = sorted({f for encs in sets.values() for f in encs})
    if cfg.probe.random_init_control:
        sets[CONTROL] = {f: random_frozen(cfg, f) for f in formats}
    feats = _embed_sets(cfg, sets, data, out_dir, device)
    variants = []
    for kind, encs in sets.items():
        for name, fusion, fmts in _variants(cfg, sorted(encs)):
            variants.append((kind, _row_name(kind, name), fusion, fmts))
    rows = []
    for head in cfg.probe.heads:
        for kind, name, fusion, fmts in variants:
            sub = {f: feats[kind][f] for f in fmts}
            result = get_fusion("concat" if fusion == "none" else fusion)(
                sub, labels, head, cfg.probe, len(data.label_names)
            )
            metrics = classification_metrics(labels["test"], result.probs, data.label_names)
            correct = (result.probs.argmax(axis=1) == labels["test"]).astype(int)
            rows.append({"name": name, "fusion": fusion, "head": head, "formats": fmts,
                         "encoders": kind, "valid_accuracy": result.info.get("valid_accuracy"),
                         **metrics, "accuracy_ci95": list(accuracy_ci(correct)),
                         "test_correct": correct.tolist(), "probe_info": result.info})  # fmt: skip
            log.info("%-18s %-7s accuracy %.3f  macro mAP %.3f", name, head,
                     metrics["accuracy"], metrics["macro_map"])  # fmt: skip
    return add_control_deltas(rows)


def add_control_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every trained row the paired test-accuracy difference to its random-init
    counterpart (same head, fusion and formats): `control`, `delta_vs_control`, `delta_ci95`
    and `beats_control` (the interval lies above zero)."""
    controls = {
        (r["head"], r["fusion"], tuple(r["formats"])): r
        for r in rows
        if r.get("encoders") == CONTROL
    }
    for r in rows:
        c = controls.get((r["head"], r["fusion"], tuple(r["formats"])))
        if r.get("encoders") == CONTROL or c is None:
            continue
        delta, ci = paired_delta(r["test_correct"], c["test_correct"])
        r.update(control=c["name"], delta_vs_control=delta, delta_ci95=list(ci),
                 beats_control=ci[0] > 0)  # fmt: skip
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
        row = {k: first[k] for k in ("name", "fusion", "head", "formats", "encoders")}
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
