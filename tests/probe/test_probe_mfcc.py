"""The MFCC baseline row: the DCT is the orthonormal DCT-II, the statistics cover the whole
track, and every trained row is compared with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch

from mfclr.config import MelConfig
from mfclr.data.store import Split, to_int16
from mfclr.probe.mfcc import N_MFCC, dct_matrix, mfcc_stats
from mfclr.probe.variants import add_control_deltas


def test_the_dct_is_scipys_orthonormal_dct_ii() -> None:
    x = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    ours = (torch.from_numpy(x) @ dct_matrix(32, 20)).numpy()
    want = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :20]
    np.testing.assert_allclose(ours, want, atol=1e-5)


def _split(tmp_path: Path, tracks: list[np.ndarray]) -> Split:
    audio = np.concatenate([to_int16(t) for t in tracks])
    path = tmp_path / "split.i16"
    audio.tofile(path)
    lengths = np.array([len(t) for t in tracks])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return Split("test", path, len(audio), offsets, lengths, np.zeros(len(tracks), np.int64),
                 [f"t{i}" for i in range(len(tracks))])  # fmt: skip


def test_the_statistics_cover_the_whole_track(tmp_path: Path) -> None:
    sr, t = 8000, np.arange(8000 * 4) / 8000
    steady = 0.3 * np.sin(2 * np.pi * 440 * t)
    changing = steady.copy()
    changing[-8000:] = 0.3 * np.sin(2 * np.pi * 1500 * t[-8000:])  # only the last second differs
    feats = mfcc_stats(_split(tmp_path, [steady, changing]), MelConfig(n_mels=32, n_fft=512,
                       hop_length=128), sr)  # fmt: skip
    assert feats.shape == (2, 2 * N_MFCC) and np.isfinite(feats).all()
    # The means differ and the std grows: the last second reached the statistics.
    assert np.abs(feats[0, :N_MFCC] - feats[1, :N_MFCC]).max() > 0.05
    assert feats[1, N_MFCC:].sum() > feats[0, N_MFCC:].sum()


def _row(name: str, encoders: str, correct: list[int], fusion: str = "none") -> dict:
    return {"name": name, "encoders": encoders, "head": "linear", "fusion": fusion,
            "formats": [name] if encoders != "mfcc" else ["mfcc"],
            "accuracy": float(np.mean(correct)), "test_correct": correct}  # fmt: skip


def test_trained_rows_get_their_paired_difference_to_the_mfcc_row() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.5).astype(int)
    better = np.where(rng.random(400) < 0.4, 1, base)
    rows = add_control_deltas([_row("audio", "trained", better.tolist()),
                               _row("mfcc", "mfcc", base.tolist())])  # fmt: skip
    audio, mfcc = rows
    assert audio["delta_vs_mfcc"] == pytest.approx(better.mean() - base.mean())
    lo, hi = audio["mfcc_delta_ci95"]
    assert lo > 0 and audio["beats_mfcc"] and "delta_vs_mfcc" not in mfcc
