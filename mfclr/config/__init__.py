"""The one typed configuration of mfclr: every default lives here.

A `Config` is frozen and validated when it is built: unknown keys, wrong types and impossible
values (temperature <= 0, an inverted range, a mask wider than its axis) raise `ConfigError`
with a one-line message naming the key and the fix. The sections are in sections.py; this
module holds `Config` and how one is built, loaded and saved. Neither imports torch nor Ray.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from mfclr.config.budgets import (  # noqa: F401 (re-exported: one import path)
    BUDGET_KEYS,
    drop_format_budgets,
    names_epochs_only,
    one_budget,
    without_budgets,
)
from mfclr.config.formats import (  # noqa: F401 (re-exported: one import path)
    CROSS,
    DEFAULT_FORMATS,
    check_format,
    format_names,
    pretrain_names,
)
from mfclr.config.secrets import check_no_secrets
from mfclr.config.sections import (  # noqa: F401 (re-exported: one import path)
    COMPARE_PREFIXES,
    DATASET_KINDS,
    EMBEDDED_GENRES,
    FUSION_NAMES,
    HEAD_NAMES,
    PRESET_DIR,
    PROJECTOR_NAMES,
    RESERVED_SET_NAMES,
    SPLITS,
    AudioAugConfig,
    AugmentConfig,
    DataConfig,
    DatasetSpec,
    EmbeddedData,
    FilterAug,
    FreqShiftAug,
    GainAug,
    MaskAug,
    MelConfig,
    ModelConfig,
    NoiseAug,
    PitchAug,
    ProbeConfig,
    RayConfig,
    ResNetConfig,
    SampleCNNConfig,
    SpectrogramAugConfig,
    TrackingConfig,
    TrainConfig,
    _check_range,
    _Section,
    yaml_load,
)
from mfclr.errors import ConfigError
from mfclr.io import atomic_write_text

log = logging.getLogger(__name__)


class Config(_Section):
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    mel: MelConfig = MelConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    ray: RayConfig = RayConfig()
    tracking: TrackingConfig = TrackingConfig()
    # Recipe variants `mfclr run` pretrains too, every format each, as extra table rows
    # prefixed with the variant's name: {name: {dotted key: value}}, e.g.
    # {"ntxent": {"train.vc_weight": 0.0}} adds ntxent-audio, ntxent-spectrogram, ntxent-fused.
    compare: dict[str, dict[str, Any]] = {}
    # A format's own recipe on top of this config wherever that format's encoder is pretrained
    # (audio, spectrogram or cross): {format: {dotted key: value}}, e.g.
    # {"audio": {"train.epochs": 28}}: the formats learn at different speeds per step and per
    # CPU second. The keys are compare's (probe data, inputs and encoders stay shared).
    per_format: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _per_format(self) -> Config:
        for fmt, overrides in self.per_format.items():
            if fmt not in pretrain_names():
                raise ValueError(
                    f"per_format: '{fmt}' is not a format; use {', '.join(pretrain_names())}"
                )
            _check_shared_keys(f"per_format.{fmt}", overrides, "differ between formats")
            for key in overrides:
                for name, variant in self.compare.items():
                    if key in variant:  # which one wins would be a silent surprise
                        raise ValueError(
                            f"per_format.{fmt} and compare.{name} both set '{key}'; set it in "
                            "one place"
                        )
            self.for_format(fmt)  # unknown keys and bad values fail now, not at that format
        return self

    @model_validator(mode="after")
    def _compare_variants(self) -> Config:
        for name, overrides in self.compare.items():
            reserved = (*RESERVED_SET_NAMES, *format_names())
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in reserved:
                raise ValueError(
                    f"compare variant name '{name}' must be lower-case letters, digits or _ "
                    f"and not one of {', '.join(reserved)}; rename it"
                )
            _check_shared_keys(f"compare.{name}", overrides, "vary between variants")
            self.variant(name)  # unknown keys and bad values fail now, not after pretraining
        return self

    def for_format(self, fmt: str) -> Config:
        """The config `fmt`'s encoder is pretrained with: this one with per_format[fmt] applied
        (and per_format emptied, so applying it twice changes nothing)."""
        if not self.per_format:
            return self
        return self._derived("per_format", fmt, self.per_format.get(fmt, {}))

    def variant(self, name: str) -> Config:
        """The config of compare variant `name`: this one with its overrides (and no variants)."""
        return self._derived("compare", name, self.compare[name])

    def _derived(self, section: str, name: str, overrides: dict[str, Any]) -> Config:
        """This config with `section` (compare or per_format) emptied and `overrides` applied;
        an error names `section.name`."""
        data = self.to_dict()
        data[section] = {}
        try:
            _set_all(data, overrides)
            return build_config(data)
        except ConfigError as err:
            raise ConfigError(f"{section}.{name}: {err}") from None

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        sr = self.data.sample_rate
        f_max = self.mel.f_max if self.mel.f_max is not None else sr / 2
        if f_max > sr / 2 or f_max <= self.mel.f_min:
            raise ValueError(f"mel.f_max ({f_max}) must lie in (f_min, sample_rate/2 = {sr / 2})")
        frames = self.data.crop_samples // self.mel.hop_length + 1
        fm, tm = self.augment.spectrogram.freq_mask, self.augment.spectrogram.time_mask
        if self.augment.spectrogram.freq_shift.max_bins >= self.mel.n_mels:
            raise ValueError(
                f"augment.spectrogram.freq_shift.max_bins must be below mel.n_mels "
                f"({self.mel.n_mels}); lower it"
            )
        if fm.size > self.mel.n_mels:
            raise ValueError(
                f"augment.spectrogram.freq_mask.size ({fm.size}) is larger than the mel axis "
                f"({self.mel.n_mels} bins); use at most {self.mel.n_mels}"
            )
        if tm.size > frames:
            raise ValueError(
                f"augment.spectrogram.time_mask.size ({tm.size}) is larger than the time axis "
                f"({frames} frames for a {self.data.clip_seconds} s crop); use at most {frames}"
            )
        if self.mel.n_fft > self.data.crop_samples:
            raise ValueError(f"mel.n_fft ({self.mel.n_fft}) is longer than a crop; lower it")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> Config:
        """A copy with dotted-key overrides (`{"train.lr": 1e-3}` or `["train.lr=1e-3"]`)."""
        data = self.to_dict()
        items = parse_set_args(overrides) if isinstance(overrides, list) else overrides
        _set_all(data, items)
        return build_config(data)


def _check_shared_keys(where: str, overrides: dict[str, Any], what: str) -> None:
    """compare / per_format may only set a recipe or a format's own input and encoder
    (COMPARE_PREFIXES): the probe data, its split and the probe stay shared."""
    for key in overrides:
        if not key.startswith(COMPARE_PREFIXES):
            raise ValueError(
                f"{where}: '{key}' cannot {what} (the probe data, its split and the probe are "
                f"shared); use keys under {', '.join(COMPARE_PREFIXES)}"
            )


# ----------------------------------------------------------------------------- building


def validation_message(
    err: ValidationError, *, key: str = "config key", where: str = "see `mfclr config show`"
) -> str:
    """The first error of a pydantic validation as one line naming the key and the fix.

    `key` names what a location is ("config key", "key" for a sweep file); `where` says where
    the allowed keys are listed.
    """
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown {key} '{loc}': check the spelling ({where})"
    if kind == "missing":
        return f"{key} '{loc}' is required"
    prefix = f"{key} '{loc}': " if loc else ("config: " if key == "config key" else "")
    got = first.get("input")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{prefix}{msg} (got {got!r} of type {type(got).__name__})"
    return f"{prefix}{msg}"


def build_config(data: dict[str, Any] | None = None) -> Config:
    """Validate a plain dict into a Config; raises ConfigError with a one-line message."""
    try:
        return Config.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from None


_OPTIONAL_SECTIONS: dict[str, type[_Section]] = {"data.pretrain": DatasetSpec}


# Sections mapping a name to dotted overrides: `--set per_format.audio.train.epochs=28` sets
# the key "train.epochs" of per_format["audio"].
_OVERRIDE_MAPS = ("compare", "per_format")


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    name, _, inner = rest.partition(".")
    if head in _OVERRIDE_MAPS and name:
        entry = data.setdefault(head, {})
        if inner:
            entry = entry.setdefault(name, {})
        entry[inner or name] = value
        return
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        path = ".".join(parts[: i + 1])
        if (
            child is None and path in _OPTIONAL_SECTIONS
        ):  # unset optional section: start from defaults
            child = node[part] = _OPTIONAL_SECTIONS[path]().model_dump(mode="json")
        if not isinstance(child, dict):
            raise ConfigError(
                f"unknown config key '{'.'.join(parts[: i + 1])}' in '{key}': "
                "check the spelling (see `mfclr config show`)"
            )
        node = child
    if parts[-1] not in node:
        raise ConfigError(
            f"unknown config key '{key}': check the spelling (see `mfclr config show`)"
        )
    node[parts[-1]] = value


def parse_set_args(items: list[str]) -> dict[str, Any]:
    """`["train.lr=1e-3", "probe.heads=[linear]"]` -> dotted dict; values parse as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}' is not key=value; write e.g. --set train.lr=0.001")
        try:
            out[key.strip()] = yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set '{item}': the value is not valid YAML") from None
    return out


def _merge(base: dict[str, Any], over: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{prefix}{key}.")
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} '{p}' does not exist; check the path")
    try:
        data = yaml_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} '{p}' is not valid YAML{at}; fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{p}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(
    path: str | Path | None = None,
    preset: str | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Defaults <- preset <- config file <- --set overrides, validated once at the end (so a
    preset may leave a required key, such as a dataset root, to the command line). A config
    holding the value of a secret is refused here, before anything is written."""
    data = Config().to_dict()
    if preset:
        if preset not in preset_names():
            choices = ", ".join(preset_names())
            raise ConfigError(
                f"unknown preset '{preset}'; choose one of {choices}, or leave out --preset "
                "for the config defaults"
            )
        data = _merge(data, read_yaml(PRESET_DIR / f"{preset}.yaml", "preset"))
    if path:
        layer = read_yaml(path)
        train = layer.get("train")
        if isinstance(train, dict) and None not in (train.get("steps"), train.get("epochs")):
            # A run's saved config.yaml holds both (the epochs derived from the steps).
            log.info("config file '%s' sets train.steps (%s) and train.epochs (%s): the step "
                     "budget counts, the epochs are derived from it", path, train["steps"],
                     train["epochs"])  # fmt: skip
        if isinstance(train, dict) and {"steps", "epochs"} & set(train):
            data["per_format"] = without_budgets(data["per_format"])
        per_format = layer.get("per_format")
        if isinstance(per_format, dict):
            named = [f for f, o in per_format.items() if set(BUDGET_KEYS) & set(o or {})]
            drop_format_budgets(data, named)
        data = _merge(data, layer)
        if names_epochs_only(train):
            data["train"]["steps"] = None
    items = parse_set_args(overrides) if isinstance(overrides, list) else overrides or {}
    one_budget({k.removeprefix("train."): v for k, v in items.items()}, "--set")
    if set(BUDGET_KEYS) & set(items):
        data["per_format"] = without_budgets(data["per_format"])
    _set_all(data, items)
    cfg = build_config(data)
    check_no_secrets(cfg.to_dict(), "the config")
    return cfg


def _set_all(data: dict[str, Any], items: dict[str, Any]) -> None:
    """Apply dotted overrides; one that sets train.epochs and not train.steps unsets steps."""
    drop_format_budgets(data, sorted({k.split(".")[1] for k in items
                                       if k.startswith("per_format.")
                                       and k.split(".", 2)[-1] in BUDGET_KEYS}))  # fmt: skip
    for key, value in items.items():
        _set_dotted(data, key, value)
    if names_epochs_only({k.removeprefix("train."): v for k, v in items.items()}):
        data["train"]["steps"] = None


def absolute_paths(cfg: Config) -> Config:
    """Relative data paths made absolute here: Ray workers run in other working directories."""
    over: dict[str, Any] = {}
    if not Path(cfg.data.cache_dir).is_absolute():
        over["data.cache_dir"] = str(Path(cfg.data.cache_dir).resolve())
    for role in ("probe", "pretrain"):
        spec = getattr(cfg.data, role)
        if spec is not None and spec.root and not Path(spec.root).expanduser().is_absolute():
            over[f"data.{role}.root"] = str(Path(spec.root).resolve())
    return cfg.with_overrides(over) if over else cfg


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
