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
    with pytest.raises(DataError, match="train.txt line 1 .* test.txt line 1"):
        list_labelled(tmp_path, _spec(tmp_path))


def _genres_layout(root, per_class=3):
    """`<root>/genres/<class>/<class>.0000N.wav` and `<root>/splits/`: the published layout."""
    for c, cls in enumerate(("alpha", "beta")):
        for i in range(per_class):
            write_tone(root / "genres" / cls / f"{cls}.{i:05d}.wav", 0.05, freq=300 + 40 * c + i)
    (root / "splits").mkdir()
    lists = {"train": [0], "valid": [1], "test": [2]}
    for split, idx in lists.items():
        lines = [f"genres/{cls}/{cls}.{i:05d}.wav" for cls in ("alpha", "beta") for i in idx]
        (root / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_genres_and_splits_layout_is_detected_from_the_root_alone(tmp_path):
    root = _genres_layout(tmp_path / "ds", per_class=4)  # clip 3 of each class is in no split
    tracks = list_labelled(root, _spec(root))
    assert tracks.label_names == ["alpha", "beta"]  # `splits/` is not a class
    assert _ids(tracks, "test") == ["genres/alpha/alpha.00002.wav", "genres/beta/beta.00002.wav"]
    assert [t.label for t in tracks.splits["train"]] == [0, 1]
    assert str(root / "splits") in tracks.split_source and "split files" in tracks.split_source
    assert sorted(tracks.unlisted) == ["genres/alpha/alpha.00003.wav", "genres/beta/beta.00003.wav"]


def test_pointing_at_the_classes_folder_says_where_the_split_files_are(tmp_path):
    root = _genres_layout(tmp_path / "ds")
    tracks = list_labelled(root / "genres", _spec(root / "genres"))
    assert "no split files found" in tracks.split_source
    assert "generated a seeded stratified split" in tracks.split_source
    assert f"set the root to {root}" in tracks.split_source


def test_an_explicit_split_folder(tmp_path):
    root = _genres_layout(tmp_path / "ds")
    (root / "splits").rename(root / "lists")
    assert "no split files found" in list_labelled(root, _spec(root)).split_source
    tracks = list_labelled(root, _spec(root, splits="lists"))
    assert str(root / "lists") in tracks.split_source and len(tracks.splits["valid"]) == 2
    with pytest.raises(DataError, match="split folder .*nowhere.* holds none of train.txt"):
        list_labelled(root, _spec(root, splits="nowhere"))
    with pytest.raises(ValueError, match="splits applies to kind 'folder' only"):
        DatasetSpec(kind="gtzan", root=str(root), splits="lists")


def test_split_paths_are_normalised_inside_the_root(tmp_path):
    root = tmp_path / "ds"
    make_labelled(root, {"alpha": 2, "beta": 2}, seconds=0.05)
    (root / "train.txt").write_text("alpha/alpha_0.wav\nalpha/../beta/beta_0.wav\n")
    (root / "test.txt").write_text("beta/beta_1.wav\n")
    tracks = list_labelled(root, _spec(root))
    # The class comes from the normalised path, and so does the track's id.
    assert _ids(tracks, "train") == ["alpha/alpha_0.wav", "beta/beta_0.wav"]
    assert [t.label for t in tracks.splits["train"]] == [0, 1]
    assert tracks.unlisted == ["alpha/alpha_1.wav"]  # counted, not used
    (root / "test.txt").write_text("beta/beta_1.wav\n./alpha/alpha_0.wav\n")
    with pytest.raises(DataError) as err:  # the same track, written two ways, in two splits
        list_labelled(root, _spec(root))
    assert "train.txt line 1" in str(err.value) and "test.txt line 2" in str(err.value)
    elsewhere = tmp_path / "elsewhere"
    write_tone(elsewhere / "x.wav", 0.05)
    (root / "test.txt").write_text("beta/beta_1.wav\nalpha/../../elsewhere/x.wav\n")
    with pytest.raises(DataError, match=r"test.txt line 2: 'alpha/../../elsewhere/x.wav' points "
                                        r"outside the dataset root"):  # fmt: skip
        list_labelled(root, _spec(root))


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
