"""The contrastive model of one pretraining format: an encoder + projector per input format."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mfclr.config import Config
from mfclr.formats import build_encoder, components
from mfclr.heads import Projector


class ContrastiveModel(nn.Module):
    """Encoder + projector per format. One format: `forward(x)` on both views concatenated, so
    BatchNorm sees one batch (DDP-safe). Cross-format: `forward({fmt: views})` -> {fmt: z}."""

    def __init__(self, encoders: dict[str, nn.Module], projectors: dict[str, nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.projectors = nn.ModuleDict(projectors)

    def forward(
        self, views: torch.Tensor | dict[str, torch.Tensor], with_features: bool = False
    ) -> Any:
        """(N, ...) encoder input -> z (N, projector_dim; num_features without a projector), or
        a dict of those per format.
        `with_features`: (h, z) instead, h being the encoder output (N, num_features)."""
        if isinstance(views, torch.Tensor):
            (fmt,) = self.encoders.keys()
            h = self.encoders[fmt](views)
            z = self.projectors[fmt](h)
            return (h, z) if with_features else z
        hs = {f: self.encoders[f](v) for f, v in views.items()}
        zs = {f: self.projectors[f](h) for f, h in hs.items()}
        return (hs, zs) if with_features else zs


def build_model(cfg: Config, fmt: str) -> ContrastiveModel:
    """Fresh encoders and projectors for `fmt`'s components (seed with torch.manual_seed)."""
    encoders = {f: build_encoder(f, cfg) for f in components(fmt, cfg)}
    m = cfg.model
    projectors = {
        f: Projector(e.num_features, m.projector_hidden, m.projector_dim, kind=m.projector)
        for f, e in encoders.items()
    }
    return ContrastiveModel(encoders, projectors)
