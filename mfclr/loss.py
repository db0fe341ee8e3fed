"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

Tensors in, scalar out. With `gather_distributed=True` the negatives come from every rank.

Gradient convention across ranks (what makes 2 ranks x batch N equal 1 process x batch 2N):
each rank returns the MEAN over its own 2N anchors, computed against all 2N*W gathered
embeddings. The differentiable all-gather's backward SUMS the gradients that every rank's loss
sends into this rank's embeddings, so after backward rank r holds d(sum_s loss_s)/d(theta) along
its own forward path; DDP's gradient AVERAGE over W ranks then yields
(1/W) * d(sum_s loss_s)/d(theta) = d(mean over all 2NW anchors)/d(theta), exactly the
single-process gradient on the concatenated batch. No extra scaling is needed (or allowed).

Unlike CLMR, the self-similarity mask is built from the actual gathered shapes and this rank's
anchor offset, so the loss does not stick at ln(2N) on several GPUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mfclr.distributed import all_gather_with_grad, rank, world_size


def _check(z1: Tensor, z2: Tensor, temperature: float) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
        raise ValueError(
            f"nt_xent needs two (N, D) projections of the same shape, got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"nt_xent temperature must be > 0, got {temperature}")


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    gather_distributed: bool = False,
) -> Tensor:
    """SimCLR NT-Xent loss of two views.

    Args:
        z1, z2: (N, D) projections of view 1 and view 2; row i of each is a positive pair.
            Any dtype; the loss is computed in float32 after L2 normalisation.
        temperature: tau > 0 dividing the cosine similarities.
        gather_distributed: when torch.distributed is initialised with world size W > 1, gather
            z1 and z2 from every rank (differentiably) and use all 2NW embeddings as candidates.
            Every rank must pass the same N. A no-op in a single process.

    Returns:
        () scalar: mean over this rank's 2N anchors of
        -log(exp(s_pos / tau) / sum_{k != anchor} exp(s_k / tau)), s = cosine similarity,
        where the sum runs over the other 2N - 1 (or 2NW - 1) embeddings.
    """
    _check(z1, z2, temperature)
    n = z1.shape[0]
    z1 = F.normalize(z1.float(), dim=1)
    z2 = F.normalize(z2.float(), dim=1)
    if gather_distributed and world_size() > 1:
        z1_all, z2_all = all_gather_with_grad(z1), all_gather_with_grad(z2)
        offset = rank() * n
    else:
        z1_all, z2_all, offset = z1, z2, 0
    m = z1_all.shape[0]  # N * W embeddings per view
    anchors = torch.cat([z1, z2])  # (2N, D)
    candidates = torch.cat([z1_all, z2_all])  # (2M, D): [view 1 of all ranks; view 2 of all ranks]
    logits = anchors @ candidates.T / temperature  # (2N, 2M)

    local = torch.arange(n, device=z1.device) + offset  # this rank's rows among the M
    self_idx = torch.cat([local, local + m])  # where each anchor meets itself
    pos_idx = torch.cat([local + m, local])  # and its other view
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(2 * n, device=z1.device), self_idx] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, pos_idx)


class NTXentLoss(nn.Module):
    """Module form of `nt_xent`: forward((N, D), (N, D)) -> () scalar."""

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"NTXentLoss temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, self.temperature, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


def variance_covariance(h: Tensor, eps: float = 1e-4) -> Tensor:
    """VICReg's variance and covariance terms (Bardes et al. 2022) on representations h (N, D):
    a hinge pulling each dimension's batch std up to 1, plus the mean squared off-diagonal
    covariance. Added to NT-Xent it keeps h from spanning few directions (dimensional
    collapse, Jing et al. 2022). Computed on this rank's batch only."""
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"variance_covariance expects (N >= 2, D) features, got {tuple(h.shape)}")
    h = h - h.mean(dim=0)
    std = torch.sqrt(h.var(dim=0) + eps)
    variance = F.relu(1.0 - std).mean()
    n, d = h.shape
    cov = (h.T @ h) / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return variance + off.pow(2).sum() / d
