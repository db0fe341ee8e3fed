"""Projector and probe heads: shapes, parameter counts, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mfclr.heads import ProbeHead, Projector, build_probe_head


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_projector_shape_and_layout() -> None:
    torch.manual_seed(0)
    proj = Projector(16, 32, 8)
    assert proj(torch.randn(5, 16)).shape == (5, 8)
    assert [type(m) for m in proj.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert _n_params(proj) == 16 * 32 + 32 + 32 * 8 + 8


def test_projector_optional_batch_norm() -> None:
    proj = Projector(16, 32, 8, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in proj.net)
    assert proj(torch.randn(5, 16)).shape == (5, 8)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("linear", 20 * 4 + 4), ("mlp", 20 * 12 + 12 + 12 * 4 + 4)],
)
def test_probe_head_shapes_and_parameter_counts(kind: str, expected: int) -> None:
    torch.manual_seed(0)
    head = build_probe_head(kind, 20, 4, hidden_dim=12)
    assert isinstance(head, ProbeHead) and head.kind == kind
    assert head(torch.randn(7, 20)).shape == (7, 4)
    assert _n_params(head) == expected


def test_mlp_dropout_is_active_only_in_training() -> None:
    torch.manual_seed(0)
    head = ProbeHead("mlp", 20, 4, hidden_dim=64, dropout=0.5)
    x = torch.randn(7, 20)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))


def test_unknown_probe_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="linear, mlp"):
        ProbeHead("svm", 20, 4)
    with pytest.raises(ValueError, match="dropout"):
        ProbeHead("mlp", 20, 4, dropout=1.0)
