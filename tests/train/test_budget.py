"""A budget in optimiser steps (train.steps): every dataset gets that many steps in whole epochs,
the budget named last wins over the other, and sweeps keep budget.epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DistributedSampler

from mfclr.config import load_config
from mfclr.data import Datasets
from mfclr.errors import ConfigError
from mfclr.train.budget import epochs_for, resolve_epochs, steps_per_epoch
from mfclr.train.local import pretrain_local
from mfclr.train.loop import load_batches
from mfclr.tune.spec import load_sweep
from tests.helpers import read_metrics, tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tiny_cache: Path) -> Path:
    return tiny_cache


SIZES = [(96, 16, 1), (50, 16, 1), (97, 16, 3), (10, 16, 1), (7, 32, 4), (225, 32, 2)]


@pytest.mark.parametrize(("n", "batch", "world"), SIZES)
def test_steps_per_epoch_counts_the_batches_of_one_rank(n: int, batch: int, world: int) -> None:
    per_rank_batch = min(batch, max(2, n // world))
    shard = len(DistributedSampler(range(n), num_replicas=world, rank=0)) if world > 1 else n
    assert steps_per_epoch(n, batch, world) == shard // per_rank_batch
    assert steps_per_epoch(n, batch, world, cap=1) == min(1, shard // per_rank_batch)


def test_the_fewest_whole_epochs_that_hold_the_steps() -> None:
    assert [epochs_for(s, 7) for s in (1, 7, 8, 350)] == [1, 1, 2, 50]
    assert epochs_for(350, 25) == 14


def test_the_loop_and_the_budget_agree_on_steps_per_epoch(cache: Path) -> None:
    cfg = tiny_config(cache)
    batches = load_batches(cfg, Datasets())
    assert batches.steps == steps_per_epoch(len(batches.dataset), cfg.train.batch_size)


def test_a_step_budget_trains_at_least_that_many_steps_in_whole_epochs(
    cache: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(cache, "train.steps=10", "train.eval_every=0")
    per_epoch = load_batches(cfg, Datasets()).steps
    resolved = resolve_epochs(cfg)
    assert resolved.train.epochs == -(-10 // per_epoch) and resolve_epochs(resolved) == resolved
    pretrain_local(cfg, "spectrogram", tmp_path, progress=False)
    steps = [r["steps"] for r in read_metrics(tmp_path)]
    assert len(steps) == resolved.train.epochs and 10 <= steps[-1] < 10 + per_epoch
    saved = load_config(tmp_path / "config.yaml")
    assert (saved.train.steps, saved.train.epochs) == (10, resolved.train.epochs)


def test_the_same_step_budget_gives_a_smaller_dataset_more_epochs(cache: Path) -> None:
    big = tiny_config(cache, "train.steps=12")
    small = tiny_config(cache, "train.steps=12", "data.probe.embedded.clips_per_class=6")
    assert resolve_epochs(small).train.epochs > resolve_epochs(big).train.epochs


def test_the_budget_named_last_wins() -> None:
    demo = load_config(preset="demo")
    assert demo.train.steps == 350
    epochs = load_config(preset="demo", overrides=["train.epochs=5"])
    assert (epochs.train.steps, epochs.train.epochs) == (None, 5)
    with pytest.raises(ConfigError, match="sets both train.steps and train.epochs"):
        load_config(preset="demo", overrides=["train.epochs=5", "train.steps=20"])
    audio = load_config(preset="demo", overrides=["per_format.audio.train.epochs=3"])
    assert audio.train.steps == 350 and audio.for_format("spectrogram").train.steps == 700
    assert (audio.for_format("audio").train.steps, audio.for_format("audio").train.epochs) == (
        None,
        3,
    )


def test_a_formats_own_budget_replaces_the_presets_one_for_that_format(tmp_path: Path) -> None:
    # The demo gives audio 1400 steps of its own; epochs named for audio, on the command line or
    # in a config file, replace them (both set, the steps would silently count).
    path = tmp_path / "c.yaml"
    path.write_text("per_format: {audio: {train.epochs: 2}}\n")
    over = ["per_format.audio.train.epochs=2"]
    for cfg in (load_config(path, preset="demo"), load_config(preset="demo", overrides=over)):
        assert steps_and_epochs(cfg, "audio") == (None, 2)
        assert steps_and_epochs(cfg, "spectrogram")[0] == 700


def steps_and_epochs(cfg, fmt: str) -> tuple[int | None, int]:
    own = cfg.for_format(fmt).train
    return own.steps, own.epochs


def test_a_budget_named_for_all_formats_replaces_the_presets_per_format_budget(
    tmp_path: Path,
) -> None:
    demo = load_config(preset="demo")
    assert steps_and_epochs(demo, "spectrogram")[0] == 700  # the preset's own, below replaced
    quick = load_config(preset="demo", overrides=["train.steps=20"])
    assert steps_and_epochs(quick, "spectrogram")[0] == steps_and_epochs(quick, "audio")[0] == 20
    epochs = load_config(preset="demo", overrides=["train.epochs=2"])
    assert steps_and_epochs(epochs, "spectrogram") == steps_and_epochs(epochs, "audio") == (None, 2)
    # the same layer may still give one format its own budget
    own = load_config(
        preset="demo", overrides=["train.steps=20", "per_format.spectrogram.train.steps=40"]
    )
    assert (steps_and_epochs(own, "audio")[0], steps_and_epochs(own, "spectrogram")[0]) == (20, 40)
    path = tmp_path / "c.yaml"
    path.write_text("train: {steps: 30}\n")
    from_file = load_config(path, preset="demo")
    assert steps_and_epochs(from_file, "spectrogram")[0] == 30
    # a layer that names no budget leaves the per-format one alone
    lr = load_config(preset="demo", overrides=["train.lr=0.002"])
    assert steps_and_epochs(lr, "spectrogram")[0] == 700


def test_a_config_file_with_epochs_replaces_a_presets_step_budget(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 4}\n")
    cfg = load_config(path, preset="demo")
    assert (cfg.train.steps, cfg.train.epochs) == (None, 4)


def test_a_sweep_budgets_in_epochs_whatever_the_presets_steps() -> None:
    over = ["train.steps=40", "per_format.audio.train.steps=700"]
    spec, base = load_sweep(ROOT / "sweeps" / "smoke.yaml", over)
    assert base.train.steps is None
    assert base.for_format("audio").train.steps is None
    assert base.for_format("audio").train.epochs == spec.budget.epochs
