"""Frozen encoders: an exported encoder (or a pretraining checkpoint) loaded strictly, or the
random-init control, each with its deterministic input frontend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mfclr import checkpoint as ckpt
from mfclr.config import Config, build_config
from mfclr.encoders import build_encoder, encoder_from_spec
from mfclr.encoders.frontends import build_frontend

# The random-init control's encoder-set name, source and row-name prefix.
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
        CONTROL,
    )
