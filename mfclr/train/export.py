"""Exporting frozen encoders from a pretraining checkpoint, and the one naming rule for them.

A run of one format exports `<stem>.pt`; a cross-format run, which trains both encoders, exports
`<stem>-audio.pt` and `<stem>-spectrogram.pt`. The stem is `encoder` in run folders and Ray
Train runs, and the pretraining format in a sweep's `best/` folder (`best/audio.pt`,
`best/cross-audio.pt`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

import torch

from mfclr import checkpoint as ckpt

ENCODER_STEM = "encoder"


class OutputFilesystem(Protocol):
    """What export needs of a remote filesystem (pyarrow.fs.FileSystem has it)."""

    def open_output_stream(self, path: str) -> Any: ...


def encoder_file(fmt: str, part: str, stem: str = ENCODER_STEM) -> str:
    """The file name of input format `part`'s encoder exported from a `fmt` pretraining."""
    return f"{stem}.pt" if part == fmt else f"{stem}-{part}.pt"


def export_encoders(
    state: dict[str, Any],
    folder: str | Path,
    *,
    stem: str = ENCODER_STEM,
    filesystem: OutputFilesystem | None = None,
) -> dict[str, str]:
    """Write every encoder of a pretraining checkpoint `state` into `folder` (a local folder,
    or a path on `filesystem`); returns input format -> the written path."""
    fmt, written = state["format"], {}
    for part in state["parts"]:
        target = f"{str(folder).rstrip('/')}/{encoder_file(fmt, part, stem)}"
        exported = ckpt.pretrain_to_encoder(state, part)
        if filesystem is None:
            written[part] = str(ckpt.atomic_save(exported, target))
            continue
        buffer = io.BytesIO()  # object stores have no rename: one upload of the whole file
        torch.save(exported, buffer)
        with filesystem.open_output_stream(target) as out:
            out.write(buffer.getvalue())
        written[part] = target
    return written
