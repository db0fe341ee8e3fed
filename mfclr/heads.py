"""Small heads on top of an encoder's (B, num_features) representation.

- `Projector`: SimCLR's MLP projection head g(h) used only by the contrastive loss.
- `ProbeHead`: the classifier on frozen (fused) embeddings: linear or a one-hidden-layer MLP.
"""

from __future__ import annotations

from torch import Tensor, nn

from mfclr.errors import ConfigError

PROBE_KINDS: tuple[str, ...] = ("linear", "mlp")


class Projector(nn.Module):
    """SimCLR projection head: Linear -> ReLU -> Linear, (B, in_dim) -> (B, out_dim).

    `batch_norm=True` inserts BatchNorm1d after the hidden Linear (SimCLR v2 style); the default
    keeps the SimCLR v1 / CLMR head.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        hidden: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        if batch_norm:
            hidden.append(nn.BatchNorm1d(hidden_dim))
        self.net = nn.Sequential(*hidden, nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, h: Tensor) -> Tensor:
        """(B, in_dim) representation -> (B, out_dim) projection."""
        return self.net(h)


class ProbeHead(nn.Module):
    """Classifier on frozen embeddings: (B, in_dim) -> (B, n_classes) logits.

    kind "linear": one Linear. kind "mlp": Linear -> ReLU -> Dropout -> Linear (hidden_dim units).
    """

    def __init__(
        self,
        kind: str,
        in_dim: int,
        n_classes: int,
        hidden_dim: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in PROBE_KINDS:
            raise ConfigError(
                f"unknown probe head '{kind}'; choose one of {', '.join(PROBE_KINDS)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"probe head dropout must lie in [0, 1), got {dropout}")
        self.kind, self.in_dim, self.n_classes = kind, in_dim, n_classes
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(in_dim, n_classes))
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),  # kept even at p=0 so state-dict keys never depend on it
                nn.Linear(hidden_dim, n_classes),
            )

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) embeddings -> (B, n_classes) unnormalised logits."""
        return self.net(x)


def build_probe_head(
    kind: str, in_dim: int, n_classes: int, hidden_dim: int = 512, dropout: float = 0.0
) -> ProbeHead:
    """A fresh `ProbeHead` (seed with torch.manual_seed for reproducible init)."""
    return ProbeHead(kind, in_dim, n_classes, hidden_dim=hidden_dim, dropout=dropout)
