"""The raw-audio chain: noise, gain and filter do what they say on known signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from mfclr.augment import AudioChain, RandomFilter
from mfclr.augment.filters import BANDPASS, HIGHPASS, LOWPASS
from mfclr.config import AudioAugConfig, Config, FilterAug, GainAug, NoiseAug, PitchAug
from mfclr.errors import ConfigError
from mfclr.formats import build_augment, build_frontend

SR = 16000


def tone(freq: float, seconds: float = 0.5, sr: int = SR, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(seconds * sr)) / sr
    return amp * torch.sin(2 * math.pi * freq * t)


def rms_db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x.square().mean(dim=-1))


def chain_cfg(noise: float = 0.0, gain: float = 0.0, filt: float = 0.0, pitch: float = 0.0):
    return AudioAugConfig(
        noise=NoiseAug(p=noise),
        gain=GainAug(p=gain),
        filter=FilterAug(p=filt),
        pitch=PitchAug(p=pitch),
    )


def batch(n: int = 16, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, round(seconds * SR), generator=g)


# ----------------------------------------------------------------------------- gain


def test_gain_lies_in_range_and_p1_changes_every_example() -> None:
    x = batch(64)
    aug = AudioChain(chain_cfg(gain=1.0), SR)
    y = aug(x, generator=torch.Generator().manual_seed(1))
    applied = rms_db(y) - rms_db(x)
    assert applied.min() >= -6.0 - 1e-3 and applied.max() <= 0.0 + 1e-3
    assert (applied.abs() > 1e-4).all()
    assert applied.max() - applied.min() > 3.0  # really random per example, not one shared gain
    # the shape of each clip is untouched: y is a pure per-example scale of x
    ratio = y / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)


def test_gain_p_is_the_fraction_of_examples_changed() -> None:
    x = batch(400, seconds=0.05)
    cfg = AudioAugConfig(
        noise=NoiseAug(p=0.0),
        gain=GainAug(p=0.5, min_db=-6.0, max_db=-1.0),
        filter=FilterAug(p=0.0),
        pitch=PitchAug(p=0.0),
    )
    y = AudioChain(cfg, SR)(x, generator=torch.Generator().manual_seed(0))
    changed = (y != x).any(dim=-1).float().mean().item()
    assert 0.4 < changed < 0.6


def test_all_transforms_off_is_the_identity() -> None:
    x = batch(8)
    y = AudioChain(chain_cfg(), SR)(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, x)


# ----------------------------------------------------------------------------- noise


def test_noise_snr_lies_in_range() -> None:
    x = torch.stack([tone(440.0, amp=a) for a in torch.linspace(0.05, 0.9, 32).tolist()])
    cfg = AudioAugConfig(
        noise=NoiseAug(p=1.0, min_snr_db=10.0, max_snr_db=20.0),
        gain=GainAug(p=0.0),
        filter=FilterAug(p=0.0),
        pitch=PitchAug(p=0.0),
    )
    y = AudioChain(cfg, SR)(x, generator=torch.Generator().manual_seed(0))
    snr = rms_db(x) - rms_db(y - x)
    assert snr.min() > 10.0 - 0.3 and snr.max() < 20.0 + 0.3
    assert snr.max() - snr.min() > 4.0
    noise = (y - x)[0]
    assert abs(noise.mean().item()) < 0.1 * noise.std().item()  # zero-mean white noise


def test_noise_keeps_silence_silent() -> None:
    x = torch.zeros(4, 8000)
    y = AudioChain(chain_cfg(noise=1.0), SR)(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, x)


# ----------------------------------------------------------------------------- filter


def explicit(kind: int, low: float, high: float, order: int = 2) -> dict[str, torch.Tensor]:
    return {
        "kind": torch.tensor([kind]),
        "order": torch.tensor([order]),
        "low": torch.tensor([low]),
        "high": torch.tensor([high]),
    }


def filtered_gain_db(kind: int, low: float, high: float, freq: float) -> float:
    filt = RandomFilter(SR, **FilterAug(p=1.0).model_dump())
    x = tone(freq)[None]
    y = filt.filter(x, explicit(kind, low, high))
    middle = slice(2000, 6000)  # away from the edges' transients
    return (rms_db(y[:, middle]) - rms_db(x[:, middle])).item()


def test_lowpass_attenuates_above_and_passes_below() -> None:
    assert filtered_gain_db(LOWPASS, 0.0, 1000.0, 4000.0) < -12.0
    assert filtered_gain_db(LOWPASS, 0.0, 1000.0, 250.0) > -0.5


def test_highpass_attenuates_below_and_passes_above() -> None:
    assert filtered_gain_db(HIGHPASS, 1000.0, 0.0, 250.0) < -12.0
    assert filtered_gain_db(HIGHPASS, 1000.0, 0.0, 4000.0) > -0.5


def test_bandpass_passes_its_band_only() -> None:
    assert filtered_gain_db(BANDPASS, 700.0, 1400.0, 1000.0) > -1.0
    assert filtered_gain_db(BANDPASS, 700.0, 1400.0, 150.0) < -12.0
    assert filtered_gain_db(BANDPASS, 700.0, 1400.0, 6000.0) < -12.0


def test_filter_response_is_scipy_butterworth_magnitude() -> None:
    filt = RandomFilter(22050, **FilterAug(p=1.0).model_dump())
    params = filt.draw(12, torch.device("cpu"), torch.Generator().manual_seed(3))
    n_fft = 4096
    gains = filt.response(params, n_fft, torch.zeros(1)).numpy()
    freqs = np.arange(n_fft // 2 + 1) * 22050 / n_fft
    assert set(params["kind"].tolist()) == {LOWPASS, HIGHPASS, BANDPASS}
    for i in range(12):
        kind, order = int(params["kind"][i]), int(params["order"][i])
        low, high = float(params["low"][i]), float(params["high"][i])
        btype, edges = {
            LOWPASS: ("lowpass", high),
            HIGHPASS: ("highpass", low),
            BANDPASS: ("bandpass", [low, high]),
        }[kind]
        sos = scipy.signal.butter(order, edges, btype=btype, fs=22050, output="sos")
        _, h = scipy.signal.sosfreqz(sos, worN=freqs, fs=22050)
        np.testing.assert_allclose(gains[i], np.abs(h), atol=1e-4)


def test_filter_draws_cutoffs_in_the_configured_ranges() -> None:
    cfg = FilterAug(p=1.0)
    params = RandomFilter(22050, **cfg.model_dump()).draw(
        300, torch.device("cpu"), torch.Generator()
    )
    kind, low, high = params["kind"], params["low"], params["high"]
    lp, hp = high[kind == LOWPASS], low[kind == HIGHPASS]
    assert lp.min() >= cfg.min_lowpass_hz - 1e-2 and lp.max() <= cfg.max_lowpass_hz + 1e-2
    assert hp.min() >= cfg.min_highpass_hz - 1e-2 and hp.max() <= cfg.max_highpass_hz + 1e-2
    bp_lo, bp_hi = low[kind == BANDPASS], high[kind == BANDPASS]
    centre, fraction = (bp_lo + bp_hi) / 2, (bp_hi - bp_lo) / ((bp_lo + bp_hi) / 2)
    assert centre.min() >= cfg.min_bandpass_hz - 1e-2 and centre.max() <= cfg.max_bandpass_hz + 1e-2
    assert fraction.min() >= cfg.min_bandwidth_fraction - 1e-4
    assert fraction.max() <= cfg.max_bandwidth_fraction + 1e-4
    assert set(params["order"].tolist()) == {2, 3, 4}


def test_random_filter_attenuates_every_example() -> None:
    # White noise through p=1 random filters loses energy in every example (a 200 Hz high-pass
    # removes only ~2.5% of it at 16 kHz, hence the small margin).
    x = batch(32)
    y = AudioChain(chain_cfg(filt=1.0), SR)(x, generator=torch.Generator().manual_seed(0))
    assert (rms_db(y) < rms_db(x) - 0.05).all()


# ----------------------------------------------------------------------------- the chain


def test_chain_shapes_dtype_determinism_and_silence() -> None:
    aug = AudioChain(chain_cfg(1.0, 1.0, 1.0, 1.0), SR)
    x = batch(6)
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, batch(6))  # the input is never modified in place
    silent = aug(torch.zeros(3, 8000), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-6


def test_chain_runs_under_no_grad_without_generator() -> None:
    with torch.no_grad():
        y = AudioChain(chain_cfg(0.5, 0.5, 0.5, 0.5), SR)(batch(4))
    assert y.shape == (4, 8000) and torch.isfinite(y).all()
    assert not list(AudioChain(chain_cfg(), SR).parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_chain_runs_on_cuda() -> None:
    aug = AudioChain(chain_cfg(1.0, 1.0, 1.0, 1.0), SR)
    x = batch(8).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    y = aug(x, generator=g)
    assert y.device == x.device and y.shape == x.shape and torch.isfinite(y).all()


def test_builders_pick_the_format_and_reject_unknown_ones() -> None:
    cfg = Config(model={"samplecnn": {"normalize": "none"}})
    x = batch(2, seconds=0.25)
    assert isinstance(build_augment("audio", cfg), AudioChain)
    assert torch.equal(build_frontend("audio", cfg)(x), x)
    with pytest.raises(ConfigError, match="unknown input format 'video'"):
        build_augment("video", cfg)
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        build_frontend("audio", cfg)(x[0])


def test_rms_normalisation_removes_loudness_in_training_and_in_embedding() -> None:
    """With model.samplecnn.normalize=rms the chain ends in the format's own frontend: every
    crop reaches the encoder at one RMS level, whatever its gain, in training and embedding."""
    from mfclr.config import load_config
    from mfclr.encoders.frontends import RMS_LEVEL, frontend_from_spec
    from mfclr.formats import frontend_spec

    cfg = load_config(preset="tiny", overrides=["model.samplecnn.normalize=rms"])
    x = torch.randn(4, 8000) * torch.tensor([[1e-3], [0.05], [0.3], [1.0]])
    x[3] = 0.0  # silence stays silence
    views = build_augment("audio", cfg)(x, generator=torch.Generator().manual_seed(0))
    rms = views.square().mean(-1).sqrt()
    assert torch.allclose(rms[:3], torch.full((3,), RMS_LEVEL), rtol=1e-4) and rms[3] == 0
    front = frontend_from_spec(frontend_spec("audio", cfg))
    assert torch.allclose(front(x).square().mean(-1).sqrt()[:3], rms[:3], rtol=1e-4)
    plain = load_config(preset="tiny", overrides=["model.samplecnn.normalize=none"])
    assert frontend_spec("audio", plain) == {"name": "waveform", "kwargs": {}}  # as before rms
