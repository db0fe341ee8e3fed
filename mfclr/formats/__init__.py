"""Input formats: one registry entry per format holds everything that format is.

    entry = get_format("spectrogram")
    encoder = build_encoder("spectrogram", cfg)   # fresh weights, from entry.encoder(cfg)'s spec
    front = build_frontend("spectrogram", cfg)    # deterministic: (B, T) -> encoder input
    aug = build_augment("spectrogram", cfg)       # random: (B, T) -> encoder input

An `InputFormat` names its encoder spec, its frontend spec (the deterministic input transform;
a frozen encoder carries it as its first layer, so embedding needs no saved Config), its
augmentation chain, and its memory format. Nothing outside this package branches on a format's
name: a format defined elsewhere (a plugin, a test) is one `register_format` call, after which
`--format NAME`, `cross_pair`, sweeps, the probe and the controls take it like the built-in
two. Its name goes to the torch-free name registry (`mfclr.config.formats`) that config
validation and the CLI read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from mfclr.augment import audio_chain, spectrogram_chain
from mfclr.config import CROSS, Config, check_format
from mfclr.config.formats import format_names, register_name, unregister_name
from mfclr.encoders import encoder_from_spec
from mfclr.encoders.frontends import frontend_from_spec, logmel_spec

Spec = dict[str, Any]


@dataclass(frozen=True)
class InputFormat:
    """What one input format is.

    encoder: cfg -> `{"arch", "kwargs"}` (an architecture of `mfclr.encoders.ENCODERS`).
    frontend: cfg -> `{"name", "kwargs"}` (a frontend of `mfclr.encoders.frontends.FRONTENDS`).
    augment: cfg -> the training chain, (B, T) waveforms -> the frontend's output shape.
    channels_last: feed the encoder channels_last tensors on CUDA (2-d convolutions).
    """

    name: str
    encoder: Callable[[Config], Spec]
    frontend: Callable[[Config], Spec]
    augment: Callable[[Config], nn.Module]
    channels_last: bool = False


_FORMATS: dict[str, InputFormat] = {}


def register_format(
    entry: InputFormat,
    *,
    sections: tuple[str, ...] = (),
    description: str = "",
    flat_keys: dict[str, str] | None = None,
) -> InputFormat:
    """Add (or re-add, unchanged) a format; its name becomes valid in configs and the CLI.

    `sections`: the dotted config sections only this format reads; `flat_keys`: flat W&B config
    key -> dotted config key, logged on runs that involve it (`mfclr.config.formats`). The
    built-in formats' names are registered there already, torch-free.
    """
    if _FORMATS.get(entry.name, entry) != entry:
        raise ValueError(f"format '{entry.name}' is already registered")
    if entry.name not in format_names() or sections or description or flat_keys:
        register_name(entry.name, sections=sections, description=description,
                      flat_keys=flat_keys)  # fmt: skip
    _FORMATS[entry.name] = entry
    return entry


def unregister_format(name: str) -> None:
    """Remove a format registered at run time (tests clean up with it)."""
    _FORMATS.pop(name, None)
    unregister_name(name)


def get_format(name: str) -> InputFormat:
    """The registry entry of `name`; ConfigError naming the choices when there is none."""
    check_format(name)
    return _FORMATS[name]


def encoder_spec(fmt: str, cfg: Config) -> Spec:
    return get_format(fmt).encoder(cfg)


def frontend_spec(fmt: str, cfg: Config) -> Spec:
    return get_format(fmt).frontend(cfg)


def build_encoder(fmt: str, cfg: Config) -> nn.Module:
    """A freshly initialised encoder of format `fmt` (seed with torch.manual_seed first)."""
    return encoder_from_spec(encoder_spec(fmt, cfg))


def build_frontend(fmt: str, cfg: Config) -> nn.Module:
    """The deterministic input transform of `fmt`: `front(wave)` (B, T) -> encoder input."""
    return frontend_from_spec(frontend_spec(fmt, cfg))


def build_augment(fmt: str, cfg: Config) -> nn.Module:
    """The training chain of `fmt`; call it as `aug(wave, generator=g)`."""
    return get_format(fmt).augment(cfg)


def components(fmt: str, cfg: Config) -> list[str]:
    """The input formats a pretraining `fmt` trains: itself, or `train.cross_pair` for cross."""
    return list(cfg.train.cross_pair) if fmt == CROSS else [check_format(fmt)]


# ----------------------------------------------------------------------------- built-in formats


def _samplecnn(cfg: Config) -> Spec:
    return {"arch": "samplecnn", "kwargs": {"channels": list(cfg.model.samplecnn.channels),
                                            "in_chans": 1}}  # fmt: skip


def _resnet(cfg: Config) -> Spec:
    return {"arch": "resnet", "kwargs": {"blocks": list(cfg.model.resnet.blocks), "in_chans": 1}}


def _waveform(cfg: Config) -> Spec:
    normalize = cfg.model.samplecnn.normalize
    return {"name": "waveform", "kwargs": {} if normalize == "none" else {"normalize": normalize}}


class Then(nn.Module):
    """An augmentation chain followed by its format's frontend: `aug(x, generator=g)`, so the
    encoder sees in training what the frozen encoder's frontend gives it later."""

    def __init__(self, chain: nn.Module, frontend: nn.Module) -> None:
        super().__init__()
        self.chain, self.frontend = chain, frontend

    def forward(self, x: Any, generator: Any = None) -> Any:
        return self.frontend(self.chain(x, generator=generator))


def _audio_augment(cfg: Config) -> nn.Module:
    """The waveform chain, then the waveform frontend (RMS normalisation, when configured)."""
    chain = audio_chain(cfg)
    if cfg.model.samplecnn.normalize == "none":
        return chain
    return Then(chain, build_frontend("audio", cfg))


def _logmel(cfg: Config) -> Spec:
    return logmel_spec(cfg.mel, cfg.data.sample_rate)


# Their names, config sections and flat keys are registered torch-free in mfclr.config.formats.
register_format(InputFormat("audio", _samplecnn, _waveform, _audio_augment))
register_format(InputFormat("spectrogram", _resnet, _logmel, spectrogram_chain, channels_last=True))
