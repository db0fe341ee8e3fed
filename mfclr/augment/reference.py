"""The audiomentations reference chain (per clip, CPU numpy) and the throughput benchmark.

`AudiomentationsChain` is the same augmentation as `AudioChain` built from audiomentations
transforms: AddGaussianSNR -> Gain -> one of LowPass/HighPass/BandPassFilter -> PitchShift by a
whole, non-zero number of semitones. It is the baseline `benchmark_augment` compares against and
the reference the tests compare statistics with (not samples: the noise and the pitch-shift
algorithms differ).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from audiomentations import (
    AddGaussianSNR,
    BandPassFilter,
    Compose,
    Gain,
    HighPassFilter,
    LowPassFilter,
    OneOf,
    PitchShift,
)
from numpy.typing import NDArray
from torch import Tensor, nn

from mfclr.augment.audio import AudioChain
from mfclr.augment.spectrogram import SpectrogramChain
from mfclr.config import AudioAugConfig, Config
from mfclr.encoders.frontends import check_waveforms

_TRANSFORMS = ("noise", "gain", "filter", "pitch")


class WholeSemitonePitchShift(PitchShift):
    """audiomentations PitchShift drawing a non-zero whole number of semitones in [-k, k]."""

    def __init__(self, semitones: int, p: float):
        super().__init__(min_semitones=-semitones, max_semitones=semitones, p=p)
        self.semitones = semitones

    def randomize_parameters(self, samples: NDArray[np.float32], sample_rate: int) -> None:
        super().randomize_parameters(samples, sample_rate)
        if self.parameters["should_apply"]:
            shift = random.randint(1, self.semitones) * random.choice((-1, 1))
            self.parameters["num_semitones"] = float(shift)


def build_compose(cfg: AudioAugConfig) -> Compose:
    """The audiomentations pipeline equivalent to `AudioChain(cfg, ...)`."""
    f = cfg.filter
    transforms: list[Any] = [
        AddGaussianSNR(cfg.noise.min_snr_db, cfg.noise.max_snr_db, p=cfg.noise.p),
        Gain(cfg.gain.min_db, cfg.gain.max_db, p=cfg.gain.p),
        OneOf(
            [
                LowPassFilter(f.min_lowpass_hz, f.max_lowpass_hz, p=1.0),
                HighPassFilter(f.min_highpass_hz, f.max_highpass_hz, p=1.0),
                BandPassFilter(
                    f.min_bandpass_hz,
                    f.max_bandpass_hz,
                    f.min_bandwidth_fraction,
                    f.max_bandwidth_fraction,
                    p=1.0,
                ),
            ],
            p=f.p,
        ),
    ]
    if cfg.pitch.semitones > 0:
        transforms.append(WholeSemitonePitchShift(cfg.pitch.semitones, p=cfg.pitch.p))
    return Compose(transforms, p=1.0)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    # audiomentations draws from the global `random` and `np.random`: seed them for the call
    # and put the caller's state back afterwards.
    if seed is None:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class AudiomentationsChain(nn.Module):
    """(B, T) float waveforms -> (B, T), one audiomentations call per clip on the CPU.

    Same call signature as `AudioChain`; the result goes back to the input's device and dtype.
    With a generator, one seed is drawn from it and the global RNGs are seeded for the call.
    """

    def __init__(self, cfg: AudioAugConfig, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.compose = build_compose(cfg)

    @torch.no_grad()
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_waveforms(x)
        seed = None
        if generator is not None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=x.device))
        clips = x.detach().to("cpu", torch.float32).numpy()
        with _seeded(seed):
            out = [self.compose(samples=clip, sample_rate=self.sample_rate) for clip in clips]
        return torch.from_numpy(np.stack(out)).to(x.device, x.dtype)


def _test_batch(batch: int, length: int, sample_rate: int, seed: int) -> Tensor:
    """Music-like test clips: a few harmonic tones plus a little noise, at about -20 dBFS."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / sample_rate
    f0 = 110.0 * 2.0 ** (torch.randint(0, 36, (batch, 1), generator=g) / 12.0)
    tones = sum(torch.sin(2 * torch.pi * f0 * h * t) / h for h in (1, 2, 3, 4))
    noise = 0.05 * torch.randn(batch, length, generator=g)
    return (0.1 * (tones + noise)).float()


def _clips_per_s(aug: nn.Module, x: Tensor, repeats: int) -> float:
    # Best of `repeats` timed calls: on a shared machine the minimum is the stable figure.
    g = torch.Generator().manual_seed(0)
    aug(x, generator=g)  # warm-up: caches, resampling kernels, allocator
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        aug(x, generator=g)
        best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


def benchmark_augment(
    batch: int = 32,
    seconds: float = 5.0,
    sample_rate: int = 22050,
    repeats: int = 3,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Clips per second of the batched torch chain vs audiomentations, every transform at p=1.

    Both run on the CPU with `threads` intra-op threads (None: leave torch's setting alone).
    Also reports the torch chain's cost per transform (ms per clip) and the spectrogram chain's
    clips per second (noise mix at p=1, masks at their defaults). Best of `repeats` calls each.
    """
    cfg = AudioAugConfig()
    cfg = cfg.model_copy(
        update={n: getattr(cfg, n).model_copy(update={"p": 1.0}) for n in _TRANSFORMS}
    )
    main = Config()
    spec_cfg = main.augment.spectrogram.model_copy(
        update={"noise": main.augment.spectrogram.noise.model_copy(update={"p": 1.0})}
    )
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        x = _test_batch(batch, round(seconds * sample_rate), sample_rate, seed=0)
        chain = AudioChain(cfg, sample_rate)
        fast = _clips_per_s(chain, x, repeats)
        parts = {n: 1e3 / _clips_per_s(getattr(chain, n), x, repeats) for n in _TRANSFORMS}
        spec = _clips_per_s(SpectrogramChain(spec_cfg, main.mel, sample_rate), x, repeats)
        ref = _clips_per_s(AudiomentationsChain(cfg, sample_rate), x, repeats)
    finally:
        torch.set_num_threads(old_threads)
    return {
        "batch": batch,
        "seconds": seconds,
        "sample_rate": sample_rate,
        "threads": threads,
        "torch_clips_per_s": round(fast, 1),
        "audiomentations_clips_per_s": round(ref, 1),
        "speedup": round(fast / ref, 2),
        "torch_ms_per_clip": {n: round(v, 2) for n, v in parts.items()},
        "spectrogram_clips_per_s": round(spec, 1),
    }
