"""NT-Xent against a hand-written double-loop reference, plus its behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfclr.loss import NTXentLoss, nt_xent


def reference_nt_xent(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """SimCLR's definition, anchor by anchor, in float64 NumPy."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        positive = (i + n) % n2
        denominator = 0.0
        for k in range(n2):
            if k != i:
                denominator += math.exp(float(z[i] @ z[k]) / temperature)
        total += -math.log(math.exp(float(z[i] @ z[positive]) / temperature) / denominator)
    return total / n2


@pytest.mark.parametrize(
    ("n", "d", "tau"),
    [(1, 4, 0.5), (2, 3, 0.1), (5, 8, 0.5), (8, 16, 1.0), (16, 32, 0.07)],
)
def test_matches_the_reference(n: int, d: int, tau: float) -> None:
    g = torch.Generator().manual_seed(n * 100 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = nt_xent(z1, z2, temperature=tau).item()
    assert got == pytest.approx(reference_nt_xent(z1.numpy(), z2.numpy(), tau), rel=1e-5, abs=1e-6)
    assert NTXentLoss(tau)(z1, z2).item() == pytest.approx(got, rel=1e-6)


def test_scale_invariant_and_float32_from_half_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    ref = nt_xent(z1, z2)
    assert nt_xent(3.0 * z1, 0.2 * z2).item() == pytest.approx(ref.item(), rel=1e-5)
    low = nt_xent(z1.bfloat16(), z2.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(ref.item(), rel=2e-2)


def test_random_views_give_about_log_2n_minus_1() -> None:
    # Near-orthogonal random embeddings: every similarity ~ 0, so each anchor's loss ~ ln(2N - 1).
    n = 16
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(n, 8192, generator=g), torch.randn(n, 8192, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(math.log(2 * n - 1), abs=0.05)


def test_aligned_views_give_a_low_loss() -> None:
    n, tau = 8, 0.1
    z = torch.eye(n, 16)  # orthonormal rows; both views identical
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    loss = nt_xent(z, z.clone(), temperature=tau).item()
    assert loss == pytest.approx(expected, rel=1e-4)
    assert loss < 1e-2 < math.log(2 * n - 1)


def test_symmetric_in_the_two_views() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), rel=1e-6)


def test_temperature_sharpens_the_loss() -> None:
    # Aligned views: a lower temperature widens the positive's margin, so the loss falls.
    # Random views: the positive is no closer than the negatives, and a lower temperature lets
    # the hardest negatives dominate, so the loss rises.
    z = torch.eye(4, 8)
    aligned = [nt_xent(z, z, temperature=t).item() for t in (1.0, 0.5, 0.1)]
    assert aligned[0] > aligned[1] > aligned[2]
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert nt_xent(z1, z2, temperature=0.05).item() > nt_xent(z1, z2, temperature=1.0).item()


def test_gradient_flows_to_both_views_and_pulls_positives_together() -> None:
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(6, 8, generator=g, requires_grad=True)
    z2 = torch.randn(6, 8, generator=g, requires_grad=True)
    loss = nt_xent(z1, z2)
    loss.backward()
    assert z1.grad is not None and z2.grad is not None
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with torch.no_grad():  # one gradient step lowers the loss
        assert nt_xent(z1 - 0.5 * z1.grad, z2 - 0.5 * z2.grad) < loss


def test_gather_flag_is_a_no_op_in_one_process() -> None:
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert torch.equal(nt_xent(z1, z2, gather_distributed=True), nt_xent(z1, z2))


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(8), torch.randn(8))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 8), torch.randn(4, 8), temperature=0.0)
