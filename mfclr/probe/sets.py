"""The encoder sets of one probe table: the trained sets, the random-init control of each (built
from each encoder's own architecture, frontend and seed), and their track embeddings, each
encoder embedding the probe tracks at its own sample rate and crop length.

A set is format -> FrozenEncoder: `trained` (the separately pretrained encoders), `cross`, a
compare variant. Sets whose encoders share one control (the same specs, seed, rate and crop)
share one control set, `random-init`; another set's control is `random-init-<set>`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mfclr.config import SPLITS, Config
from mfclr.data import Datasets
from mfclr.data.store import PreparedDataset
from mfclr.errors import ConfigError, DataError
from mfclr.formats.frozen import CONTROL, FrozenEncoder
from mfclr.probe.embed import embed_splits, save_embeddings

log = logging.getLogger(__name__)
Sets = dict[str, dict[str, FrozenEncoder]]
Features = dict[str, dict[str, dict[str, np.ndarray]]]  # set -> format -> split -> (n, D)


def is_control(kind: str) -> bool:
    return kind == CONTROL or kind.startswith(CONTROL + "-")


def check_label_sets(sets: Sets) -> None:
    """Refuse encoders trained beside different label sets: one table cannot describe them."""
    seen: tuple[str, list[str]] | None = None
    for encs in sets.values():
        for frozen in encs.values():
            if frozen.label_names is None:
                continue
            if seen is None:
                seen = (frozen.source, frozen.label_names)
            elif sorted(frozen.label_names) != sorted(seen[1]):
                raise ConfigError(
                    f"encoders '{seen[0]}' ({len(seen[1])} classes) and '{frozen.source}' "
                    f"({len(frozen.label_names)} classes) were trained beside different label "
                    "sets; probe them in separate tables (one --out each)"
                )


def with_controls(sets: Sets) -> tuple[Sets, dict[str, str]]:
    """`sets` followed by their control sets, and set -> the name of its control set. A set
    joins the first control set that holds no other control for any of its formats (so one
    `random-init` set serves every set of the same architectures, and fuses their formats)."""
    controls: Sets = {}
    control_of: dict[str, str] = {}
    for kind, encs in sets.items():
        found = next((name for name, ctrl in controls.items() if _fits(ctrl, encs)), None)
        if found is None:
            found = CONTROL if not controls else f"{CONTROL}-{kind}"
            controls[found] = {}
        for f, frozen in encs.items():
            if f not in controls[found]:
                controls[found][f] = frozen.control()
        control_of[kind] = found
    return {**sets, **controls}, control_of


def _fits(controls: dict[str, FrozenEncoder], encs: dict[str, FrozenEncoder]) -> bool:
    """Whether `controls` holds no other control for any encoder of `encs`."""
    return all(f not in controls or controls[f].same_control(e) for f, e in encs.items())


def data_for(
    frozen: FrozenEncoder, cfg: Config, data: PreparedDataset, datasets: Datasets
) -> PreparedDataset:
    """The probe tracks at `frozen`'s own sample rate and crop (`data` itself when they match),
    checked to be the same tracks in the same splits."""
    if (frozen.sample_rate, frozen.crop_samples) == (data.sample_rate, cfg.data.crop_samples):
        return data
    seconds = frozen.crop_samples / frozen.sample_rate
    own = cfg.data.model_copy(update={"sample_rate": frozen.sample_rate, "clip_seconds": seconds})
    other = datasets.get(own, "probe")
    for split in SPLITS:
        a, b = data.splits[split], other.splits[split]
        if a.track_ids != b.track_ids or not np.array_equal(a.labels, b.labels):
            raise DataError(
                f"the probe tracks at {frozen.sample_rate} Hz (encoder '{frozen.source}') differ "
                f"from those at {data.sample_rate} Hz in the {split} split (a file decodes at one "
                "rate and not at the other); fix or remove the unusable files (mfclr data info)"
            )
    return other


def embedding_file(kind: str, fmt: str) -> str:
    """The file name of set `kind`'s `fmt` embeddings: audio.npz, random-audio.npz,
    cross-audio.npz, random-cross-audio.npz."""
    prefix = "" if kind == "trained" else f"{kind}-".replace(f"{CONTROL}-", "random-")
    return f"{prefix}{fmt}.npz"


def embed_sets(
    cfg: Config, sets: Sets, data: PreparedDataset, datasets: Datasets, out_dir: Path,
    device: torch.device,
) -> Features:  # fmt: skip
    """set -> format -> split -> (n, D), each also saved as embeddings/<prefix><format>.npz."""
    labels = {s: data.splits[s].labels for s in SPLITS}
    feats: Features = {}
    for kind, encs in sets.items():
        feats[kind] = {}
        for fmt, frozen in sorted(encs.items()):
            log.info("embedding %s tracks with the %s %s encoder", data.name, kind, fmt)
            own = data_for(frozen, cfg, data, datasets)
            feats[kind][fmt] = embed_splits(frozen, own, cfg, device)
            save_embeddings(
                out_dir / "embeddings" / embedding_file(kind, fmt), feats[kind][fmt], labels,
                data.label_names, {s: data.splits[s].track_ids for s in SPLITS},
                {"format": fmt, "encoder": frozen.source, "encoders": kind,
                 "sample_rate": frozen.sample_rate},
            )  # fmt: skip
    return feats
