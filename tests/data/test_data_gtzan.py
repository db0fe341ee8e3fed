"""A local GTZAN folder: layouts, torchaudio's filtered split, missing and corrupt files by name."""

from __future__ import annotations

import logging
import shutil

import pytest
from data_fixtures import data_config, make_gtzan, write_tone
from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

from mfclr.config import DatasetSpec
from mfclr.data.cache import prepare_dataset
from mfclr.data.gtzan import gtzan_lists, list_gtzan
from mfclr.errors import AudioError, DataError

ROCK = next(t for t in filtered_train if t.startswith("rock"))
FEW = ["blues.00029", "jazz.00054", ROCK, *filtered_valid[:2], *filtered_test[:2]]
ALL = [*filtered_train, *filtered_valid, *filtered_test]


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory):
    """Every file of the filtered split (0.3 s each), with the corrupt jazz.00054.wav."""
    root = tmp_path_factory.mktemp("gtzan")
    make_gtzan(root / "genres", ALL, au=["blues.00030"])
    (root / "genres" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x01garbage" * 300)
    return root


def test_split_lists_are_torchaudios_filtered_ones():
    genres, lists = gtzan_lists()
    assert [len(lists[s]) for s in ("train", "valid", "test")] == [443, 197, 290]
    assert "jazz.00054" in lists["train"] and len(genres) == 10


@pytest.mark.parametrize("layout", ["genres", "genres_original", "Data/genres_original", "."])
def test_layouts_and_split_assignment(tmp_path, layout, caplog):
    make_gtzan(tmp_path / layout, FEW, au=[ROCK])
    root = tmp_path / layout if layout == "." else tmp_path
    with caplog.at_level(logging.WARNING):
        tracks = list_gtzan(root)
    found = {s: [t.track_id for t in ts] for s, ts in tracks.splits.items()}
    assert sorted(found["train"]) == ["blues.00029", "jazz.00054", ROCK]
    assert found["valid"] == list(filtered_valid[:2]) and found["test"] == list(filtered_test[:2])
    assert any(t.path.suffix == ".au" for t in tracks.splits["train"])
    labels = {t.track_id: tracks.label_names[t.label] for ts in tracks.splits.values() for t in ts}
    assert all(tid.startswith(genre) for tid, genre in labels.items())
    assert len(tracks.skipped) == len(ALL) - len(FEW)
    assert {s.reason for s in tracks.skipped} == {"missing"}
    assert "blues.00030.wav" in caplog.text  # missing files are named
    assert max(len(r.getMessage()) for r in caplog.records) < 1000  # without flooding the log


def test_missing_file_is_fatal_when_strict(tmp_path):
    make_gtzan(tmp_path / "genres", FEW)
    with pytest.raises(DataError, match=r"blues\.\d{5}\.wav .*missing.*--strict"):
        list_gtzan(tmp_path, strict=True)


def test_bad_roots(tmp_path):
    with pytest.raises(DataError, match="does not exist.*never downloaded") as err:
        list_gtzan(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    (tmp_path / "music" / "stuff").mkdir(parents=True)
    with pytest.raises(DataError, match="no genre folders.*genres/<genre>"):
        list_gtzan(tmp_path / "music")


def test_corrupt_file_skipped_by_name(full_tree, tmp_path, caplog):
    spec = DatasetSpec(kind="gtzan", root=str(full_tree))
    with caplog.at_level(logging.WARNING):
        ds = prepare_dataset(spec, data_config(tmp_path), progress=False)
    assert {s: len(sp) for s, sp in ds.splits.items()} == {"train": 442, "valid": 197, "test": 290}
    assert "jazz.00054" not in ds.splits["train"].track_ids
    assert ds.stats["skipped"] == {"corrupt": 1}
    assert "jazz.00054.wav" in caplog.text and "corrupt" in caplog.text
    assert ds.label_names[ds.splits["train"].labels[0]] == "blues"
    assert ds.stats["resampled"] == 929  # 22,050 Hz files decoded at the tests' 8 kHz


def test_corrupt_file_fatal_when_strict(full_tree, tmp_path):
    spec = DatasetSpec(kind="gtzan", root=str(full_tree))
    with pytest.raises(AudioError, match=r"jazz\.00054\.wav cannot be decoded"):
        prepare_dataset(spec, data_config(tmp_path, strict=True), progress=False)
    assert not any((tmp_path).glob("gtzan-*"))  # nothing half-built left behind


def test_wrong_rate_fatal_only_when_strict(full_tree, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(full_tree, root)
    write_tone(root / "genres" / "jazz" / "jazz.00054.wav", 0.3, sr=22050)  # repaired
    write_tone(root / "genres" / "blues" / "blues.00031.wav", 0.3, sr=44100)
    spec = DatasetSpec(kind="gtzan", root=str(root))
    with pytest.raises(AudioError, match="blues.00031.wav is 44100 Hz, GTZAN is 22050 Hz"):
        prepare_dataset(spec, data_config(tmp_path / "c", strict=True), progress=False)
    ds = prepare_dataset(spec, data_config(tmp_path / "c"), progress=False)
    assert len(ds.splits["train"]) == 443 and ds.stats["skipped"] == {}


def test_a_missing_genre_is_named_and_counted(tmp_path, caplog):
    from tests.helpers import run_cli

    make_gtzan(tmp_path / "gtzan" / "genres", [t for t in FEW if not t.startswith("rock")])
    root, cache = tmp_path / "gtzan", tmp_path / "cache"
    args = ["data", "info", "--preset", "tiny", "--set", "data.probe.kind=gtzan",
            "--set", f"data.probe.root={root}", "--set", f"data.cache_dir={cache}"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        code, out, err = run_cli(*args)
    assert code == 0, err
    assert "class 'rock' has no tracks" in caplog.text
    assert out.count("tracks:") == 1 and "{" not in out  # a table, not Python dicts
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["rock"] == ["0", "0", "0", "0"]  # train valid test total
    assert rows["class"] == ["train", "valid", "test", "total"]
    assert "torchaudio's fault-filtered" in out
