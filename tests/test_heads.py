"""Projector and probe heads: shapes, parameter counts, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mfclr.errors import ConfigError
from mfclr.heads import ProbeHead, Projector


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_projector_shape_and_layout() -> None:
    torch.manual_seed(0)
    proj = Projector(16, 32, 8)
    assert proj(torch.randn(5, 16)).shape == (5, 8)
    assert [type(m) for m in proj.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert _n_params(proj) == 16 * 32 + 32 + 32 * 8 + 8


def test_linear_and_no_projector_for_the_ablation() -> None:
    torch.manual_seed(0)
    linear, none = Projector(16, 32, 8, kind="linear"), Projector(16, 32, 8, kind="none")
    h = torch.randn(5, 16)
    assert linear(h).shape == (5, 8) and linear.out_dim == 8
    assert _n_params(linear) == 16 * 8 + 8
    assert torch.equal(none(h), h) and none.out_dim == 16 and none.state_dict() == {}
    with pytest.raises(ConfigError, match="unknown projector 'deep'; choose one of mlp"):
        Projector(16, 32, 8, kind="deep")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("linear", 20 * 4 + 4), ("mlp", 20 * 12 + 12 + 12 * 4 + 4)],
)
def test_probe_head_shapes_and_parameter_counts(kind: str, expected: int) -> None:
    torch.manual_seed(0)
    head = ProbeHead(kind, 20, 4, hidden_dim=12)
    assert isinstance(head, ProbeHead) and head.kind == kind
    assert head(torch.randn(7, 20)).shape == (7, 4)
    assert _n_params(head) == expected


def test_mlp_layout_is_deterministic_in_training() -> None:
    torch.manual_seed(0)
    head = ProbeHead("mlp", 20, 4, hidden_dim=64)
    assert [type(m) for m in head.net] == [nn.Linear, nn.ReLU, nn.Linear]
    x = torch.randn(7, 20)
    head.train()
    assert torch.equal(head(x), head(x))  # no dropout: train and eval give the same logits
    head.eval()
    assert torch.equal(head(x), head.train()(x))


def test_unknown_probe_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="linear, mlp"):
        ProbeHead("svm", 20, 4)
