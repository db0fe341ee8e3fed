"""Your own music: labelled folders with and without split files, and unlabelled audio."""

from __future__ import annotations

import logging

import pytest
from data_fixtures import make_labelled, write_tone

from mfclr.config import DatasetSpec
from mfclr.data.folder import list_labelled, list_unlabelled
from mfclr.errors import DataError


def _spec(root, **kw) -> DatasetSpec:
    return DatasetSpec(kind="folder", root=str(root), **kw)


def _ids(tracks, split):
    return [t.track_id for t in tracks.splits[split]]


def test_stratified_split_without_split_files(tmp_path):
    make_labelled(tmp_path, {"rock": 10, "jazz": 10, "ambient": 5}, seconds=0.05)
    tracks = list_labelled(tmp_path, _spec(tmp_path))
    assert tracks.label_names == ["ambient", "jazz", "rock"]  # sorted = label order
    for name, n in (("ambient", 5), ("jazz", 10), ("rock", 10)):
        label = tracks.label_names.index(name)
        counts = [
            sum(t.label == label for t in tracks.splits[s]) for s in ("train", "valid", "test")
        ]
        assert counts == [n - round(0.2 * n) - round(0.3 * n), round(0.2 * n), round(0.3 * n)]
    all_ids = [i for s in ("train", "valid", "test") for i in _ids(tracks, s)]
    assert len(all_ids) == len(set(all_ids)) == 25
    again = list_labelled(tmp_path, _spec(tmp_path))
    assert _ids(again, "test") == _ids(tracks, "test")  # seeded
    other = list_labelled(tmp_path, _spec(tmp_path, split_seed=1))
    assert _ids(other, "test") != _ids(tracks, "test")


def test_split_files_are_used_and_bad_entries_skipped(tmp_path, caplog):
    make_labelled(tmp_path, {"a": 3, "b": 3}, seconds=0.05)
    (tmp_path / "train.txt").write_text("a/a_0.wav\nb/b_0.wav\n# a comment\n\na/a_1.wav\n")
    (tmp_path / "valid.txt").write_text("b/b_1.wav\na/gone.wav\n")
    (tmp_path / "test.txt").write_text("a/a_2.wav\nb/b_2.wav\n")
    with caplog.at_level(logging.WARNING):
        tracks = list_labelled(tmp_path, _spec(tmp_path))
    assert _ids(tracks, "train") == ["a/a_0.wav", "b/b_0.wav", "a/a_1.wav"]
    assert [t.label for t in tracks.splits["train"]] == [0, 1, 0]
    assert _ids(tracks, "valid") == ["b/b_1.wav"]
    assert "gone.wav" in caplog.text and [s.reason for s in tracks.skipped] == ["missing"]
    with pytest.raises(DataError, match="gone.wav.*does not exist"):
        list_labelled(tmp_path, _spec(tmp_path), strict=True)


def test_track_in_two_split_files_is_an_error(tmp_path):
    make_labelled(tmp_path, {"a": 2}, seconds=0.05)
    (tmp_path / "train.txt").write_text("a/a_0.wav\n")
    (tmp_path / "test.txt").write_text("a/a_0.wav\na/a_1.wav\n")
    with pytest.raises(DataError, match="both train.txt and test.txt"):
        list_labelled(tmp_path, _spec(tmp_path))


def test_empty_class_and_missing_classes(tmp_path):
    make_labelled(tmp_path, {"a": 2}, seconds=0.05)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not audio")
    with pytest.raises(DataError, match="class folder .*/b holds no audio files"):
        list_labelled(tmp_path, _spec(tmp_path))
    flat = tmp_path / "flat"
    write_tone(flat / "x.wav", 0.05)
    with pytest.raises(DataError, match="no class folders"):
        list_labelled(flat, _spec(flat))
    with pytest.raises(DataError, match="does not exist"):
        list_labelled(tmp_path / "nope", _spec(tmp_path / "nope"))


def test_unlabelled_is_recursive(tmp_path):
    write_tone(tmp_path / "x.wav", 0.05)
    write_tone(tmp_path / "album" / "cd1" / "y.flac", 0.05)
    write_tone(tmp_path / "album" / "Z.WAV", 0.05)
    write_tone(tmp_path / ".hidden" / "h.wav", 0.05)
    (tmp_path / "album" / "cover.jpg").write_bytes(b"jpeg")
    tracks = list_unlabelled(tmp_path)
    assert list(tracks.splits) == ["train"] and tracks.label_names == []
    assert _ids(tracks, "train") == ["album/Z.WAV", "album/cd1/y.flac", "x.wav"]
    assert {t.label for t in tracks.splits["train"]} == {-1}


def test_unlabelled_without_audio(tmp_path):
    (tmp_path / "doc.txt").write_text("hi")
    with pytest.raises(DataError, match="no audio files"):
        list_unlabelled(tmp_path)
