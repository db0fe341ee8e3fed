"""The deterministic encoder inputs (no randomness): the first layer of a frozen encoder, and
the step inside an augmentation chain that the random transforms surround.

    front = frontend_from_spec({"name": "logmel", "kwargs": {...}})
    # "waveform": (B, T) -> (B, T);  "logmel": (B, T) -> (B, 1, n_mels, T // hop + 1)

A frontend is rebuilt from its spec (stored in every exported encoder), so embedding needs no
saved Config. `register_frontend` adds one (a format defined outside mfclr).

Log-mel scale: dB relative to each clip's loudest mel bin, clamped at -top_db and mapped to
[0, 1]: `(dB - max_dB) / top_db + 1`. 1 is the clip's peak, 0 is top_db (80 dB) below it or
quieter. Being relative, it ignores the clip's overall level (gain is no feature), and silence
maps to all zeros, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from mfclr.config import MelConfig
from mfclr.encoders import add_to, build_from_spec

# On CPU, a batched STFT of many 5 s clips falls out of cache (twice as slow per clip as
# clip by clip, measured): chunk it there.
CPU_CHUNK = 4


class MelFrontend(nn.Module):
    """(B, T) waveforms -> (B, 1, n_mels, T // hop + 1) log-mel in [0, 1] (see module doc)."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float = 80.0,
    ):
        super().__init__()
        self.top_db = top_db
        self.hop_length = hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            power=2.0,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=top_db)

    @classmethod
    def from_config(cls, mel: MelConfig, sample_rate: int) -> MelFrontend:
        return cls(sample_rate, **mel.model_dump())

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
    """The raw-audio frontend: (B, T) -> (B, T). `normalize="rms"` scales each row to RMS
    `RMS_LEVEL` (-20 dBFS; a silent row stays silent); "none" is the identity."""

    def __init__(self, normalize: str = "none") -> None:
        super().__init__()
        if normalize not in ("none", "rms"):
            raise ValueError(f"normalize must be 'none' or 'rms', got {normalize!r}")
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        check_waveforms(x)
        if self.normalize == "none":
            return x
        rms = x.float().square().mean(dim=-1, keepdim=True).sqrt()
        return (x * (RMS_LEVEL / rms.clamp_min(1e-6))).to(x.dtype)


RMS_LEVEL = 0.1  # -20 dBFS: room for peaks below full scale


# Frontend name -> constructor taking the spec's kwargs (plain JSON values).
FRONTENDS: dict[str, Callable[..., nn.Module]] = {
    "waveform": WaveformFrontend,
    "logmel": MelFrontend,
}


def register_frontend(name: str, build: Callable[..., nn.Module]) -> None:
    """Add a frontend (a format defined outside mfclr)."""
    add_to(FRONTENDS, name, build, "frontend")


def logmel_spec(mel: MelConfig, sample_rate: int) -> dict[str, Any]:
    """The spec of the log-mel frontend of `mel` at `sample_rate`."""
    return {"name": "logmel", "kwargs": {"sample_rate": sample_rate, **mel.model_dump()}}


def frontend_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a frontend from a spec `{"name", "kwargs"}`; else CheckpointError."""
    return build_from_spec(FRONTENDS, spec, "name", "frontend")
