"""Small heads on top of an encoder's (B, num_features) representation.

- `Projector`: SimCLR's projection head g(h) used only by the contrastive loss: an MLP, one
  linear layer, or none (the identity), as in SimCLR's ablation.
- `ProbeHead`: the classifier on frozen (fused) embeddings: linear or a one-hidden-layer MLP.
"""

from __future__ import annotations

from torch import Tensor, nn

from mfclr.config import HEAD_NAMES, PROJECTOR_NAMES
from mfclr.errors import ConfigError


class Projector(nn.Module):
    """Projection head, (B, in_dim) -> (B, out_dim).

    kind "mlp" (SimCLR v1 / CLMR): Linear -> ReLU -> Linear (hidden_dim units). "linear": one
    Linear. "none": the identity (out_dim is in_dim; no weights, an empty state dict).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, kind: str = "mlp") -> None:
        super().__init__()
        if kind not in PROJECTOR_NAMES:
            raise ConfigError(
                f"unknown projector '{kind}'; choose one of {', '.join(PROJECTOR_NAMES)}"
            )
        self.kind, self.in_dim, self.hidden_dim = kind, in_dim, hidden_dim
        self.out_dim = in_dim if kind == "none" else out_dim
        layers: list[nn.Module] = []
        if kind == "mlp":
            layers = [nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True)]
            layers.append(nn.Linear(hidden_dim, out_dim))
        elif kind == "linear":
            layers = [nn.Linear(in_dim, out_dim)]
        self.net = nn.Sequential(*layers)  # empty Sequential: the identity

    def forward(self, h: Tensor) -> Tensor:
        """(B, in_dim) representation -> (B, out_dim) projection."""
        return self.net(h)


class ProbeHead(nn.Module):
    """Classifier on frozen embeddings: (B, in_dim) -> (B, n_classes) logits.

    kind "linear": one Linear. kind "mlp": Linear -> ReLU -> Linear (hidden_dim units).
    """

    def __init__(self, kind: str, in_dim: int, n_classes: int, hidden_dim: int = 512) -> None:
        super().__init__()
        if kind not in HEAD_NAMES:
            raise ConfigError(f"unknown probe head '{kind}'; choose one of {', '.join(HEAD_NAMES)}")
        self.kind, self.in_dim, self.n_classes = kind, in_dim, n_classes
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(in_dim, n_classes))
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, n_classes),
            )

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) embeddings -> (B, n_classes) unnormalised logits."""
        return self.net(x)
