"""The recipe's parts: the lr schedule, the spectrogram frequency shift, the variance/covariance
term, and the learning-curve benchmark end to end on a labelled folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mfclr.augment.spectrogram import FreqShift, SpectrogramChain
from mfclr.config import load_config
from mfclr.errors import ConfigError
from mfclr.loss import variance_covariance
from mfclr.train.loop import lr_at

ROOT = Path(__file__).resolve().parents[2]


def test_warmup_then_cosine_reaches_zero_and_constant_stays() -> None:
    lrs = [lr_at(s, 100, 1e-3, 10, "cosine") for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # never rises again
    assert lrs[-1] < 1e-6
    assert {lr_at(s, 100, 1e-3, 0, "constant") for s in range(100)} == {1e-3}


def test_frequency_shift_moves_whole_bins_and_fills_the_floor() -> None:
    x = torch.rand(16, 1, 12, 5) + 0.5  # no zeros: a zero can only come from the fill
    shift = FreqShift(p=1.0, max_bins=3)
    k = shift.draw(x, torch.Generator().manual_seed(1))
    out = shift(x, torch.Generator().manual_seed(1))
    assert k.abs().max() <= 3 and (k != 0).any()
    for i in range(16):
        s = int(k[i])
        if s >= 0:
            assert torch.equal(out[i, :, s:], x[i, :, : 12 - s])
            assert (out[i, :, :s] == 0).all()
        else:
            assert torch.equal(out[i, :, :s], x[i, :, -s:])
            assert (out[i, :, s:] == 0).all()
    assert FreqShift(p=0.0, max_bins=3)(x) is x


def test_the_chain_applies_the_shift_and_config_checks_its_size() -> None:
    shift = ["augment.spectrogram.freq_shift.p=1.0", "augment.spectrogram.freq_shift.max_bins=4"]
    cfg = load_config(preset="tiny", overrides=shift)
    chain = SpectrogramChain(cfg.augment.spectrogram, cfg.mel, cfg.data.sample_rate)
    assert chain.freq_shift.max_bins == 4
    with pytest.raises(ConfigError, match="freq_shift.max_bins"):
        load_config(preset="tiny", overrides=["augment.spectrogram.freq_shift.max_bins=32"])


def test_variance_covariance_is_zero_for_white_features_and_punishes_collapse() -> None:
    g = torch.Generator().manual_seed(0)
    white = torch.randn(4096, 8, generator=g) * 1.5  # std above 1, uncorrelated
    collapsed = torch.randn(4096, 1, generator=g).repeat(1, 8) * 0.1  # one direction, small
    assert variance_covariance(white).item() < 0.05
    assert variance_covariance(collapsed).item() > 0.8
    h = collapsed.clone().requires_grad_(True)
    variance_covariance(h).backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.slow  # an end-to-end run of the instrument: `make test` only
def test_learning_curve_runs_on_a_labelled_folder(tmp_path: Path) -> None:
    from tests.data_fixtures import make_labelled

    root = make_labelled(tmp_path / "music", {"a": 10, "b": 10}, seconds=2.0)
    out = tmp_path / "curve"
    argv = [sys.executable, "-m", "experiments.learning_curve", "--preset", "tiny",
            "--format", "spectrogram", "--steps", "0,2,4", "--seeds", "0,1", "--out", str(out),
            "--set", "data.probe.kind=folder", "--set", f"data.probe.root={root}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}",
            "--set", "train.batch_size=4"]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [p["step"] for p in summary["points"]] == [0, 2, 4]
    assert all(p["n_seeds"] == 2 for p in summary["points"])
    for p in summary["points"]:
        for key in ("linear_test", "knn_test", "linear_valid", "knn_valid"):
            assert 0.0 <= p[key] <= 1.0
    first = summary["points"][0]
    assert first["train_seconds"] == 0 and summary["points"][-1]["train_seconds"] > 0
    assert summary["control_linear_test"][0] == pytest.approx(first["linear_test"])
    assert (out / "curve.png").stat().st_size > 5000
    saved = json.loads((out / "curve.json").read_text())
    assert sorted(saved["runs"]) == ["0", "1"]
    # The two seeds' controls are different untrained networks: their scores need not agree,
    # but each run starts from its own step-0 point.
    assert all(run[0]["step"] == 0 for run in saved["runs"].values())
    assert np.isfinite([p["effective_rank"] for p in summary["points"]]).all()


@pytest.mark.slow
@pytest.mark.slow  # an end-to-end run of the instrument: `make test` only
def test_speed_of_learning_reports_both_formats_and_the_presets_speed(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "experiments.speed_of_learning", "--preset", "tiny",
            "--seeds", "0", "--steps", "0,2,4", "--speed-presets", "tiny",
            "--out", str(tmp_path / "out"),
            "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for fmt in ("audio", "spectrogram"):
        r = result["formats"][fmt]
        assert r["budget_steps"] == 9 and r["last_point_step"] == 4  # tiny: 3 epochs of 3 steps
        crossed = r["cross_control_plus_5_step"]
        assert r["crosses_within_budget"] == (crossed is not None and crossed <= 9)
        assert (tmp_path / "out" / fmt / "curve.png").is_file()
        assert result["steps_per_second"]["tiny"][fmt] > 0
