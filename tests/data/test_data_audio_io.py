"""Decoding single files: formats, downmix, resampling, and one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from data_fixtures import SR, tone, write_tone

from mfclr.data.audio_io import read_audio, write_audio
from mfclr.errors import AudioError


def _one_line_naming(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_mono_wav_round_trip_at_same_rate(tmp_path):
    x = tone(0.5)
    path = write_audio(tmp_path / "a.wav", x, SR)
    dec = read_audio(path, SR)
    assert dec.samples.dtype == np.float32 and dec.samples.shape == x.shape
    assert not dec.resampled and not dec.downmixed and dec.source_rate == SR
    np.testing.assert_allclose(dec.samples, x, atol=1 / 32767 + 1e-6)


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".au"])
def test_other_containers_decode(tmp_path, suffix):
    path = write_tone(tmp_path / f"a{suffix}", 0.5)
    dec = read_audio(path, SR)
    assert abs(len(dec.samples) - SR // 2) <= 1
    assert np.corrcoef(dec.samples, tone(0.5)[: len(dec.samples)])[0, 1] > 0.95


def test_multichannel_is_averaged(tmp_path):
    x = tone(0.25, channels=3)
    path = write_audio(tmp_path / "stereo.wav", x, SR)
    dec = read_audio(path, SR)
    assert dec.downmixed and dec.samples.ndim == 1
    np.testing.assert_allclose(dec.samples, x.mean(axis=1), atol=2 / 32767)


def test_other_rate_is_resampled_keeping_pitch(tmp_path):
    path = write_tone(tmp_path / "hi.wav", 1.0, sr=22050, freq=500.0)
    dec = read_audio(path, SR)
    assert dec.resampled and dec.source_rate == 22050 and len(dec.samples) == SR
    spectrum = np.abs(np.fft.rfft(dec.samples))
    assert abs(np.argmax(spectrum) * SR / len(dec.samples) - 500.0) <= 2.0


def test_required_rate_and_mono_are_errors(tmp_path):
    path = write_tone(tmp_path / "blues.00003.wav", 0.2, sr=44100)
    with pytest.raises(AudioError) as err:
        read_audio(path, 22050, require_rate=22050, dataset="GTZAN")
    msg = _one_line_naming(err, path)
    assert "44100 Hz, GTZAN is 22050 Hz" in msg and "--strict" in msg
    stereo = write_audio(tmp_path / "st.wav", tone(0.2, channels=2), SR)
    with pytest.raises(AudioError, match="2 channels"):
        read_audio(stereo, SR, require_mono=True)


def test_corrupt_file(tmp_path):
    path = tmp_path / "jazz.00054.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioError) as err:
        read_audio(path, SR)
    assert "corrupt" in _one_line_naming(err, path)
    assert err.value.reason == "corrupt"


def test_truncated_wav(tmp_path):
    path = write_audio(tmp_path / "cut.wav", tone(1.0), SR)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as err:
        read_audio(path, SR)
    assert "truncated" in _one_line_naming(err, path)


def test_empty_files(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as err:
        read_audio(zero_bytes, SR)
    _one_line_naming(err, zero_bytes)
    no_frames = tmp_path / "none.wav"
    sf.write(str(no_frames), np.zeros((0, 1), np.float32), SR)
    with pytest.raises(AudioError, match="0 samples"):
        read_audio(no_frames, SR)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = tone(0.1)
    x[10] = bad
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite") as err:
        read_audio(path, SR)
    _one_line_naming(err, path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        read_audio(tmp_path / "nope.wav", SR)
