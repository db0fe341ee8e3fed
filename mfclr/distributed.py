"""Where this process runs: its device, and data-parallel helpers over torch.distributed (set up
by Ray Train or torchrun).

Every helper is safe when torch.distributed is unavailable or not initialised: it then behaves as
a single process of rank 0 in a world of 1. No Ray import here.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from mfclr.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """train.device as a torch device: "auto" is cuda when a GPU is visible, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no GPU is visible; use auto or cpu")
    return torch.device(name)


def is_dist() -> bool:
    """True when torch.distributed is available and its default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def is_rank_zero() -> bool:
    return rank() == 0


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` (N, ...) from every rank along dim 0 -> (N * world, ...), rank order.

    Differentiable: the backward sums, over ranks, the gradients w.r.t. this rank's slice and
    sends them back to it (torch.distributed.nn's all_gather). Every rank must pass the same shape.
    Identity when not distributed or world size is 1.
    """
    if world_size() == 1:
        return x
    # Imported here: torch.distributed.nn pulls in RPC pieces that not every build ships.
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)
