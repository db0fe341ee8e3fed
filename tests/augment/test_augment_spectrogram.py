"""Spectrogram frontend and chain: shapes, scale, per-clip dB clamp, masks, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from mfclr.augment import RandomMask, SpectrogramChain
from mfclr.config import Config, MaskAug, MelConfig, NoiseAug, SpectrogramAugConfig
from mfclr.encoders.frontends import MelFrontend
from mfclr.formats import build_augment, build_frontend

SR = 16000
MEL = MelConfig(n_fft=512, hop_length=256, n_mels=40)


def waves(n: int = 4, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, round(seconds * SR), generator=g)


def spec_cfg(noise: float = 0.0, freq: float = 0.0, time: float = 0.0) -> SpectrogramAugConfig:
    return SpectrogramAugConfig(
        noise=NoiseAug(p=noise, min_snr_db=10.0, max_snr_db=30.0),
        freq_mask=MaskAug(p=freq, size=8),
        time_mask=MaskAug(p=time, size=10),
    )


def test_frontend_shape_range_and_determinism() -> None:
    x = waves(3)
    front = MelFrontend.from_config(MEL, SR)
    y = front(x)
    assert y.shape == (3, 1, 40, x.shape[1] // 256 + 1) and y.dtype == torch.float32
    assert torch.equal(y, front(x))
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert torch.allclose(y.amax(dim=(1, 2, 3)), torch.ones(3))  # 1 = each clip's peak


def test_frontend_clamps_per_clip_and_ignores_level() -> None:
    # A quiet clip next to a loud one: same picture, not pushed to the floor by the loud one.
    x = waves(1)
    y = MelFrontend.from_config(MEL, SR)(torch.cat([x, 1e-4 * x]))
    assert torch.allclose(y[0], y[1], atol=1e-4)
    assert (y[1] > 0).float().mean() > 0.9


def test_frontend_silence_is_finite() -> None:
    y = MelFrontend.from_config(MEL, SR)(torch.zeros(2, 8000))
    assert torch.isfinite(y).all()


def test_frontend_chunks_on_cpu_like_one_batch() -> None:
    x = waves(11, seconds=0.2)
    front = MelFrontend.from_config(MEL, SR)
    whole = torch.cat([front(c[None]) for c in x])
    assert torch.allclose(front(x), whole, atol=1e-5)


def masked_band(y: torch.Tensor, axis: int) -> list[tuple[int, int]]:
    """(start, width) of the zero band along axis for each example of a masked all-ones input."""
    other = -1 if axis == -2 else -2
    zero = (y == 0).all(dim=other).squeeze(1)  # (B, L)
    bands = []
    for row in zero:
        idx = row.nonzero().squeeze(1)
        bands.append((int(idx[0]), len(idx)) if len(idx) else (0, 0))
        if len(idx):
            assert int(idx[-1]) - int(idx[0]) + 1 == len(idx)  # one contiguous band
    return bands


@pytest.mark.parametrize(("axis", "size"), [(-2, 8), (-1, 10)])
def test_mask_widths_and_positions(axis: int, size: int) -> None:
    x = torch.ones(500, 1, 40, 30)
    mask = RandomMask(p=1.0, size=size, axis=axis)
    y = mask(x, generator=torch.Generator().manual_seed(0))
    bands = masked_band(y, axis)
    widths = [w for _, w in bands]
    assert max(widths) == size and min(widths) == 0
    assert len(set(widths)) == size + 1  # every width in {0..size} occurs
    length = x.shape[axis]
    assert all(s >= 0 and s + w <= length for s, w in bands)
    starts = [s for s, w in bands if w > 0]
    assert min(starts) == 0 and max(starts) + size >= length - 2  # the whole axis is reachable


def test_mask_p0_identity_and_probability() -> None:
    x = torch.ones(400, 1, 40, 30)
    assert RandomMask(p=0.0, size=8, axis=-1)(x) is x
    y = RandomMask(p=0.5, size=8, axis=-1)(x, generator=torch.Generator().manual_seed(0))
    masked = (y == 0).flatten(1).any(dim=1).float().mean().item()
    assert 0.35 < masked < 0.55  # p = 0.5, less the width-0 draws (1 in 9)


def test_chain_shape_determinism_and_masks() -> None:
    x = waves(4)
    chain = SpectrogramChain(spec_cfg(1.0, 1.0, 1.0), MEL, SR)
    a = chain(x, generator=torch.Generator().manual_seed(3))
    b = chain(x, generator=torch.Generator().manual_seed(3))
    c = chain(x, generator=torch.Generator().manual_seed(4))
    assert a.shape == MelFrontend.from_config(MEL, SR)(x).shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, waves(4))
    silent = chain(torch.zeros(2, 8000), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(silent).all()


def test_chain_all_off_equals_frontend() -> None:
    x = waves(3)
    chain = SpectrogramChain(spec_cfg(), MEL, SR)
    assert torch.equal(
        chain(x, generator=torch.Generator().manual_seed(0)), MelFrontend.from_config(MEL, SR)(x)
    )


def test_noise_mix_fills_the_quiet_bins() -> None:
    t = torch.arange(8000) / SR
    x = (0.5 * torch.sin(2 * math.pi * 1000 * t))[None].repeat(4, 1)
    clean = MelFrontend.from_config(MEL, SR)(x)
    noisy = SpectrogramChain(spec_cfg(noise=1.0), MEL, SR)(x, generator=torch.Generator())
    assert (noisy.mean(dim=(1, 2, 3)) > clean.mean(dim=(1, 2, 3)) + 0.05).all()


def test_builders_use_the_config() -> None:
    cfg = Config().with_overrides(
        {
            "data.clip_seconds": 0.5,
            "data.sample_rate": 16000,
            "augment.spectrogram.time_mask.size": 8,
        }
    )
    x = waves(2)
    aug, front = build_augment("spectrogram", cfg), build_frontend("spectrogram", cfg)
    assert isinstance(aug, SpectrogramChain) and isinstance(front, MelFrontend)
    expected = (2, 1, cfg.mel.n_mels, x.shape[1] // cfg.mel.hop_length + 1)
    assert aug(x).shape == expected and front(x).shape == expected
    assert not list(aug.parameters()) and not list(front.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_chain_follows_the_input_to_cuda() -> None:
    chain = SpectrogramChain(spec_cfg(1.0, 1.0, 1.0), MEL, SR)
    x = waves(3).cuda()
    y = chain(x, generator=torch.Generator(device="cuda").manual_seed(0))
    assert y.device == x.device and torch.isfinite(y).all()
    cpu = MelFrontend.from_config(MEL, SR)(x.cpu())
    assert torch.allclose(MelFrontend.from_config(MEL, SR)(x).cpu(), cpu, atol=1e-3)
