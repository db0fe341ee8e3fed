"""The deterministic encoder inputs (no randomness), used for embeddings and inside the
augmentation chains: the waveform as is, or a log-mel spectrogram.

    front = build_frontend(fmt, cfg)   # "audio": (B, T) -> (B, T)
                                       # "spectrogram": (B, T) -> (B, 1, n_mels, T // hop + 1)

Log-mel scale: dB relative to each clip's loudest mel bin, clamped at -top_db and mapped to
[0, 1]: `(dB - max_dB) / top_db + 1`. 1 is the clip's peak, 0 is top_db (80 dB) below it or
quieter. Being relative, it ignores the clip's overall level (gain is no feature), and silence
maps to all zeros, never NaN.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from mfclr.config import FORMATS, Config, MelConfig
from mfclr.errors import ConfigError

# On CPU, a batched STFT of many 5 s clips falls out of cache (notes/perf.md): chunk it there.
CPU_CHUNK = 4


class MelFrontend(nn.Module):
    """(B, T) waveforms -> (B, 1, n_mels, T // hop + 1) log-mel in [0, 1] (see module doc)."""

    def __init__(self, cfg: MelConfig, sample_rate: int):
        super().__init__()
        self.top_db = cfg.top_db
        self.hop_length = cfg.hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            power=2.0,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=cfg.top_db)

    def _follow(self, x: Tensor) -> None:
        # The filterbank is a buffer: follow the input's device instead of failing on a mismatch.
        if self.mel.mel_scale.fb.device != x.device:
            self.to(x.device)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        check_waveforms(x)
        self._follow(x)
        if x.device.type == "cpu" and x.shape[0] > CPU_CHUNK:
            return torch.cat([self._one(c) for c in x.split(CPU_CHUNK)])
        return self._one(x)

    def _one(self, x: Tensor) -> Tensor:
        # (B, 1, M, F): AmplitudeToDB takes its top_db clamp per leading index, i.e. per clip.
        db = self.to_db(self.mel(x.float()).unsqueeze(1))
        peak = db.amax(dim=(-2, -1), keepdim=True)
        return ((db - peak) / self.top_db + 1.0).to(x.dtype)


def check_waveforms(x: Tensor) -> None:
    """Raise ValueError unless x is a (B, T) floating-point batch of waveforms."""
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"augment expects a (batch, samples) float tensor of waveforms; got {got}")


class WaveformFrontend(nn.Module):
    """The raw-audio frontend: (B, T) -> (B, T), the identity (after a shape check)."""

    def forward(self, x: Tensor) -> Tensor:
        check_waveforms(x)
        return x


def check_format(fmt: str) -> None:
    """Raise ConfigError unless `fmt` is an input format (audio | spectrogram)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown input format '{fmt}'; choose one of {', '.join(FORMATS)}")


def build_frontend(fmt: str, cfg: Config) -> nn.Module:
    """The deterministic input transform for one format (identity | log-mel); `front(wave)`."""
    check_format(fmt)
    if fmt == "audio":
        return WaveformFrontend()
    return MelFrontend(cfg.mel, cfg.data.sample_rate)
