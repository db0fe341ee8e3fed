"""Checkpoints are plain dicts, written atomically and loaded strictly.

Two kinds:
- `mfclr.pretrain`: everything to resume a pretraining run: under "parts", one entry per trained
  input format (encoder spec, frontend spec, encoder, projector) for every pretraining format
  alike (one for a single format, two for cross); optimizer, epoch, resolved config, label
  names, sample rate, metric history. Version 1 files (one format's weights at the top level)
  and version 2 files (no frontend spec) are read too.
- `mfclr.encoder`: the frozen encoder alone, exported for probing and embedding, with what is
  needed to use it without the config that made it (architecture and frontend specs, format,
  sample rate, crop length, label names).
- `mfclr.classifier`: a probe row made usable (`classifier.pt`, see mfclr/probe/bundle.py): its
  frozen encoders, fusion, heads and standardisers, label names, chunking; versioned on its own.
A file of a later version than this mfclr's is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mfclr.errors import CheckpointError
from mfclr.io import atomic_write_with

__all__ = [
    "atomic_save",
    "load",
    "load_state_strict",
    "pretrain_state",
    "pretrain_to_encoder",
]

PRETRAIN_KIND = "mfclr.pretrain"
ENCODER_KIND = "mfclr.encoder"
CLASSIFIER_KIND = "mfclr.classifier"
# 3: every part carries its frontend spec; 2: every format's weights under "parts"; 1: one
# format's weights at the top level.
VERSION = 3
# The newest version of each kind this mfclr reads.
VERSIONS = {PRETRAIN_KIND: VERSION, ENCODER_KIND: VERSION, CLASSIFIER_KIND: 1}
_PART_KEYS = ("encoder_spec", "encoder", "projector")


def pretrain_state(
    *,
    fmt: str,
    epoch: int,
    parts: dict[str, dict[str, Any]],
    optimizer: dict[str, Any],
    config: dict[str, Any],
    label_names: list[str],
    sample_rate: int,
    crop_samples: int,
    history: list[dict[str, Any]],
    git_sha: str | None,
) -> dict[str, Any]:
    """The pretraining checkpoint dict: `parts` maps each trained input format to its
    {"encoder_spec", "encoder", "projector"} (state dicts)."""
    return {
        "kind": PRETRAIN_KIND,
        "version": VERSION,
        "format": fmt,
        "epoch": epoch,
        "parts": parts,
        "optimizer": optimizer,
        "config": config,
        "label_names": label_names,
        "sample_rate": sample_rate,
        "crop_samples": crop_samples,
        "history": history,
        "git_sha": git_sha,
    }


def _upgrade(obj: dict[str, Any]) -> dict[str, Any]:
    """A version-1 single-format pretraining checkpoint in today's layout (weights in parts)."""
    if obj.get("kind") != PRETRAIN_KIND or "parts" in obj or "encoder" not in obj:
        return obj
    part = {k: obj[k] for k in _PART_KEYS if k in obj}
    rest = {k: v for k, v in obj.items() if k not in _PART_KEYS}
    return {**rest, "version": VERSION, "parts": {obj["format"]: part}}


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, then rename: never half a file.

    A full disk or a read-only folder raises StorageError naming `path` (torch alone reports
    an opaque "[enforce fail at inline_container.cc]" RuntimeError).
    """
    return atomic_write_with(path, lambda fh: torch.save(obj, fh), "checkpoint")


def load(path: str | Path, kind: str, fmt: str | None = None) -> dict[str, Any]:
    """Load a checkpoint dict and check it is of `kind` (and of format `fmt` when given)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({type(err).__name__}); "
            "it is not a torch file or is truncated"
        ) from None
    if not isinstance(obj, dict) or "kind" not in obj:
        raise CheckpointError(f"checkpoint '{path}' is not an mfclr checkpoint (no 'kind' key)")
    version, newest = obj.get("version", 1), VERSIONS.get(obj["kind"], VERSION)
    if not isinstance(version, int) or not 1 <= version <= newest:
        raise CheckpointError(
            f"checkpoint '{path}' ({obj['kind']}) has version {version!r}, which this mfclr "
            f"does not read (1 to {newest}); upgrade mfclr or re-create the file"
        )
    obj = _upgrade(obj)
    if obj["kind"] == PRETRAIN_KIND and kind == ENCODER_KIND:
        return pretrain_to_encoder(obj, fmt, path)  # a pretraining checkpoint serves as encoder
    if obj["kind"] != kind:
        raise CheckpointError(
            f"checkpoint '{path}' is a '{obj['kind']}' checkpoint, expected '{kind}'; "
            "pass the right file"
        )
    if fmt is not None and obj.get("format") != fmt:
        raise CheckpointError(
            f"checkpoint '{path}' holds a '{obj.get('format')}' encoder, expected '{fmt}'; "
            f"pass a checkpoint of the {fmt} format"
        )
    return obj


def pretrain_to_encoder(
    state: dict[str, Any], fmt: str | None = None, path: str | Path = "checkpoint"
) -> dict[str, Any]:
    """The exported-encoder dict of input format `fmt` (None: the only one) of a pretraining
    checkpoint (a cross-format checkpoint holds one per format)."""
    cfg, parts = state["config"], _upgrade(state)["parts"]
    if fmt is None and len(parts) == 1:
        fmt = next(iter(parts))
    if fmt not in parts:
        if len(parts) > 1:
            raise CheckpointError(
                f"'{path}' is a cross-format checkpoint with {' and '.join(parts)} "
                "encoders; name one, e.g. audio=PATH"
            )
        raise CheckpointError(
            f"checkpoint '{path}' holds a '{next(iter(parts))}' encoder, expected '{fmt}'; "
            f"pass a checkpoint of the {fmt} format"
        )
    part, out_fmt = parts[fmt], fmt
    return {
        "kind": ENCODER_KIND,
        "version": VERSION,
        "format": out_fmt,
        "encoder_spec": part["encoder_spec"],
        "frontend_spec": part.get("frontend_spec"),
        "encoder": part["encoder"],
        "label_names": state["label_names"],
        "sample_rate": state["sample_rate"],
        "crop_samples": state["crop_samples"],
        "epoch": state["epoch"],
        "pretrain_format": state["format"],
        "config": cfg,
        "git_sha": state.get("git_sha"),
    }


def load_state_strict(module: torch.nn.Module, state: dict[str, Any], what: str) -> None:
    """load_state_dict(strict=True) with a one-line error naming what did not fit."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{what} weights do not fit this architecture ({first[:160]}); "
            "the checkpoint was made for another encoder configuration"
        ) from None
