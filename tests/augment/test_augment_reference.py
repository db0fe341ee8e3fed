"""The batched torch chain against the audiomentations reference: same shapes, same statistics."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from mfclr.augment import AudioChain
from mfclr.augment.reference import AudiomentationsChain, benchmark_augment
from mfclr.config import AudioAugConfig, Config, FilterAug, GainAug, NoiseAug, PitchAug
from mfclr.formats import build_augment

SR = 16000


def only(name: str, **fields: float) -> AudioAugConfig:
    """A chain with one transform at p=1 (plus `fields`) and the others off."""
    parts = {
        "noise": NoiseAug(p=0.0),
        "gain": GainAug(p=0.0),
        "filter": FilterAug(p=0.0),
        "pitch": PitchAug(p=0.0),
    }
    parts[name] = type(parts[name])(p=1.0, **fields)
    return AudioAugConfig(**parts)


def both(cfg: AudioAugConfig, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ours = AudioChain(cfg, SR)(x, generator=torch.Generator().manual_seed(0))
    theirs = AudiomentationsChain(cfg, SR)(x, generator=torch.Generator().manual_seed(0))
    assert ours.shape == theirs.shape == x.shape and theirs.dtype == torch.float32
    return ours, theirs


def noise(n: int, seconds: float) -> torch.Tensor:
    return 0.1 * torch.randn(n, round(seconds * SR), generator=torch.Generator().manual_seed(0))


def db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x.square().mean(dim=-1))


def test_gain_distributions_match() -> None:
    x = noise(200, 0.02)
    ours, theirs = both(only("gain"), x)
    g_ours, g_theirs = db(ours) - db(x), db(theirs) - db(x)
    for g in (g_ours, g_theirs):
        assert g.min() >= -6.001 and g.max() <= 0.001
        assert abs(g.mean().item() + 3.0) < 0.5 and abs(g.std().item() - 6 / math.sqrt(12)) < 0.3


def test_snr_distributions_match() -> None:
    x = noise(100, 0.1)
    ours, theirs = both(only("noise", min_snr_db=5.0, max_snr_db=25.0), x)
    for y in (ours, theirs):
        snr = db(x) - db(y - x)
        assert snr.min() > 4.7 and snr.max() < 25.3 and abs(snr.mean().item() - 15.0) < 1.5


def test_filter_attenuation_distributions_match() -> None:
    # Same cutoff distributions and Butterworth magnitudes: white noise loses about as much.
    x = noise(400, 0.05)
    ours, theirs = both(only("filter"), x)
    loss_ours, loss_theirs = db(x) - db(ours), db(x) - db(theirs)
    assert (loss_ours > 0).all() and (loss_theirs > 0).all()
    assert abs(loss_ours.mean().item() - loss_theirs.mean().item()) < 1.0
    assert abs(loss_ours.median().item() - loss_theirs.median().item()) < 1.0


def semitones_of(y: torch.Tensor, f0: float) -> torch.Tensor:
    n_fft = 1 << 17
    spec = torch.fft.rfft(y * torch.hann_window(y.shape[-1]), n=n_fft).abs()
    peak = spec.argmax(dim=-1).float() * SR / n_fft
    return 12 * torch.log2(peak / f0)


def test_pitch_shifts_of_a_tone_match() -> None:
    t = torch.arange(round(0.5 * SR)) / SR
    x = (0.5 * torch.sin(2 * math.pi * 600.0 * t)).repeat(40, 1)
    ours, theirs = both(only("pitch", semitones=3), x)
    for y in (ours, theirs):
        st = semitones_of(y, 600.0)
        assert (st - st.round()).abs().max() < 0.08  # whole semitones (a few cents)
        assert set(st.round().int().tolist()) == {-3, -2, -1, 1, 2, 3}


def test_reference_is_seeded_and_leaves_global_rngs_alone() -> None:
    cfg = AudioAugConfig()
    x = noise(3, 0.25)
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    ref = AudiomentationsChain(cfg, SR)
    a = ref(x, generator=torch.Generator().manual_seed(5))
    b = ref(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (random.random(), np.random.rand()) == before


def test_backend_switch_and_benchmark_smoke() -> None:
    cfg = Config().with_overrides(
        {"augment.audio.backend": "audiomentations", "model.samplecnn.normalize": "none"}
    )
    assert isinstance(build_augment("audio", cfg), AudiomentationsChain)
    result = benchmark_augment(batch=2, seconds=0.25, sample_rate=SR, repeats=1, threads=None)
    assert result["torch_clips_per_s"] > 0 and result["audiomentations_clips_per_s"] > 0
    assert result["speedup"] > 0
