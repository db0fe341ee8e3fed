"""Contrastive pretraining of one format: one plain loop, used unchanged by a local run, a Ray
Train worker and the tests.

The loop knows nothing of Ray, Tune, W&B or the probe. It is handed a `report(metrics, state)`
callable, called once per epoch on every rank (state is the checkpoint dict on rank zero, None
elsewhere), an optional `validate(model) -> float` (called on rank zero every
`train.eval_every` epochs; its value is reported as `val_accuracy`) and an optional
`initial_state` to resume from. When torch.distributed is initialised (Ray Train does it) the
model is wrapped in DDP and the sampler shards the tracks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from mfclr import checkpoint as ckpt
from mfclr import distributed as dist
from mfclr.config import CROSS, Config, TrainConfig
from mfclr.data import Datasets
from mfclr.data.clips import PairDataset, make_loader
from mfclr.errors import CheckpointError, DataError
from mfclr.formats import build_augment, components, encoder_spec, frontend_spec, get_format
from mfclr.io import git_sha
from mfclr.loss import nt_xent, variance_covariance
from mfclr.progress import enabled as progress_enabled
from mfclr.train.keys import VAL_METRIC, Report
from mfclr.train.model import ContrastiveModel, build_model

# Steps between host syncs of the running loss (progress bar, NaN check).
SYNC_EVERY = 10

Validate = Callable[[ContrastiveModel], float]


@dataclass
class Setup:
    """The trained state: model, optimiser, where to start, the metrics so far."""

    model: ContrastiveModel
    optimizer: torch.optim.Optimizer
    start_epoch: int
    history: list[dict[str, Any]]


@dataclass
class Batches:
    """This rank's share of the pretraining split and how many steps an epoch takes."""

    dataset: PairDataset
    loader: DataLoader
    sampler: DistributedSampler | None
    steps: int
    per_rank_batch: int
    label_names: list[str]


# ----------------------------------------------------------------------------- phases


def load_batches(cfg: Config, datasets: Datasets) -> Batches:
    """Phase 1, data: the crop-pair loader of this rank (sharded when distributed)."""
    tc = cfg.train
    data = datasets.get(cfg.data, "pretrain")
    label_names = datasets.get(cfg.data, "probe").label_names
    dataset = PairDataset(data.splits["train"], cfg.data.crop_samples, seed=tc.seed)
    world = dist.world_size()
    per_rank_batch = min(tc.batch_size, max(2, len(dataset) // world))
    sampler = DistributedSampler(dataset, shuffle=True, seed=tc.seed) if world > 1 else None
    loader = make_loader(dataset, per_rank_batch, shuffle=sampler is None, seed=tc.seed,
                         workers=cfg.data.loader_workers, drop_last=True,
                         sampler=sampler)  # fmt: skip
    cap = tc.max_steps_per_epoch
    steps = len(loader) if cap is None else min(len(loader), cap)
    if steps == 0:
        raise DataError(
            f"the pretraining split has {len(dataset)} tracks, fewer than one batch "
            f"per worker ({per_rank_batch}); add data or lower train.batch_size"
        )
    return Batches(dataset, loader, sampler, steps, per_rank_batch, label_names)


def setup(cfg: Config, fmt: str, device: torch.device, initial_state: dict | None) -> Setup:
    """Phase 2, model: identical initial weights on every rank, Adam, and the resumed state."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, fmt).to(device)
    for f, encoder in model.encoders.items():
        if get_format(f).channels_last and device.type == "cuda":
            encoder.to(memory_format=torch.channels_last)
    # Adam with the configured lr and weight decay (CLMR's optimizer silently ignored both).
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    if initial_state is None:
        return Setup(model, opt, 0, [])
    if initial_state.get("format") != fmt:
        raise CheckpointError(
            f"resume checkpoint is for format '{initial_state.get('format')}', not '{fmt}'; "
            "use another output folder"
        )
    parts = initial_state["parts"]
    if sorted(parts) != sorted(components(fmt, cfg)):
        raise CheckpointError(f"resume checkpoint holds {sorted(parts)} encoders, not "
                              f"{components(fmt, cfg)}; use another output folder")  # fmt: skip
    for f, part in parts.items():
        ckpt.load_state_strict(model.encoders[f], part["encoder"], f"{f} encoder")
        ckpt.load_state_strict(model.projectors[f], part["projector"], f"{f} projector")
    opt.load_state_dict(initial_state["optimizer"])
    for group in opt.param_groups:  # the config's values, not the saved ones: a resume with
        group["lr"] = cfg.train.lr  # --override-resume must train as config.yaml says
        group["weight_decay"] = cfg.train.weight_decay
    return Setup(model, opt, int(initial_state["epoch"]), list(initial_state.get("history", [])))


def _wrap(model: nn.Module, device: torch.device, compile_model: bool) -> nn.Module:
    """The module the steps call: DDP when distributed, torch.compile when asked."""
    if dist.world_size() > 1:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(model) if compile_model else model


def checkpoint_state(cfg: Config, fmt: str, s: Setup, epoch: int, label_names: list[str]) -> dict:
    """The pretraining checkpoint after `epoch` epochs (one layout for every format)."""
    parts = {
        f: {
            "encoder_spec": encoder_spec(f, cfg),
            "frontend_spec": frontend_spec(f, cfg),
            "encoder": s.model.encoders[f].state_dict(),
            "projector": s.model.projectors[f].state_dict(),
        }
        for f in components(fmt, cfg)
    }
    return ckpt.pretrain_state(fmt=fmt, epoch=epoch, parts=parts,
                               optimizer=s.optimizer.state_dict(), config=cfg.to_dict(),
                               label_names=label_names, sample_rate=cfg.data.sample_rate,
                               crop_samples=cfg.data.crop_samples, history=list(s.history),
                               git_sha=git_sha())  # fmt: skip


# ----------------------------------------------------------------------------- one step


def lr_at(step: int, total: int, lr: float, warmup: int, schedule: str) -> float:
    """The learning rate of optimiser step `step` (0-based) of `total`: linear warm-up over
    `warmup` steps, then constant or cosine-decayed to 0 at the last step. A pure function of
    the step, so a resumed run follows the same curve without scheduler state."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "cosine":
        span = max(total - warmup, 1)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))
    return lr


def _view(fmt: str, augments: dict[str, nn.Module], x: torch.Tensor,
          gen: torch.Generator) -> torch.Tensor:  # fmt: skip
    """One format's augmented encoder input, channels_last on CUDA where its entry says so."""
    view = augments[fmt](x, generator=gen)
    if view.is_cuda and get_format(fmt).channels_last:
        return view.contiguous(memory_format=torch.channels_last)
    return view


def _views(
    fmt: str, augments: dict[str, nn.Module], pair: torch.Tensor, gen: torch.Generator
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Augmented views of a batch of crop pairs (B, 2, T): one format gets both crops through its
    chain, stacked (2B, ...); cross-format sends crop 1 to the first format of the pair and crop
    2 to the second (`augments` holds the pair's chains, in order)."""
    if fmt == CROSS:
        first, second = augments
        return {first: _view(first, augments, pair[:, 0], gen),
                second: _view(second, augments, pair[:, 1], gen)}  # fmt: skip
    return _view(fmt, augments, pair.transpose(0, 1).reshape(2 * pair.shape[0], -1), gen)


def _loss(fmt: str, model: nn.Module, views: Any, b: int, tc: TrainConfig) -> torch.Tensor:
    """NT-Xent over the two views of each track (+ the variance/covariance term when weighted)."""
    vc = tc.vc_weight > 0
    out = model(views, with_features=vc)
    h, z = out if vc else (None, out)
    if fmt == CROSS:  # the track's view in each format of the pair is the positive pair
        first, second = tc.cross_pair
        za, zs = z[first].float(), z[second].float()
    else:
        za, zs = z[:b].float(), z[b:].float()
    gather = tc.gather_negatives and dist.world_size() > 1
    loss = nt_xent(za, zs, temperature=tc.temperature, gather_distributed=gather)
    if vc:
        feats = list(h.values()) if isinstance(h, dict) else [h]
        loss = loss + tc.vc_weight * sum(variance_covariance(f.float()) for f in feats)
    return loss


def _check_finite(total: torch.Tensor, epoch: int) -> None:
    if not math.isfinite(total.item()):
        raise FloatingPointError(
            f"NT-Xent loss became {total.item()} in epoch {epoch + 1}; "
            "lower train.lr or check the input audio"
        )


# ----------------------------------------------------------------------------- one epoch


def _seed_epoch(batches: Batches, gen: torch.Generator, seed: int, epoch: int) -> None:
    """Shuffle order and augmentation noise depend on (seed, epoch, rank) alone, so a resumed
    run sees the same batches and views as an uninterrupted one."""
    batches.dataset.set_epoch(epoch)
    if batches.sampler is not None:
        batches.sampler.set_epoch(epoch)
    elif batches.loader.generator is not None:
        batches.loader.generator.manual_seed(seed * 7_919 + epoch)
    gen.manual_seed(seed * 100_003 + epoch * 1_009 + dist.rank())


def train_epoch(
    cfg: Config, fmt: str, s: Setup, step_model: nn.Module, augments: dict[str, nn.Module],
    batches: Batches, gen: torch.Generator, epoch: int, *, device: torch.device, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Phase 3, one pass: the optimiser steps of `epoch` (0-based); returns its metrics."""
    tc, steps = cfg.train, batches.steps
    _seed_epoch(batches, gen, tc.seed, epoch)
    step_model.train()
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    t0, total, n = time.perf_counter(), torch.zeros((), device=device), 0
    bar = tqdm(total=steps, desc=f"{fmt} epoch {epoch + 1}/{tc.epochs}", leave=False, unit="step",
               disable=not progress_enabled(progress and dist.is_rank_zero()))  # fmt: skip
    for step, pair in enumerate(batches.loader):
        if step >= steps:
            break
        pair = pair.to(device, non_blocking=True)  # (B, 2, T) raw crops
        with torch.no_grad():
            views = _views(fmt, augments, pair, gen)
        with amp:
            loss = _loss(fmt, step_model, views, pair.shape[0], tc)
        lr = lr_at(epoch * steps + step, tc.epochs * steps, tc.lr, tc.warmup_steps, tc.schedule)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        total, n = total + loss.detach(), n + 1
        if n % SYNC_EVERY == 0 or n == steps:  # .item() waits for the GPU: not every step
            _check_finite(total, epoch)
            bar.set_postfix(loss=f"{total.item() / n:.3f}")
        bar.update()
    bar.close()
    seconds = time.perf_counter() - t0
    return {"epoch": epoch + 1, "epochs_done": epoch + 1, "steps": (epoch + 1) * steps,
            "loss": total.item() / max(n, 1), "lr": s.optimizer.param_groups[0]["lr"],
            "samples_per_s": n * batches.per_rank_batch * dist.world_size() / max(seconds, 1e-9),
            "epoch_seconds": seconds}  # fmt: skip


def epoch_line(fmt: str, epochs: int, metrics: dict[str, Any]) -> str:
    """The one-line progress log of an epoch (local runs and Ray workers alike)."""
    val = f"  {VAL_METRIC} {metrics[VAL_METRIC]:.3f}" if VAL_METRIC in metrics else ""
    return (
        f"{fmt} epoch {metrics['epoch']}/{epochs}  loss {metrics['loss']:.4f}  "
        f"{metrics['samples_per_s']:.1f} samples/s{val}"
    )


def _validation_due(tc: TrainConfig, epoch: int) -> bool:
    """Every `eval_every` epochs and after the last one (0: never)."""
    return bool(tc.eval_every) and ((epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs)


# ----------------------------------------------------------------------------- the loop


def pretrain(
    cfg: Config,
    fmt: str,
    report: Report,
    *,
    validate: Validate | None = None,
    initial_state: dict[str, Any] | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    datasets: Datasets | None = None,
) -> ContrastiveModel:
    """Train `fmt`'s encoder + projector with NT-Xent for cfg.train.epochs epochs; `fmt` is an
    input format, or `cross` (the two formats of `train.cross_pair` at once, each track's view
    in one as the other's positive, after Wang & van den Oord 2021).

    Resumes after `initial_state['epoch']` completed epochs when given. `datasets`: the process's
    opened datasets (a fresh `Datasets` when None). Returns the model.
    """
    device = device or dist.resolve_device(cfg.train.device)
    batches = load_batches(cfg, datasets or Datasets())
    s = setup(cfg, fmt, device, initial_state)
    step_model = _wrap(s.model, device, cfg.train.compile)
    augments = {f: build_augment(f, cfg).to(device) for f in components(fmt, cfg)}
    gen = torch.Generator(device=device)
    for epoch in range(s.start_epoch, cfg.train.epochs):
        metrics = train_epoch(cfg, fmt, s, step_model, augments, batches, gen, epoch,
                              device=device, progress=progress)  # fmt: skip
        if validate is not None and dist.is_rank_zero() and _validation_due(cfg.train, epoch):
            metrics[VAL_METRIC] = validate(s.model)
        s.history.append(metrics)
        zero = dist.is_rank_zero()
        state = checkpoint_state(cfg, fmt, s, epoch + 1, batches.label_names) if zero else None
        report(metrics, state)
    return s.model
