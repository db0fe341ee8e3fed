"""distributed.py fallbacks, and NT-Xent across 2 CPU processes (gloo) against 1 process.

One `torch.multiprocessing.spawn` of 2 ranks (module-scoped) trains nothing: each rank runs one
forward/backward of a small linear layer wrapped in DDP on its half of a fixed batch, with and
without gathered negatives, and saves its loss and DDP-averaged gradients for the checks below.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mfclr import distributed as D
from mfclr.loss import nt_xent

WORLD, N, IN, OUT, TAU = 2, 4, 6, 5, 0.5


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The concatenated batch: two views, (WORLD * N, IN) each; rank r owns rows r*N:(r+1)*N."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * N, IN, generator=g), torch.randn(WORLD * N, IN, generator=g)


def _layer() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(IN, OUT)


def _per_anchor_losses(z1: torch.Tensor, z2: torch.Tensor) -> list[float]:
    """Loss of each of the 2M anchors [view 1 rows; view 2 rows], by an explicit loop."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    m2 = len(z)
    out = []
    for i in range(m2):
        sims = [math.exp(float(z[i] @ z[k]) / TAU) for k in range(m2)]
        positive = sims[(i + m2 // 2) % m2]
        out.append(-math.log(positive / (sum(sims) - sims[i])))
    return out


def _one_step(rank: int, gather: bool) -> dict[str, Any]:
    x1, x2 = _batch()
    layer = _layer()
    model = DistributedDataParallel(layer)
    rows = slice(rank * N, (rank + 1) * N)
    # Both views in one forward: the usual DDP pattern (one forward per backward).
    z1, z2 = model(torch.cat([x1[rows], x2[rows]])).split(N)
    loss = nt_xent(z1, z2, temperature=TAU, gather_distributed=gather)
    loss.backward()  # DDP all-reduces and averages the gradients over ranks here
    return {"loss": loss.item(), "weight": layer.weight.grad.clone(), "bias": layer.bias.grad}


def _worker(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    # A file store, not MASTER_PORT: a free port picked before the spawn can be taken by another
    # process before rank 0 binds it (in the full suite rank 0 then aborted inside gloo).
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        result = {"gather": _one_step(rank, True), "local": _one_step(rank, False)}
        x = torch.tensor([[float(rank)]], requires_grad=True)
        gathered = D.all_gather_with_grad(x)
        (gathered * torch.tensor([[1.0], [10.0]])).sum().backward()
        result["helpers"] = {
            "is_dist": D.is_dist(),
            "rank": D.rank(),
            "world_size": D.world_size(),
            "is_rank_zero": D.is_rank_zero(),
            "gathered": gathered.detach().flatten().tolist(),
            # Every rank weighs rank 0's entry by 1 and rank 1's by 10; the backward sums over
            # both ranks' losses, so rank 0 gets 2 * 1 and rank 1 gets 2 * 10.
            "grad": x.grad.item(),
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    try:
        mp.spawn(_worker, args=(str(out / "store"), str(out)), nprocs=WORLD, join=True)
    except mp.ProcessExitedException:
        # On fresh clones a rank has aborted inside gloo at start-up (SIGABRT, "terminate called
        # without an active exception") in about half of full-suite runs and never alone; the
        # cause is not found yet (session 5 note). One new start, with a new store; a second
        # failure fails the tests.
        mp.spawn(_worker, args=(str(out / "store-2"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    """One process on the whole concatenated batch (WORLD * N rows per view)."""
    x1, x2 = _batch()
    layer = _layer()
    z1, z2 = layer(x1), layer(x2)
    loss = nt_xent(z1, z2, temperature=TAU)
    loss.backward()
    anchors = _per_anchor_losses(z1.detach(), z2.detach())
    return {
        "loss": loss.item(),
        "anchors": anchors,
        "weight": layer.weight.grad,
        "bias": layer.bias.grad,
    }


def test_gathered_loss_is_this_ranks_slice_of_the_single_process_loss(
    ranks: list[dict[str, Any]], single: dict[str, Any]
) -> None:
    m = WORLD * N
    for r, res in enumerate(ranks):
        mine = [single["anchors"][i] for i in range(r * N, (r + 1) * N)]
        mine += [single["anchors"][m + i] for i in range(r * N, (r + 1) * N)]
        assert res["gather"]["loss"] == pytest.approx(sum(mine) / len(mine), rel=1e-5)
    mean = sum(res["gather"]["loss"] for res in ranks) / WORLD
    assert mean == pytest.approx(single["loss"], rel=1e-5)


def test_gathered_ddp_gradient_equals_the_single_process_gradient(
    ranks: list[dict[str, Any]], single: dict[str, Any]
) -> None:
    for res in ranks:
        torch.testing.assert_close(res["gather"]["weight"], single["weight"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(res["gather"]["bias"], single["bias"], rtol=1e-5, atol=1e-6)


def test_local_negatives_give_a_different_gradient(
    ranks: list[dict[str, Any]], single: dict[str, Any]
) -> None:
    x1, x2 = _batch()
    layer = _layer()
    for r, res in enumerate(ranks):
        rows = slice(r * N, (r + 1) * N)
        local = nt_xent(layer(x1[rows]), layer(x2[rows]), temperature=TAU).item()
        assert res["local"]["loss"] == pytest.approx(local, rel=1e-5)
    torch.testing.assert_close(ranks[0]["local"]["weight"], ranks[1]["local"]["weight"])
    assert not torch.allclose(ranks[0]["local"]["weight"], single["weight"], rtol=1e-3, atol=1e-4)


def test_helpers_inside_a_process_group(ranks: list[dict[str, Any]]) -> None:
    for r, res in enumerate(ranks):
        h = res["helpers"]
        assert h["is_dist"] and h["rank"] == r and h["world_size"] == WORLD
        assert h["is_rank_zero"] == (r == 0)
        assert h["gathered"] == [0.0, 1.0]
        assert h["grad"] == pytest.approx(2.0 * (1.0, 10.0)[r])


def test_helpers_without_a_process_group() -> None:
    assert not D.is_dist()
    assert (D.rank(), D.world_size(), D.is_rank_zero()) == (0, 1, True)
    x = torch.randn(3, 2, requires_grad=True)
    assert D.all_gather_with_grad(x) is x
