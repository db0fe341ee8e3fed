"""The loop alone, driven with a fake `report` and `validate`: no run folder, no Ray, no W&B."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mfclr import checkpoint as ckpt
from mfclr.train.loop import VAL_METRIC, pretrain
from mfclr.train.model import ContrastiveModel
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]


class FakeReport:
    """Records every (metrics, state) the loop reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.calls.append((dict(metrics), state))


@pytest.fixture(scope="module")
def cache(tiny_cache: Path) -> Path:
    return tiny_cache


def test_the_loop_reports_each_epoch_and_validates_when_due(cache: Path) -> None:
    cfg = tiny_config(cache, "train.epochs=3", "train.eval_every=2", "train.max_steps_per_epoch=2")
    report, seen = FakeReport(), []

    def validate(model: ContrastiveModel) -> float:
        seen.append(type(model).__name__)
        return 0.25 * len(seen)

    model = pretrain(cfg, "audio", report, validate=validate, device=torch.device("cpu"),
                     progress=False)  # fmt: skip
    assert isinstance(model, ContrastiveModel) and list(model.encoders) == ["audio"]
    assert [m["epoch"] for m, _ in report.calls] == [1, 2, 3]
    assert [m["steps"] for m, _ in report.calls] == [2, 4, 6]
    # Due after epoch 2 (every 2) and after the last one; the unwrapped model is validated.
    assert seen == ["ContrastiveModel", "ContrastiveModel"]
    assert [m.get(VAL_METRIC) for m, _ in report.calls] == [None, 0.25, 0.5]
    for metrics, state in report.calls:  # rank zero: every report carries its checkpoint
        assert state is not None and state["epoch"] == metrics["epoch"]
        assert state["kind"] == ckpt.PRETRAIN_KIND and set(state["parts"]) == {"audio"}
        assert state["history"][-1] == metrics
    # The last state is the returned model's weights.
    last = report.calls[-1][1]["parts"]["audio"]["encoder"]
    for key, value in model.encoders["audio"].state_dict().items():
        assert torch.equal(last[key], value), key


def test_without_validate_no_metric_and_resume_continues(cache: Path) -> None:
    cfg = tiny_config(cache, "train.epochs=2", "train.eval_every=1", "train.max_steps_per_epoch=2")
    first = FakeReport()
    pretrain(cfg, "spectrogram", first, device=torch.device("cpu"), progress=False)
    assert all(VAL_METRIC not in m for m, _ in first.calls)
    more = cfg.with_overrides({"train.epochs": 3})
    resumed = FakeReport()
    pretrain(more, "spectrogram", resumed, initial_state=first.calls[-1][1],
             device=torch.device("cpu"), progress=False)  # fmt: skip
    assert [m["epoch"] for m, _ in resumed.calls] == [3]
    assert [h["epoch"] for h in resumed.calls[-1][1]["history"]] == [1, 2, 3]


def test_the_loop_imports_neither_ray_wandb_nor_the_probe() -> None:
    code = (
        "import sys, mfclr.train.loop; "
        "bad = [m for m in ('ray', 'wandb', 'mfclr.probe', 'mfclr.tracking') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
