"""Contrastive pretraining of one format: one plain loop, used unchanged by a local run, a Ray
Train worker and the tests.

The loop knows nothing of Ray, Tune or W&B. It is handed a `report(metrics, state)` callable,
called once per epoch on every rank (state is the checkpoint dict on rank zero, None elsewhere),
and an optional `initial_state` to resume from. When torch.distributed is initialised (Ray Train
does it) the model is wrapped in DDP and the sampler shards the tracks.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from mfclr import checkpoint as ckpt
from mfclr import distributed as dist
from mfclr.augment import build_augment, build_frontend
from mfclr.config import CROSS, FORMATS, Config
from mfclr.data import load_dataset
from mfclr.data.clips import PairDataset, iter_track_chunks, make_loader
from mfclr.encoders import build_encoder, encoder_spec
from mfclr.heads import Projector
from mfclr.loss import nt_xent, variance_covariance
from mfclr.probe.embed import embed_tracks
from mfclr.probe.fit import fit_probe
from mfclr.progress import enabled as progress_enabled

log = logging.getLogger(__name__)

# The per-epoch validation metric's key (rank 0 only; Tune's early stopping and best-trial choice).
VAL_METRIC = "val_accuracy"

Report = Callable[[dict[str, Any], "dict[str, Any] | None"], None]

# Test-only fault hook: a worker of rank MFCLR_FAIL_RANK (default 0) exits hard at the start of
# epoch MFCLR_FAIL_AT_EPOCH once, unless the marker file MFCLR_FAIL_MARKER already exists.
_FAIL_AT = "MFCLR_FAIL_AT_EPOCH"


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
        """(N, ...) encoder input -> z (N, projector_dim); or a dict of those per format.
        `with_features`: (h, z) instead, h being the encoder output (N, num_features)."""
        if isinstance(views, torch.Tensor):
            (fmt,) = self.encoders.keys()
            h = self.encoders[fmt](views)
            z = self.projectors[fmt](h)
            return (h, z) if with_features else z
        hs = {f: self.encoders[f](v) for f, v in views.items()}
        zs = {f: self.projectors[f](h) for f, h in hs.items()}
        return (hs, zs) if with_features else zs


def components(fmt: str) -> list[str]:
    """The input formats a pretraining `fmt` trains: itself, or both for `cross`."""
    return list(FORMATS) if fmt == CROSS else [fmt]


@dataclass
class Setup:
    model: ContrastiveModel
    optimizer: torch.optim.Optimizer
    start_epoch: int
    history: list[dict[str, Any]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from mfclr.errors import ConfigError

        raise ConfigError("train.device is 'cuda' but no GPU is visible; use auto or cpu")
    return torch.device(name)


def build_model(cfg: Config, fmt: str) -> ContrastiveModel:
    encoders = {f: build_encoder(f, cfg.model) for f in components(fmt)}
    m = cfg.model
    projectors = {
        f: Projector(e.num_features, m.projector_hidden, m.projector_dim)
        for f, e in encoders.items()
    }
    return ContrastiveModel(encoders, projectors)


def _setup(cfg: Config, fmt: str, device: torch.device, initial_state: dict | None) -> Setup:
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = build_model(cfg, fmt).to(device)
    if "spectrogram" in model.encoders and device.type == "cuda":
        model.encoders["spectrogram"].to(memory_format=torch.channels_last)
    # Adam with the configured lr and weight decay (CLMR's optimizer silently ignored both).
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start, history = 0, []
    if initial_state is not None:
        if initial_state.get("format") != fmt:
            from mfclr.errors import CheckpointError

            raise CheckpointError(
                f"resume checkpoint is for format '{initial_state.get('format')}', not '{fmt}'; "
                "use another output folder"
            )
        parts = initial_state["parts"] if fmt == CROSS else {fmt: initial_state}
        for f, part in parts.items():
            ckpt.load_state_strict(model.encoders[f], part["encoder"], f"{f} encoder")
            ckpt.load_state_strict(model.projectors[f], part["projector"], f"{f} projector")
        opt.load_state_dict(initial_state["optimizer"])
        for group in opt.param_groups:  # the config's values, not the saved ones: a resume with
            group["lr"] = cfg.train.lr  # --override-resume must train as config.yaml says
            group["weight_decay"] = cfg.train.weight_decay
        start, history = int(initial_state["epoch"]), list(initial_state.get("history", []))
    return Setup(model, opt, start, history)


def _checkpoint(cfg: Config, fmt: str, s: Setup, epoch: int, label_names: list[str]) -> dict:
    parts = {
        f: {
            "encoder_spec": encoder_spec(f, cfg.model),
            "encoder": s.model.encoders[f].state_dict(),
            "projector": s.model.projectors[f].state_dict(),
        }
        for f in components(fmt)
    }
    # One format keeps its weights at the top level; cross-format holds one part per format.
    weights = {"parts": parts} if fmt == CROSS else parts[fmt]
    return {
        "kind": ckpt.PRETRAIN_KIND,
        "version": ckpt.VERSION,
        "format": fmt,
        "epoch": epoch,
        **weights,
        "optimizer": s.optimizer.state_dict(),
        "config": cfg.to_dict(),
        "label_names": label_names,
        "sample_rate": cfg.data.sample_rate,
        "crop_samples": cfg.data.crop_samples,
        "history": s.history,
        "git_sha": ckpt.git_sha(),
    }


def _maybe_fail(epoch: int) -> None:
    at = os.environ.get(_FAIL_AT)
    marker = os.environ.get("MFCLR_FAIL_MARKER")
    if at is None or int(at) != epoch or dist.rank() != int(os.environ.get("MFCLR_FAIL_RANK", 0)):
        return
    if marker and os.path.exists(marker):
        return
    if marker:
        open(marker, "w").close()
    log.error("test fault hook: exiting worker at epoch %d", epoch)
    os._exit(17)


def knn_accuracy(
    bank: np.ndarray, bank_y: np.ndarray, query: np.ndarray, query_y: np.ndarray, k: int = 10
) -> float:
    """Cosine kNN (majority vote weighted by similarity) accuracy of `query` against `bank`."""

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)

    sims = unit(query) @ unit(bank).T
    k = min(k, len(bank))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    n_classes = int(max(bank_y.max(), query_y.max())) + 1
    votes = np.zeros((len(query), n_classes))
    for j in range(k):
        np.add.at(
            votes,
            (np.arange(len(query)), bank_y[idx[:, j]]),
            np.take_along_axis(sims, idx[:, j : j + 1], 1)[:, 0] + 1.0,
        )
    return float((votes.argmax(1) == query_y).mean())


def validation_metric(
    cfg: Config, fmt: str, model: ContrastiveModel, device: torch.device
) -> float:
    """Accuracy on valid-split track embeddings (never test): cosine kNN against the train
    embeddings, or a quick probe (head `train.val_head`) fitted on them (`train.val_metric`).
    Cross-format runs are scored on both encoders' embeddings, concatenated."""
    data = load_dataset(cfg.data, "probe")
    feats: dict[str, np.ndarray] = {}
    for split in ("train", "valid"):
        sp, parts = data.splits[split], []
        for f in components(fmt):
            frontend = build_frontend(f, cfg).to(device)
            chunks = iter_track_chunks(sp, cfg.data.crop_samples, cfg.train.max_eval_chunks)
            parts.append(embed_tracks(model.encoders[f], frontend, chunks, len(sp), device=device,
                                      batch_size=cfg.train.batch_size))  # fmt: skip
        feats[split] = np.concatenate(parts, axis=1)
    ty, vy = data.splits["train"].labels, data.splits["valid"].labels
    if cfg.train.val_metric == "knn":
        return knn_accuracy(feats["train"], ty, feats["valid"], vy)
    probe = fit_probe(
        feats["train"],
        ty,
        feats["valid"],
        vy,
        head=cfg.train.val_head,
        n_classes=len(data.label_names),
        cfg=cfg.probe,
    )
    return float(probe.info["valid_accuracy"])


def epoch_line(fmt: str, epochs: int, metrics: dict[str, Any]) -> str:
    """The one-line progress log of an epoch (local runs and Ray workers alike)."""
    val = f"  {VAL_METRIC} {metrics[VAL_METRIC]:.3f}" if VAL_METRIC in metrics else ""
    return (
        f"{fmt} epoch {metrics['epoch']}/{epochs}  loss {metrics['loss']:.4f}  "
        f"{metrics['samples_per_s']:.1f} samples/s{val}"
    )


# Steps between host syncs of the running loss (progress bar, NaN check).
SYNC_EVERY = 10


def _check_finite(total: torch.Tensor, epoch: int) -> None:
    if not math.isfinite(total.item()):
        raise FloatingPointError(
            f"NT-Xent loss became {total.item()} in epoch {epoch + 1}; "
            "lower train.lr or check the input audio"
        )


def _views(
    fmt: str, augments: dict[str, nn.Module], pair: torch.Tensor, gen: torch.Generator
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Augmented views of a batch of crop pairs (B, 2, T): one format gets both crops through its
    chain, stacked (2B, ...); cross-format sends crop 1 to audio and crop 2 to spectrogram."""
    if fmt == CROSS:
        return {
            "audio": augments["audio"](pair[:, 0], generator=gen),
            "spectrogram": _channels_last(augments["spectrogram"](pair[:, 1], generator=gen)),
        }
    views = augments[fmt](pair.transpose(0, 1).reshape(2 * pair.shape[0], -1), generator=gen)
    return _channels_last(views) if fmt == "spectrogram" else views


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


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def pretrain(
    cfg: Config,
    fmt: str,
    report: Report,
    *,
    initial_state: dict[str, Any] | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> ContrastiveModel:
    """Train `fmt`'s encoder + projector with NT-Xent for cfg.train.epochs epochs; `fmt` is
    `audio`, `spectrogram`, or `cross` (both encoders at once, each track's audio view and
    spectrogram view as the positive pair, after Wang & van den Oord 2021).

    Resumes after `initial_state['epoch']` completed epochs when given. Returns the model.
    """
    tc = cfg.train
    device = device or resolve_device(tc.device)
    data = load_dataset(cfg.data, "pretrain")
    label_names = load_dataset(cfg.data, "probe").label_names
    dataset = PairDataset(data.splits["train"], cfg.data.crop_samples, seed=tc.seed)
    world, rank = dist.world_size(), dist.rank()
    per_rank_batch = min(tc.batch_size, max(2, len(dataset) // world))
    sampler = DistributedSampler(dataset, shuffle=True, seed=tc.seed) if world > 1 else None
    loader = make_loader(
        dataset,
        per_rank_batch,
        shuffle=sampler is None,
        seed=tc.seed,
        workers=cfg.data.loader_workers,
        drop_last=True,
        sampler=sampler,
    )
    s = _setup(cfg, fmt, device, initial_state)
    model: nn.Module = s.model
    if world > 1:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if tc.compile:
        model = torch.compile(model)
    augments = {f: build_augment(f, cfg).to(device) for f in components(fmt)}
    gen = torch.Generator(device=device)
    steps = (
        len(loader) if tc.max_steps_per_epoch is None else min(len(loader), tc.max_steps_per_epoch)
    )
    if steps == 0:
        from mfclr.errors import DataError

        raise DataError(
            f"the pretraining split has {len(dataset)} tracks, fewer than one batch "
            f"per worker ({per_rank_batch}); add data or lower train.batch_size"
        )
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    gather = tc.gather_negatives and world > 1
    vc = tc.vc_weight > 0
    for epoch in range(s.start_epoch, tc.epochs):
        _maybe_fail(epoch)
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        elif loader.generator is not None:  # the shuffle order depends on the epoch alone, so a
            loader.generator.manual_seed(
                tc.seed * 7_919 + epoch
            )  # resumed run sees the same batches
        gen.manual_seed(tc.seed * 100_003 + epoch * 1_009 + rank)
        model.train()
        t0, total, n = time.perf_counter(), torch.zeros((), device=device), 0
        bar = tqdm(
            total=steps,
            desc=f"{fmt} epoch {epoch + 1}/{tc.epochs}",
            leave=False,
            disable=not progress_enabled(progress and dist.is_rank_zero()),
            unit="step",
        )
        for step, pair in enumerate(loader):
            if step >= steps:
                break
            pair = pair.to(device, non_blocking=True)  # (B, 2, T) raw crops
            b = pair.shape[0]
            with torch.no_grad():
                views = _views(fmt, augments, pair, gen)
            with amp:
                out = model(views, with_features=vc)
            h, z = out if vc else (None, out)
            if fmt == CROSS:  # the audio view and the spectrogram view of a track are the pair
                za, zs = z["audio"].float(), z["spectrogram"].float()
            else:
                za, zs = z[:b].float(), z[b:].float()
            loss = nt_xent(za, zs, temperature=tc.temperature, gather_distributed=gather)
            if vc:
                feats = list(h.values()) if isinstance(h, dict) else [h]
                loss = loss + tc.vc_weight * sum(variance_covariance(f.float()) for f in feats)
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
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "epochs_done": epoch + 1,
            "steps": (epoch + 1) * steps,
            "loss": total.item() / max(n, 1),
            "lr": s.optimizer.param_groups[0]["lr"],
            "samples_per_s": n * per_rank_batch * world / max(seconds, 1e-9),
            "epoch_seconds": seconds,
        }
        due = tc.eval_every and ((epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs)
        if due and dist.is_rank_zero():
            metrics[VAL_METRIC] = validation_metric(cfg, fmt, s.model, device)
        s.history.append(metrics)
        state = _checkpoint(cfg, fmt, s, epoch + 1, label_names) if dist.is_rank_zero() else None
        report(metrics, state)
    return s.model
