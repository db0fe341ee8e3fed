"""Clip sampling: random crop pairs (seeded, per epoch), track chunks, the DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import data_config, make_labelled

from mfclr.config import DatasetSpec
from mfclr.data.cache import prepare_dataset
from mfclr.data.clips import PairDataset, chunk_starts, iter_track_chunks, make_loader

CROP = 2000


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clips")
    root = make_labelled(tmp / "music", {"a": 3, "b": 3}, seconds=1.0)  # 8000 samples each
    spec = DatasetSpec(kind="folder", root=str(root), valid_fraction=0.0, test_fraction=0.0)
    return prepare_dataset(spec, data_config(tmp / "cache", spec), progress=False).splits["train"]


def test_pairs_shape_and_two_different_crops(split):
    ds = PairDataset(split, CROP, seed=0)
    pair = ds[2]
    assert len(ds) == 6 and pair.shape == (2, CROP) and pair.dtype == torch.float32
    assert not torch.equal(pair[0], pair[1])
    track = split.track(2)
    for view in pair.numpy():  # each view is a real window of the track
        starts = [s for s in range(len(track) - CROP + 1) if track[s] == view[0]]
        assert any(np.array_equal(track[s : s + CROP], view) for s in starts)


def test_pairs_seeded_per_epoch(split):
    a, b = PairDataset(split, CROP, seed=0), PairDataset(split, CROP, seed=0)
    assert torch.equal(a[1], b[1])
    first = a[1]
    a.set_epoch(1)
    assert not torch.equal(a[1], first)
    a.set_epoch(0)
    assert torch.equal(a[1], first)
    assert not torch.equal(PairDataset(split, CROP, seed=1)[1], first)


def test_epoch_reaches_persistent_workers(split):
    ds = PairDataset(split, CROP, seed=0)
    loader = make_loader(ds, 3, shuffle=False, seed=0, workers=1)
    assert loader.persistent_workers
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        seen.append(torch.cat(list(loader)))
    assert seen[0].shape == (6, 2, CROP)
    assert not torch.equal(seen[0], seen[1])
    reference = PairDataset(split, CROP, seed=0)
    reference.set_epoch(1)
    assert torch.equal(seen[1], torch.stack([reference[i] for i in range(6)]))


def test_loader_shuffle_is_seeded(split):
    class Index(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return i

    def order(seed):
        return torch.cat(list(make_loader(Index(), 5, shuffle=True, seed=seed))).tolist()

    assert order(3) == order(3) and order(3) != order(4)
    assert len(list(make_loader(Index(), 6, shuffle=False, seed=0, drop_last=True))) == 3


def test_chunks_cover_the_track(split):
    chunks = dict(iter_track_chunks(split, CROP, max_chunks=8))
    assert sorted(chunks) == list(range(6))
    for i, c in chunks.items():  # 8000 samples = exactly 4 crops, back to back
        assert c.shape == (4, CROP) and c.dtype == np.float32
        np.testing.assert_array_equal(c.reshape(-1), split.track(i))


def test_chunks_capped_evenly_spaced_and_short_tracks_padded(split):
    starts = chunk_starts(100_000, CROP, max_chunks=5)
    assert len(starts) == 5 and starts[0] >= 0 and starts[-1] + CROP <= 100_000
    assert np.all(np.diff(starts) >= CROP)  # never overlapping
    assert np.ptp(np.diff(starts)) <= 1  # evenly spaced
    every = chunk_starts(10_999, 1000, 50)  # all 10 whole crops, leftover spread between them
    assert len(every) == 10 and np.all(np.diff(every) >= 1000) and every[-1] + 1000 <= 10_999
    capped = dict(iter_track_chunks(split, CROP, max_chunks=2))
    assert capped[0].shape == (2, CROP)
    assert chunk_starts(500, CROP, 4).tolist() == [0]
    one = next(iter_track_chunks(split, 9000, max_chunks=4))[1]
    assert one.shape == (1, 9000) and np.all(one[0, 8000:] == 0)
