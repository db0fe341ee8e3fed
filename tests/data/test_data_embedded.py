"""The generated dataset: deterministic, idempotent, stratified, and genres that actually differ."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from data_fixtures import SR
from scipy.stats import f_oneway

from mfclr.config import EmbeddedData
from mfclr.data.embedded import MANIFEST, generate_embedded
from mfclr.data.synthetic import GENRES
from mfclr.errors import ConfigError, DataError

SPEC = EmbeddedData(n_classes=8, clips_per_class=4, seconds=2.0, seed=3)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_embedded(tmp_path_factory.mktemp("emb") / "a", SPEC, SR)


def _wavs(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.wav"))


def test_layout_and_split_files(generated):
    genres = sorted(p.name for p in generated.iterdir() if p.is_dir())
    assert len(genres) == 8 and set(genres) <= set(GENRES)
    assert len(_wavs(generated)) == 8 * 4
    info = sf.info(str(generated / "rock" / "rock.00003.wav"))
    assert info.samplerate == SR and info.channels == 1 and info.frames == 2 * SR
    splits = {s: (generated / f"{s}.txt").read_text().split() for s in ("train", "valid", "test")}
    listed = sorted(p for lines in splits.values() for p in lines)
    assert listed == sorted(str(p) for p in _wavs(generated))  # each file in exactly one split
    for genre in genres:  # stratified: 4 clips -> 2 train, 1 valid, 1 test per class
        counts = [sum(p.startswith(f"{genre}/") for p in splits[s]) for s in splits]
        assert counts == [2, 1, 1]


def test_deterministic_from_seed(generated, tmp_path):
    again = generate_embedded(tmp_path / "b", SPEC, SR)
    assert _wavs(again) == _wavs(generated)
    for rel in _wavs(generated):
        assert (again / rel).read_bytes() == (generated / rel).read_bytes()
    assert (again / "train.txt").read_text() == (generated / "train.txt").read_text()


def test_idempotent_and_regenerated_when_parameters_change(tmp_path):
    spec = EmbeddedData(n_classes=2, clips_per_class=3, seconds=0.5, seed=0)
    root = generate_embedded(tmp_path / "e", spec, SR)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_embedded(root, spec, SR) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes
    other = EmbeddedData(n_classes=2, clips_per_class=3, seconds=0.5, seed=1)
    generate_embedded(root, other, SR)
    assert json.loads((root / MANIFEST).read_text())["seed"] == 1
    assert len(_wavs(root)) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(DataError, match="holds no manifest.json"):
        generate_embedded(tmp_path, SPEC, SR)


def _features(x: np.ndarray) -> tuple[float, float, float]:
    """Spectral centroid (Hz), onset rate proxy (mean rise of frame log-energy), crest factor."""
    spec = np.abs(np.fft.rfft(x.reshape(-1, 400), axis=1))
    freqs = np.fft.rfftfreq(400, 1 / SR)
    centroid = float((spec * freqs).sum() / spec.sum())
    log_e = np.log(np.mean(x.reshape(-1, 160) ** 2, axis=1) + 1e-10)
    onset = float(np.maximum(np.diff(log_e), 0).mean())
    crest = float(np.abs(x).max() / np.sqrt(np.mean(x**2)))
    return centroid, onset, crest


def test_clips_distinct_and_classes_differ(generated):
    by_class: dict[str, list[tuple[float, float, float]]] = {}
    for genre_dir in sorted(p for p in generated.iterdir() if p.is_dir()):
        clips = [sf.read(str(p), dtype="float32")[0] for p in sorted(genre_dir.glob("*.wav"))]
        for a in range(len(clips)):
            assert 0.005 < np.abs(clips[a]).max() < 0.75  # -20..-3 dBFS peaks, no clipping
            for b in range(a):
                assert abs(np.corrcoef(clips[a], clips[b])[0, 1]) < 0.9
        by_class[genre_dir.name] = [_features(x) for x in clips]
    groups = [np.array(v) for v in by_class.values()]
    p_values = [f_oneway(*[g[:, k] for g in groups]).pvalue for k in range(3)]
    assert min(p_values) < 1e-3, p_values


def test_a_class_set_by_name(tmp_path):
    from mfclr.config import EMBEDDED_GENRES, build_config

    assert EMBEDDED_GENRES == GENRES  # the config checks names against the generator's
    spec = EmbeddedData(genres=["hiphop", "classical", "folk"], clips_per_class=3, seconds=0.5)
    assert spec.n_classes == 3
    root = generate_embedded(tmp_path / "named", spec, SR)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["classical", "folk", "hiphop"]
    for genres, needle in ((["rock", "polka"], "unknown genre 'polka'"),
                           (["rock", "rock"], "at least two different genres")):  # fmt: skip
        with pytest.raises(ConfigError, match=needle):
            build_config({"data": {"probe": {"embedded": {"genres": genres}}}})
