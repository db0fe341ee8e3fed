"""embed_tracks: the mean over all chunks of a track, batching-invariant, deterministic; export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mfclr.errors import DataError
from mfclr.probe.embed import embed_tracks, load_embeddings, save_embeddings

T = 48  # samples per chunk


class ConvPool(nn.Module):
    """A tiny nonlinear encoder: (B, T) -> Conv1d -> ReLU -> global mean pool -> (B, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, kernel_size=5, stride=2)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x.unsqueeze(1)))).mean(dim=2)


def _chunks(n_tracks: int, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(i, rng.standard_normal((1 + i % 4, T)).astype(np.float32)) for i in range(n_tracks)]


def test_linear_encoder_gives_exact_mean_over_chunks() -> None:
    torch.manual_seed(0)
    enc = nn.Linear(T, 6)
    chunks = _chunks(7)
    out = embed_tracks(enc, nn.Identity(), chunks, 7, device="cpu", batch_size=4)
    w, b = enc.weight.detach().double().numpy(), enc.bias.detach().double().numpy()
    for i, arr in chunks:
        expected = (arr.astype(np.float64) @ w.T + b).mean(axis=0)
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)
    assert out.shape == (7, 6) and out.dtype == np.float32


def test_batching_across_tracks_matches_one_by_one_and_is_deterministic() -> None:
    torch.manual_seed(0)
    enc = ConvPool()
    enc.bn.running_mean.uniform_(-0.5, 0.5)  # non-trivial eval-mode BN statistics
    chunks = _chunks(9)
    one_by_one = np.stack(
        [embed_tracks(enc, nn.Identity(), [(0, a)], 1, device="cpu")[0] for _, a in chunks]
    )
    for bs in (1, 3, 64):
        batched = embed_tracks(enc, nn.Identity(), chunks, 9, device="cpu", batch_size=bs)
        np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)
    first = embed_tracks(enc, nn.Identity(), chunks, 9, device="cpu", batch_size=3)
    again = embed_tracks(enc, nn.Identity(), chunks, 9, device="cpu", batch_size=3)
    assert np.array_equal(first, again)


def test_eval_mode_used_and_modes_restored() -> None:
    enc = ConvPool().train()
    front = nn.Dropout(p=0.9).train()  # in train mode this would randomise the output
    chunks = _chunks(3)
    a = embed_tracks(enc, front, chunks, 3, device="cpu")
    b = embed_tracks(enc, front, chunks, 3, device="cpu")
    assert np.array_equal(a, b)
    assert enc.training and front.training


def test_track_seen_twice_is_pooled_and_missing_track_is_an_error() -> None:
    enc = nn.Linear(T, 4)
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((2, T), dtype=np.float32)
    x2 = rng.standard_normal((3, T), dtype=np.float32)
    pooled = embed_tracks(enc, nn.Identity(), [(0, x1), (0, x2)], 1, device="cpu")
    whole = embed_tracks(enc, nn.Identity(), [(0, np.concatenate([x1, x2]))], 1, device="cpu")
    np.testing.assert_allclose(pooled, whole, rtol=1e-6, atol=1e-6)
    with pytest.raises(DataError, match="got no chunks"):
        embed_tracks(enc, nn.Identity(), [(0, x1)], 2, device="cpu")
    with pytest.raises(DataError, match="track index 5"):
        embed_tracks(enc, nn.Identity(), [(5, x1)], 2, device="cpu")


def test_save_load_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    feats = {
        "audio/train": rng.standard_normal((4, 3)).astype(np.float32),
        "audio/test": rng.standard_normal((2, 3)).astype(np.float32),
        "spectrogram/train": rng.standard_normal((4, 5)).astype(np.float32),
    }
    labels = {"train": np.array([0, 1, 2, 1]), "test": np.array([2, 0])}
    ids = {"train": ["a.0", "b.1", "c.2", "b.3"], "test": ["c.9", "a.7"]}
    path = save_embeddings(tmp_path / "emb.npz", feats, labels, ["a", "b", "c"], ids, {"sr": 22050})
    got = load_embeddings(path)
    assert got.label_names == ["a", "b", "c"] and got.meta == {"sr": 22050}
    assert got.track_ids == ids
    for k, v in feats.items():
        assert np.array_equal(got.feats[k], v)
    assert np.array_equal(got.labels["train"], labels["train"])
    assert got.features()["spectrogram"]["train"].shape == (4, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npz"]  # no temp file left


def test_save_and_load_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="split 'train' has 2 labels"):
        save_embeddings(tmp_path / "e.npz", {"train": np.zeros((3, 2))},
                        {"train": np.zeros(2)}, ["a"], {"train": ["x", "y"]}, {})  # fmt: skip
    with pytest.raises(DataError, match="does not exist"):
        load_embeddings(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not an mfclr embedding file"):
        load_embeddings(bad)
