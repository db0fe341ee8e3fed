"""Checkpoints are plain dicts, written atomically and loaded strictly.

Two kinds:
- `mfclr.pretrain`: everything to resume a pretraining run (encoder, projector, optimizer, epoch,
  resolved config, label names, sample rate, metric history).
- `mfclr.encoder`: the frozen encoder alone, exported for probing and embedding, with what is
  needed to use it without the config that made it (architecture spec, format, sample rate,
  crop length, mel settings, label names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mfclr.errors import CheckpointError
from mfclr.io import atomic_write_with, git_sha

__all__ = ["atomic_save", "git_sha", "load", "load_state_strict", "pretrain_to_encoder"]

PRETRAIN_KIND = "mfclr.pretrain"
ENCODER_KIND = "mfclr.encoder"
VERSION = 1


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
    """The exported-encoder dict for a pretraining checkpoint (`fmt` picks one encoder of a
    cross-format checkpoint, which holds one per format)."""
    cfg = state["config"]
    part, out_fmt = state, state["format"]
    if "parts" in state:
        if fmt not in state["parts"]:
            raise CheckpointError(
                f"'{path}' is a cross-format checkpoint with {' and '.join(state['parts'])} "
                "encoders; name one, e.g. audio=PATH"
            )
        part, out_fmt = state["parts"][fmt], fmt
    elif fmt is not None and fmt != out_fmt:
        raise CheckpointError(
            f"checkpoint '{path}' holds a '{out_fmt}' encoder, expected '{fmt}'; "
            f"pass a checkpoint of the {fmt} format"
        )
    return {
        "kind": ENCODER_KIND,
        "version": VERSION,
        "format": out_fmt,
        "encoder_spec": part["encoder_spec"],
        "encoder": part["encoder"],
        "label_names": state["label_names"],
        "sample_rate": state["sample_rate"],
        "crop_samples": state["crop_samples"],
        "mel": cfg["mel"],
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
