"""Encoder architectures and deterministic frontends, each rebuilt from a plain JSON-able spec.

- `ENCODERS`: architecture name -> constructor (`samplecnn`: SampleCNN on waveforms, `resnet`:
  ResNet-18 on a log-mel spectrogram). A spec `{"arch": name, "kwargs": {...}}` is stored in
  checkpoints; `encoder_from_spec` rebuilds the architecture (fresh weights) from it.
- `FRONTENDS` (frontends.py): the same for the deterministic input transforms (`waveform`,
  `logmel`), so a frozen encoder embeds audio without the config that trained it.

Which format uses which architecture and frontend is the format registry's business
(`mfclr.formats`); `register_encoder` adds an architecture (a format defined outside mfclr).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from mfclr.encoders.samplecnn import SampleCNN
from mfclr.errors import CheckpointError

__all__ = ["ENCODERS", "ResNetEncoder", "SampleCNN", "encoder_from_spec", "register_encoder"]


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


# Architecture name -> constructor taking the spec's kwargs; the module has `num_features`.
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "samplecnn": SampleCNN,
    "resnet": _resnet,
}


def add_to(
    registry: dict[str, Callable[..., nn.Module]], name: str, build: Callable[..., nn.Module],
    what: str,
) -> None:  # fmt: skip
    """Register `build` under `name`; the same constructor twice is a no-op, another an error."""
    if registry.get(name, build) is not build:
        raise ValueError(f"{what} '{name}' is already registered")
    registry[name] = build


def register_encoder(arch: str, build: Callable[..., nn.Module]) -> None:
    """Add an architecture (a format defined outside mfclr)."""
    add_to(ENCODERS, arch, build, "encoder architecture")


def build_from_spec(
    registry: Mapping[str, Callable[..., nn.Module]], spec: Any, name_key: str, what: str
) -> nn.Module:
    """`registry[spec[name_key]](**spec["kwargs"])`; a malformed spec is a CheckpointError."""
    if not isinstance(spec, Mapping) or set(spec) != {name_key, "kwargs"}:
        got = sorted(spec) if isinstance(spec, Mapping) else type(spec).__name__
        raise CheckpointError(
            f"{what} spec must be a dict with keys '{name_key}' and 'kwargs', got {got}; "
            "the checkpoint is damaged or not an mfclr checkpoint"
        )
    name, kwargs = spec[name_key], spec["kwargs"]
    if name not in registry:
        raise CheckpointError(
            f"checkpoint {what} '{name}' is unknown; this mfclr knows "
            f"{', '.join(sorted(registry))} (was it made by another version, or by a format "
            "registered elsewhere?)"
        )
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{what} spec 'kwargs' for '{name}' must be a dict, got {kwargs!r}")
    try:
        return registry[name](**kwargs)
    except (TypeError, ValueError) as err:
        message = f"{what} spec for '{name}' is invalid ({err}); re-export it"
        raise CheckpointError(message) from None


def encoder_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild an encoder (fresh weights) from a spec `{"arch", "kwargs"}`; else CheckpointError."""
    return build_from_spec(ENCODERS, spec, "arch", "encoder architecture")
