"""Encoders: one per input format, each mapping a batch to (B, num_features).

- "audio" (raw waveform) -> `SampleCNN`
- "spectrogram" (mel) -> `ResNetEncoder` (ResNet-18 by default)

`encoder_spec` describes an encoder as a plain JSON-able dict `{"arch": name, "kwargs": {...}}`
stored in checkpoints; `encoder_from_spec` rebuilds the same architecture from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from mfclr.config import FORMATS, ModelConfig
from mfclr.encoders.samplecnn import SampleCNN
from mfclr.errors import CheckpointError, ConfigError

__all__ = [
    "ARCH_FOR_FORMAT",
    "ENCODERS",
    "ResNetEncoder",
    "SampleCNN",
    "build_encoder",
    "encoder_from_spec",
    "encoder_spec",
]


def _resnet(**kwargs: Any) -> nn.Module:
    # torchvision costs ~1.2 s of import (it loads all its models and torch._dynamo): a process
    # that builds no spectrogram encoder (an audio Tune trial) does not pay it.
    from mfclr.encoders.resnet import ResNetEncoder

    return ResNetEncoder(**kwargs)


def __getattr__(name: str) -> Any:
    if name == "ResNetEncoder":
        from mfclr.encoders.resnet import ResNetEncoder

        return ResNetEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Registries as plain dicts: architecture name -> constructor, format -> architecture name.
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "samplecnn": SampleCNN,
    "resnet": _resnet,
}
ARCH_FOR_FORMAT: dict[str, str] = {"audio": "samplecnn", "spectrogram": "resnet"}


def encoder_spec(fmt: str, model: ModelConfig) -> dict[str, Any]:
    """The JSON-able spec `{"arch": str, "kwargs": dict}` of the encoder for format `fmt`."""
    if fmt not in ARCH_FOR_FORMAT:
        raise ConfigError(f"unknown input format '{fmt}'; choose one of {', '.join(FORMATS)}")
    arch = ARCH_FOR_FORMAT[fmt]
    if arch == "samplecnn":
        kwargs: dict[str, Any] = {"channels": list(model.samplecnn.channels), "in_chans": 1}
    else:
        kwargs = {"blocks": list(model.resnet.blocks), "in_chans": 1}
    return {"arch": arch, "kwargs": kwargs}


def encoder_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild an encoder (fresh weights) from an `encoder_spec` dict; else CheckpointError."""
    if not isinstance(spec, Mapping) or set(spec) != {"arch", "kwargs"}:
        got = sorted(spec) if isinstance(spec, Mapping) else type(spec).__name__
        raise CheckpointError(
            f"encoder spec must be a dict with keys 'arch' and 'kwargs', got {got}; "
            "the checkpoint is damaged or not an mfclr checkpoint"
        )
    arch, kwargs = spec["arch"], spec["kwargs"]
    if arch not in ENCODERS:
        raise CheckpointError(
            f"checkpoint encoder architecture '{arch}' is unknown; this mfclr knows "
            f"{', '.join(sorted(ENCODERS))} (was it made by another version?)"
        )
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"encoder spec 'kwargs' for '{arch}' must be a dict, got {kwargs!r}")
    try:
        return ENCODERS[arch](**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"encoder spec for '{arch}' is invalid ({err}); re-export it"
        ) from None


def build_encoder(fmt: str, model: ModelConfig) -> nn.Module:
    """A freshly initialised encoder for format "audio" or "spectrogram" (seed with torch)."""
    spec = encoder_spec(fmt, model)
    return ENCODERS[spec["arch"]](**spec["kwargs"])
