"""Frozen encoders: an exported encoder (or a pretraining checkpoint) loaded strictly, or a
random-init control, each with its deterministic input frontend as its first layer.

An encoder file carries the specs of its architecture and of its frontend (version 3), so it
embeds audio without the config that trained it, and its random-init control is built from the
same specs and seed: the same architecture, frontend, sample rate and crop, never trained.
Version-2 files (no frontend spec) get their frontend from the config saved inside them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfclr import checkpoint as ckpt
from mfclr.config import Config, build_config
from mfclr.encoders import encoder_from_spec
from mfclr.encoders.frontends import frontend_from_spec
from mfclr.errors import CheckpointError, ConfigError
from mfclr.formats import encoder_spec, frontend_spec

# The random-init control's encoder-set name, source and row-name prefix.
CONTROL = "random-init"


@dataclass
class FrozenEncoder:
    """An encoder ready to embed: weights, its input frontend, and what it expects.

    `encoder_spec` / `frontend_spec` rebuild the architecture; `seed` is the pretraining seed
    (the control's initialisation); `label_names` the labels it was trained beside (None: not
    known, e.g. a control)."""

    fmt: str
    encoder: nn.Module
    frontend: nn.Module
    sample_rate: int
    crop_samples: int
    source: str
    encoder_spec: dict[str, Any]
    frontend_spec: dict[str, Any]
    seed: int = 0
    label_names: list[str] | None = None

    def embed_input(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) waveforms at `sample_rate` -> (B, D) representations."""
        return self.encoder(self.frontend(wave))

    def control(self) -> FrozenEncoder:
        """The random-init control of this encoder: its own specs and seed, untrained."""
        torch.manual_seed(self.seed)
        encoder = encoder_from_spec(self.encoder_spec).eval()
        return replace(self, encoder=encoder, frontend=frontend_from_spec(self.frontend_spec),
                       source=CONTROL, label_names=None)  # fmt: skip

    def same_control(self, other: FrozenEncoder) -> bool:
        """Whether `other`'s control is this one's (same format, specs, seed, rate and crop)."""
        keys = ("fmt", "encoder_spec", "frontend_spec", "seed", "sample_rate", "crop_samples")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def load_frozen(path: str | Path, fmt: str | None = None) -> FrozenEncoder:
    """An exported encoder (or a pretraining checkpoint) as a FrozenEncoder."""
    return frozen_from_state(ckpt.load(path, ckpt.ENCODER_KIND, fmt), str(path))


def frozen_from_state(state: dict[str, Any], source: str) -> FrozenEncoder:
    """The FrozenEncoder of an exported-encoder dict (an encoder.pt's, or one inside a saved
    classifier); `source` names where it came from in messages."""
    encoder = encoder_from_spec(state["encoder_spec"])
    ckpt.load_state_strict(encoder, state["encoder"], f"encoder in '{source}'")
    front = state.get("frontend_spec")
    config = state.get("config") or {}
    if front is None:  # a version-2 file: the frontend from the config saved inside it
        try:
            front = frontend_spec(state["format"], build_config(config))
        except ConfigError as err:
            raise CheckpointError(f"encoder '{source}' holds no frontend and {err}") from None
    seed = state.get("seed", (config.get("train") or {}).get("seed", 0))
    return FrozenEncoder(
        state["format"],
        encoder.eval(),
        frontend_from_spec(front),
        state["sample_rate"],
        state["crop_samples"],
        source,
        encoder_spec=state["encoder_spec"],
        frontend_spec=front,
        seed=int(seed),
        label_names=list(state.get("label_names") or []) or None,
    )


def encoder_state(frozen: FrozenEncoder) -> dict[str, Any]:
    """`frozen` as an exported-encoder dict (what `frozen_from_state` reads back): its specs,
    its weights as CPU tensors, rate, crop, seed and label names; plain values otherwise, so a
    file holding it loads with `torch.load(weights_only=True)`."""
    weights = {k: v.detach().cpu().clone() for k, v in frozen.encoder.state_dict().items()}
    return {
        "kind": ckpt.ENCODER_KIND,
        "version": ckpt.VERSION,
        "format": frozen.fmt,
        "encoder_spec": frozen.encoder_spec,
        "frontend_spec": frozen.frontend_spec,
        "encoder": weights,
        "sample_rate": int(frozen.sample_rate),
        "crop_samples": int(frozen.crop_samples),
        "seed": int(frozen.seed),
        "source": frozen.source,
        "label_names": list(frozen.label_names or []),
    }


def frozen_from(fmt: str, encoder: nn.Module, cfg: Config, source: str) -> FrozenEncoder:
    """An in-memory encoder of `fmt` (trained under `cfg`) as a FrozenEncoder."""
    spec, front = encoder_spec(fmt, cfg), frontend_spec(fmt, cfg)
    return FrozenEncoder(fmt, encoder.eval(), frontend_from_spec(front), cfg.data.sample_rate,
                         cfg.data.crop_samples, source, encoder_spec=spec, frontend_spec=front,
                         seed=cfg.train.seed)  # fmt: skip


def random_frozen(cfg: Config, fmt: str) -> FrozenEncoder:
    """A random-init encoder of `fmt` as `cfg` would pretrain it (seed train.seed), untrained."""
    torch.manual_seed(cfg.train.seed)
    return frozen_from(fmt, encoder_from_spec(encoder_spec(fmt, cfg)), cfg, CONTROL)
