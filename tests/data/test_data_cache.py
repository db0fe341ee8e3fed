"""The decode-once cache: built once, reused, faithful, atomic; short clips padded or rejected."""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
from data_fixtures import SR, data_config, make_labelled, tone, write_tone

import mfclr.data.cache as cache
from mfclr.config import DatasetSpec, EmbeddedData
from mfclr.data import load_dataset
from mfclr.data.cache import prepare_dataset
from mfclr.errors import AudioError, DataError, MfclrError


@pytest.fixture
def decodes(monkeypatch):
    """Counts the files the cache decodes."""
    calls: list[str] = []
    real = cache.read_audio

    def counting(path, *args, **kw):
        calls.append(str(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(cache, "read_audio", counting)
    return calls


def _folder(tmp_path, per_class=None, seconds=0.5):
    root = make_labelled(tmp_path / "music", per_class or {"a": 4, "b": 4}, seconds=seconds)
    return DatasetSpec(kind="folder", root=str(root))


def test_built_once_then_reused(tmp_path, decodes):
    spec = _folder(tmp_path)
    data = data_config(tmp_path / "cache", spec)
    ds = prepare_dataset(spec, data, progress=False)
    assert len(decodes) == 8 and ds.name == "folder:music" and ds.sample_rate == SR
    index = ds.cache_path / "index.json"
    stamp = index.stat().st_mtime_ns
    again = load_dataset(data, "probe")
    assert len(decodes) == 8  # nothing decoded the second time
    assert again.cache_path == ds.cache_path and index.stat().st_mtime_ns == stamp
    assert again.splits["train"].track_ids == ds.splits["train"].track_ids
    assert load_dataset(data, "pretrain").cache_path == ds.cache_path  # falls back to probe
    # a changed file (new size and mtime) gives a new cache
    write_tone(tmp_path / "music" / "a" / "a_0.wav", 0.7)
    rebuilt = prepare_dataset(spec, data, progress=False)
    assert rebuilt.cache_path != ds.cache_path and len(decodes) == 16


def test_int16_round_trip_and_split_contents(tmp_path):
    spec = _folder(tmp_path)
    ds = prepare_dataset(spec, data_config(tmp_path / "cache", spec), progress=False)
    assert ds.label_names == ["a", "b"]
    assert {s: len(sp) for s, sp in ds.splits.items()} == {"train": 4, "valid": 2, "test": 2}
    sp = ds.splits["train"]
    assert sp.audio.dtype == np.int16 and len(sp.audio) == sp.lengths.sum()
    assert sp.offsets.dtype == sp.lengths.dtype == sp.labels.dtype == np.int64
    for i, track_id in enumerate(sp.track_ids):
        source = sf.read(str(tmp_path / "music" / track_id), dtype="float32")[0]
        got = sp.track(i)
        assert got.dtype == np.float32 and got.shape == source.shape
        np.testing.assert_allclose(got, source, atol=2 / 32768)
        np.testing.assert_array_equal(sp.crop(i, 100, 50), got[100:150])
    assert ds.splits["valid"].labels.tolist() == [0, 1]


def test_split_pickles_without_its_memmap(tmp_path):
    spec = _folder(tmp_path)
    sp = prepare_dataset(spec, data_config(tmp_path / "cache", spec), progress=False).splits["test"]
    sp.track(0)  # maps the file
    blob = pickle.dumps(sp)
    assert len(blob) < 4000  # path and index only, not the audio
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.track(1), sp.track(1))


@pytest.mark.parametrize("policy", ["pad", "reject"])
def test_short_clips_padded_or_rejected(tmp_path, policy, caplog):
    root = make_labelled(tmp_path / "music", {"a": 4, "b": 4}, seconds=0.5)
    write_tone(root / "a" / "a_1.wav", 0.1)  # 800 samples < crop (2000)
    spec = DatasetSpec(kind="folder", root=str(root), valid_fraction=0.0, test_fraction=0.0)
    data = data_config(tmp_path / "cache", spec, short_clips=policy)
    with caplog.at_level(logging.WARNING):
        ds = prepare_dataset(spec, data, progress=False)
    sp = ds.splits["train"]
    assert "a_1.wav" in caplog.text
    if policy == "pad":
        assert ds.stats["padded"] == 1 and ds.stats["rejected"] == 0 and len(sp) == 8
        short = sp.track(sp.track_ids.index("a/a_1.wav"))
        assert len(short) == data.crop_samples and np.all(short[800:] == 0)
        assert np.abs(short[:800]).max() > 0.1
    else:
        assert ds.stats["rejected"] == 1 and ds.stats["padded"] == 0 and len(sp) == 7
        assert "a/a_1.wav" not in sp.track_ids


def test_conversions_and_bad_files_counted(tmp_path, caplog):
    root = make_labelled(tmp_path / "music", {"a": 3, "b": 3}, seconds=0.5)
    write_tone(root / "a" / "a_0.wav", 0.5, sr=16000)
    sf.write(str(root / "b" / "b_0.wav"), tone(0.5, channels=2), SR)
    (root / "b" / "b_1.wav").write_bytes(b"not a wav at all" * 50)
    spec = DatasetSpec(kind="folder", root=str(root), valid_fraction=0.0, test_fraction=0.0)
    with caplog.at_level(logging.WARNING):
        ds = prepare_dataset(spec, data_config(tmp_path / "cache", spec), progress=False)
    st = ds.stats
    assert (st["resampled"], st["downmixed"], st["skipped"]) == (1, 1, {"corrupt": 1})
    assert st["tracks"] == {"train": 5, "valid": 0, "test": 0}
    assert st["seconds"] == pytest.approx(2.5, abs=0.01)
    assert "b_1.wav" in caplog.text and len(ds.splits["valid"]) == 0
    assert ds.splits["valid"].audio.shape == (0,)
    with pytest.raises(AudioError, match="b_1.wav cannot be decoded"):
        prepare_dataset(spec, data_config(tmp_path / "cache", spec, strict=True), progress=False)


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    spec = _folder(tmp_path)
    data = data_config(tmp_path / "cache", spec)
    real, calls = cache.read_audio, []

    def failing(path, *args, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, *args, **kw)

    monkeypatch.setattr(cache, "read_audio", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(spec, data, progress=False)
    assert os.listdir(tmp_path / "cache") == []  # neither a half cache nor a temp folder
    monkeypatch.setattr(cache, "read_audio", real)
    assert len(prepare_dataset(spec, data, progress=False).splits["train"]) == 4


def test_no_usable_tracks_is_an_error(tmp_path):
    root = tmp_path / "music"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "x.wav").write_bytes(b"garbage" * 100)
    spec = DatasetSpec(kind="folder", root=str(root))
    with pytest.raises(DataError, match="no usable tracks in its train split"):
        prepare_dataset(spec, data_config(tmp_path / "cache", spec), progress=False)


def test_embedded_and_unlabelled_end_to_end(tmp_path, decodes):
    spec = DatasetSpec(embedded=EmbeddedData(n_classes=3, clips_per_class=3, seconds=0.5))
    unlabelled = DatasetSpec(kind="unlabelled", root=str(tmp_path / "pile"))
    write_tone(tmp_path / "pile" / "x.wav", 0.5)
    write_tone(tmp_path / "pile" / "deep" / "y.flac", 0.5)
    data = data_config(tmp_path / "cache", spec, pretrain=unlabelled)
    ds = load_dataset(data, "probe")
    assert ds.name == "embedded" and len(ds.label_names) == 3
    assert {s: len(sp) for s, sp in ds.splits.items()} == {"train": 3, "valid": 3, "test": 3}
    assert [p.name.startswith("embedded-") for p in (tmp_path / "cache").iterdir()].count(True) == 2
    assert len(decodes) == 9
    load_dataset(data, "probe")
    assert len(decodes) == 9
    pre = load_dataset(data, "pretrain")
    assert list(pre.splits) == ["train"] and pre.splits["train"].labels.tolist() == [-1, -1]
    assert pre.label_names == []


def test_a_float_file_above_full_scale_is_scaled_down_and_named(tmp_path, caplog):
    spec = _folder(tmp_path)
    loud = tmp_path / "music" / "a" / "loud.wav"
    sf.write(str(loud), 50.0 * tone(0.5), SR, subtype="FLOAT")  # peaks at ~ +34 dBFS
    with caplog.at_level(logging.WARNING):
        ds = prepare_dataset(spec, data_config(tmp_path / "cache", spec), progress=False)
    assert "loud.wav" in caplog.text and "dBFS" in caplog.text
    assert ds.stats["normalised"] == 1 and ds.stats["loud_files"] == [str(loud)]
    split = next(s for s in ds.splits.values() if "a/loud.wav" in s.track_ids)
    samples = split.track(split.track_ids.index("a/loud.wav"))
    at_full_scale = np.mean(np.abs(samples) >= 32767 / 32768)
    assert at_full_scale < 0.01  # not hard-clipped (it would be ~97 % of the samples)
    assert np.abs(samples).max() > 0.9  # but as loud as int16 allows


def test_stale_temp_folders_of_a_killed_build_are_removed(tmp_path):
    from mfclr.io import STALE_AFTER_S, temp_name

    spec = _folder(tmp_path)
    cache_dir = tmp_path / "cache"
    dead = cache_dir / ".folder-0123456789abcdef.tmp-999999999@nowhere-0a1b2c3d"
    dead_here = cache_dir / temp_name("folder-0123456789abcdef").replace(
        f"tmp-{os.getpid()}@", "tmp-999999999@"
    )  # this host, a pid that cannot exist
    live = cache_dir / temp_name("gtzan-fedcba9876543210")  # this process: still writing
    for folder in (dead, dead_here, live):
        (folder).mkdir(parents=True)
        (folder / "train.i16").write_bytes(b"\0" * 10)
    old = os.path.getmtime(dead) - STALE_AFTER_S - 60
    for path in (dead, dead / "train.i16"):
        os.utime(path, (old, old))
    prepare_dataset(spec, data_config(cache_dir, spec), progress=False)
    assert not dead.exists() and not dead_here.exists() and live.exists()


def test_a_cache_dir_below_a_file_is_one_error(tmp_path):
    spec = _folder(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(MfclrError, match="data.cache_dir .*blocker.* lies below the file"):
        prepare_dataset(spec, data_config(tmp_path / "blocker" / "cache", spec), progress=False)
