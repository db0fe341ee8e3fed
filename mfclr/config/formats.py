"""The input-format names: a torch-free registry that config validation and the CLI read.

A format's code (encoder builder, frontend, augmentation chain) lives in `mfclr.formats`; here is
only its name and the config sections that belong to it alone, so that a config, a sweep file or
a `--format` flag is checked without importing torch, and a format registered at run time (with
`mfclr.formats.register_format`, which calls `register_name`) is valid everywhere at once.

`cross` is not a format: it is the pretraining mode that trains two formats together, a track's
two views in two formats being the positive pair (`train.cross_pair` names them).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mfclr.errors import ConfigError

CROSS = "cross"


@dataclass(frozen=True)
class FormatName:
    """A registered format's name, the dotted config sections only it reads (another format's
    pretraining ignores them), the flat W&B keys it contributes (flat key -> dotted config key;
    None on runs without this format), and one line for `--help`."""

    name: str
    sections: tuple[str, ...] = ()
    description: str = ""
    flat_keys: tuple[tuple[str, str], ...] = ()


_NAMES: dict[str, FormatName] = {}


def register_name(
    name: str,
    *,
    sections: tuple[str, ...] = (),
    description: str = "",
    flat_keys: dict[str, str] | None = None,
) -> None:
    """Make `name` a valid format name; registering the same entry twice is a no-op."""
    entry = FormatName(name, tuple(sections), description, tuple((flat_keys or {}).items()))
    if name == CROSS or not name.replace("_", "").isalnum() or not name[:1].isalpha():
        raise ValueError(f"format name '{name}' must be a letter then letters, digits or _")
    if name in _NAMES and _NAMES[name] != entry:
        raise ValueError(f"format '{name}' is already registered with other settings")
    _NAMES[name] = entry


def unregister_name(name: str) -> None:
    """Forget a format registered at run time (tests clean up with it)."""
    _NAMES.pop(name, None)


def format_names() -> tuple[str, ...]:
    """Every registered input format, in registration order."""
    return tuple(_NAMES)


def pretrain_names() -> tuple[str, ...]:
    """What can be pretrained: every format, and `cross`."""
    return (*_NAMES, CROSS)


def format_flat_keys() -> dict[str, tuple[str, str]]:
    """Every registered format's flat W&B keys: flat key -> (format, dotted config key)."""
    return {k: (n, dotted) for n, e in _NAMES.items() for k, dotted in e.flat_keys}


def format_entry(name: str) -> FormatName:
    check_format(name)
    return _NAMES[name]


def check_format(name: str, *, cross: bool = False) -> str:
    """`name` if it is a registered format (or `cross`, when allowed), else ConfigError."""
    if name in _NAMES or (cross and name == CROSS):
        return name
    choices = pretrain_names() if cross else format_names()
    raise ConfigError(f"unknown input format '{name}'; choose one of {', '.join(choices)}")


register_name(
    "audio",
    sections=("augment.audio", "model.samplecnn"),
    description="SampleCNN on the raw waveform",
)
register_name(
    "spectrogram",
    sections=("augment.spectrogram", "mel", "model.resnet"),
    description="ResNet-18 on a log-mel spectrogram",
    flat_keys={
        "mask_size": "augment.spectrogram.freq_mask.size",
        "time_mask_size": "augment.spectrogram.time_mask.size",
    },
)
# The formats `mfclr run` trains when --formats is not given.
DEFAULT_FORMATS: tuple[str, ...] = ("audio", "spectrogram")

# Config keys that change no trained weight: what runs, logs, validates and probes (a trailing
# "." is a whole section).
NOT_TRAINING = (
    "probe.",
    "tracking.",
    "ray.",
    "compare",
    "per_format",
    "train.device",
    "train.eval_every",
    "train.val_metric",
    "train.val_head",
    "train.knn_k",
    "train.max_eval_chunks",
    "data.loader_workers",
    "data.cache_dir",
)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value}; an empty dict is kept as a value."""
    if not isinstance(obj, dict) or (prefix and not obj):
        return {prefix.rstrip("."): obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out |= flatten(value, f"{prefix}{key}.")
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p.rstrip(".") or key.startswith(p if p.endswith(".") else p + ".")
               for p in prefixes)  # fmt: skip


# Keys added after fingerprints were first written, with the behaviour they had before they
# existed: hashed only when set otherwise, so every earlier run keeps its fingerprint.
ADDED_KEYS: dict[str, Any] = {"model.samplecnn.normalize": "none"}


def with_added_keys(saved: dict[str, Any]) -> dict[str, Any]:
    """A config saved before some ADDED_KEYS existed, with those keys at the behaviour it was
    trained with (not today's default, which may have changed since)."""
    out = copy.deepcopy(saved)
    for key, value in ADDED_KEYS.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            if not isinstance(node.get(part), dict):
                break
            node = node[part]
        else:
            node.setdefault(last, value)
    return out


def foreign_keys(parts: list[str]) -> tuple[str, ...]:
    """Config sections a pretraining of `parts` never reads: the other formats' own sections,
    and the cross pair when it trains one format."""
    others = tuple(s for n, e in _NAMES.items() if n not in parts for s in e.sections)
    return others + ("train.cross_pair",) if len(parts) == 1 else others


def training_keys(config: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """The flat config keys that decide the weights of a pretraining of `parts` (its formats):
    everything but NOT_TRAINING and foreign_keys(parts)."""
    others = foreign_keys(parts)
    return {
        k: v
        for k, v in flatten(config).items()
        if not _under(k, NOT_TRAINING)
        and not _under(k, others)
        and not (k in ADDED_KEYS and v == ADDED_KEYS[k])
    }


def fingerprint(config: dict[str, Any], parts: list[str]) -> str:
    """12 hex digits naming what a pretraining of `parts` learns from `config` (a resolved
    config dict): equal fingerprints train equal weights, whatever else the configs set."""
    text = json.dumps(training_keys(config, parts), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
