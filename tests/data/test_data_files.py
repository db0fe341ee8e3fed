"""Audio outside a dataset: a file decoded for `mfclr predict` is sample for sample the track the
cache holds (downmix, resample, over-full-scale scaling, int16), and is cut into the chunks the
probe cuts; finding files in folders; waveforms in memory; files that cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from data_fixtures import SR, data_config, tone, write_tone

from mfclr.config import DatasetSpec
from mfclr.data import prepare_dataset
from mfclr.data.clips import iter_track_chunks, track_chunks
from mfclr.data.files import find_audio, load_file, waveform_at
from mfclr.errors import AudioError, DataError

CROP = 2000  # data_config's crop at SR


def _odd_files(root: Path) -> list[Path]:
    """Files that exercise every step of decoding: a 44.1 kHz stereo file (downmix, resample),
    a float file peaking at 3.0 (scaled down, not clipped), a 16-bit mono file at SR."""
    loud = tone(0.5, 11025, freq=300) * 6.0  # peak ~3: +9.5 dBFS
    (root / "a").mkdir(parents=True)
    sf.write(str(root / "a" / "loud.wav"), loud, 11025, subtype="FLOAT")
    return [
        write_tone(root / "a" / "stereo.wav", 0.6, sr=44100, channels=2, freq=330),
        root / "a" / "loud.wav",
        write_tone(root / "b" / "plain.flac", 0.7, freq=500, seed=3),
    ]


def test_a_file_decodes_to_the_samples_the_cache_holds(tmp_path: Path) -> None:
    files = _odd_files(tmp_path / "data")
    spec = DatasetSpec(kind="folder", root=str(tmp_path / "data"), valid_fraction=0.0,
                       test_fraction=0.0)  # fmt: skip
    ds = prepare_dataset(spec, data_config(tmp_path / "cache", spec), progress=False)
    assert ds.stats["normalised"] >= 1 and ds.stats["downmixed"] == 1
    root = Path(ds.stats["root"])
    seen = 0
    for split in ds.splits.values():
        for i, track_id in enumerate(split.track_ids):
            mine = load_file(root / track_id, {SR: CROP})[SR]
            assert np.array_equal(mine, split.track(i)), track_id
            cached = next(c for j, c in iter_track_chunks(split, CROP, 3) if j == i)
            assert np.array_equal(track_chunks(mine, CROP, 3), cached)
            seen += 1
    assert seen == len(files)


def test_one_decode_gives_each_rate_asked_for(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "x.wav", 1.0, sr=22050)
    both = load_file(path, {8000: 800, 16000: 1600})
    assert {r: len(x) for r, x in both.items()} == {8000: 8000, 16000: 16000}
    assert np.array_equal(both[8000], load_file(path, {8000: 800})[8000])


def test_track_chunks_pad_a_track_shorter_than_one_crop() -> None:
    x = np.arange(1, 6, dtype=np.float32)
    assert track_chunks(x, 8, 4).tolist() == [[1, 2, 3, 4, 5, 0, 0, 0]]
    assert track_chunks(np.ones(20, np.float32), 5, 3).shape == (3, 5)


def test_find_audio_walks_folders_and_keeps_named_files(tmp_path: Path) -> None:
    a = write_tone(tmp_path / "f" / "z.wav", 0.1)
    b = write_tone(tmp_path / "f" / "deep" / "a.flac", 0.1)
    write_tone(tmp_path / "f" / ".hidden" / "h.wav", 0.1)
    (tmp_path / "f" / "notes.txt").write_text("not audio")
    named = tmp_path / "odd.bin"
    named.write_bytes(b"x")
    assert find_audio([tmp_path / "f", named, a]) == [b, a, named]  # sorted, each once
    with pytest.raises(DataError, match="does not exist"):
        find_audio([tmp_path / "nope.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no audio files"):
        find_audio([tmp_path / "empty"])


def test_a_waveform_in_memory_is_a_file_with_the_same_samples(tmp_path: Path) -> None:
    stereo = tone(0.5, 22050, channels=2)
    path = tmp_path / "s.wav"
    sf.write(str(path), stereo, 22050, subtype="FLOAT")
    want = load_file(path, {SR: CROP})[SR]
    for wave in (stereo.T, torch.from_numpy(stereo.T.copy())):  # (channels, samples)
        assert np.array_equal(waveform_at(wave, 22050, {SR: CROP})[SR], want)
    pcm = np.round(tone(0.5) * 32767).astype(np.int16)
    sf.write(str(tmp_path / "p.wav"), pcm, SR, subtype="PCM_16")
    from_file = load_file(tmp_path / "p.wav", {SR: CROP})[SR]
    assert np.array_equal(waveform_at(pcm, SR, {SR: CROP})[SR], from_file)  # int16 scaled


@pytest.mark.parametrize(
    ("wave", "rate", "match"),
    [
        (np.zeros((3, 4, 5)), SR, "pass \\(samples,\\) or \\(channels, samples\\)"),
        (np.zeros((5000, 2)), SR, "pass \\(samples,\\)"),
        (np.zeros(4000), 0, "sample_rate must be positive"),
        (np.zeros(4000), 8000.0, "whole number of Hz"),
    ],
)
def test_a_waveform_of_the_wrong_shape_or_rate_is_refused(wave, rate, match: str) -> None:
    with pytest.raises(DataError, match=match):
        waveform_at(wave, rate, {SR: CROP})


def test_unusable_audio_says_why_in_one_line(tmp_path: Path) -> None:
    short = write_tone(tmp_path / "short.wav", 0.1)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full(4000, np.nan, np.float32), SR, subtype="FLOAT")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    cases = {short: "short", nan: "non-finite", tmp_path / "empty.wav": "empty",
             tmp_path / "bad.wav": "corrupt"}  # fmt: skip
    for path, reason in cases.items():
        with pytest.raises(AudioError) as info:
            load_file(path, {SR: CROP})
        assert info.value.reason == reason and str(path) in str(info.value)  # type: ignore[attr-defined]
        assert "\n" not in str(info.value)
    with pytest.raises(AudioError, match="too short"):
        waveform_at(np.zeros(100, np.float32), SR, {SR: CROP})
    with pytest.raises(AudioError, match="NaN"):
        waveform_at(np.full(4000, np.inf, np.float32), SR, {SR: CROP})
