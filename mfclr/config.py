"""The one typed configuration of mfclr: every default lives here.

A `Config` is frozen and validated when it is built: unknown keys, wrong types and impossible
values (temperature <= 0, an inverted range, a mask wider than its axis) raise `ConfigError`
with a one-line message naming the key and the fix. This module imports neither torch nor Ray.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mfclr.errors import ConfigError
from mfclr.io import atomic_write_text

Format = Literal["audio", "spectrogram"]
PretrainFormat = Literal["audio", "spectrogram", "cross"]
FORMATS: tuple[str, ...] = ("audio", "spectrogram")
# Cross-format pretraining: both encoders at once, the two formats of a track as the positive pair.
CROSS = "cross"
PRETRAIN_FORMATS: tuple[str, ...] = (*FORMATS, CROSS)
PRESET_DIR = Path(__file__).parent / "presets"
# Encoder-set names a compare variant may not take (they name rows already).
RESERVED_SET_NAMES: tuple[str, ...] = ("trained", "random", "random_init", CROSS, *FORMATS)
# Variants share the encoders' architecture (so the random-init controls fit them too), the
# probe data and the inputs.
COMPARE_PREFIXES: tuple[str, ...] = ("train.", "augment.", "model.projector")
# The fusion strategies of mfclr/probe/fusion.py's registry (a test keeps the two equal): the
# config checks names here, without importing torch.
FUSION_NAMES: tuple[str, ...] = ("concat", "average", "weighted", "gated")
HEAD_NAMES: tuple[str, ...] = ("linear", "mlp")  # probe-head kinds (mfclr/heads.py ProbeHead)
# The dataset splits, in order: probes fit on train, choose settings on valid, report on test.
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.2 rules; 1.1 makes it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with mfclr's loader."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class _Section(BaseModel):
    # strict: "0.5" is not a float and 1.0 is not an int; YAML already gives real types.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _check_range(lo: float, hi: float, name: str) -> None:
    if lo > hi:
        raise ValueError(f"{name}: min ({lo}) is above max ({hi}); swap them")


# ----------------------------------------------------------------------------- data


class EmbeddedData(_Section):
    """The synthetic genre dataset the project generates itself (no download)."""

    n_classes: int = Field(8, ge=2, le=10)
    clips_per_class: int = Field(40, ge=3)
    seconds: float = Field(10.0, gt=0, le=120)
    seed: int = 0


# The dataset kinds (`data.probe.kind`, `data.pretrain.kind`) and what each reads.
DATASET_KINDS: dict[str, str] = {
    "embedded": "synthetic genres generated from a seed into data.cache_dir (no download)",
    "gtzan": "a local GTZAN copy (root holds genres/ or genres_original/), fault-filtered split",
    "folder": "labelled: <root>/<class>/*.wav or <root>/genres/<class>/*.wav, split files in "
    "<root>/splits/ or beside the classes (else a stratified split)",
    "unlabelled": "any audio below root, pretraining only",
}


class DatasetSpec(_Section):
    """Where one dataset comes from; `kind` is one of DATASET_KINDS."""

    kind: Literal["embedded", "gtzan", "folder", "unlabelled"] = "embedded"
    root: str | None = None
    # kind folder: the folder of train.txt/valid.txt/test.txt (relative to root, or absolute).
    # Unset: <root>/splits/ or <root> itself, whichever holds them (else a stratified split).
    splits: str | None = None
    embedded: EmbeddedData = EmbeddedData()
    # Labelled folders without split files get a seeded stratified split with these fractions.
    valid_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.3, ge=0.0, lt=1.0)
    split_seed: int = 0

    @model_validator(mode="after")
    def _root_needed(self) -> DatasetSpec:
        if self.kind != "embedded" and not self.root:
            raise ValueError(f"dataset kind '{self.kind}' needs a root folder; set its root")
        if self.splits is not None and self.kind != "folder":
            raise ValueError(f"splits applies to kind 'folder' only, not '{self.kind}'; unset it")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must leave room for a train split")
        return self


class DataConfig(_Section):
    sample_rate: int = Field(22050, ge=8000, le=48000)
    clip_seconds: float = Field(5.0, gt=0, le=60)
    # The probe dataset (labelled). Pretraining uses its train split unless `pretrain` is set.
    probe: DatasetSpec = DatasetSpec()
    pretrain: DatasetSpec | None = None
    cache_dir: str = "data_cache"
    # strict: a missing/corrupt/mismatched file stops the run instead of being skipped.
    strict: bool = False
    short_clips: Literal["pad", "reject"] = "pad"
    loader_workers: int = Field(0, ge=0, le=64)

    @property
    def crop_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)


# ----------------------------------------------------------------------------- augmentation


class NoiseAug(_Section):
    """White Gaussian noise at a random SNR (dB)."""

    p: float = Field(0.8, ge=0.0, le=1.0)
    min_snr_db: float = 10.0
    max_snr_db: float = 40.0

    @model_validator(mode="after")
    def _range(self) -> NoiseAug:
        _check_range(self.min_snr_db, self.max_snr_db, "snr_db")
        return self


class GainAug(_Section):
    p: float = Field(0.5, ge=0.0, le=1.0)
    min_db: float = -6.0
    max_db: float = 0.0

    @model_validator(mode="after")
    def _range(self) -> GainAug:
        _check_range(self.min_db, self.max_db, "gain")
        return self


class FilterAug(_Section):
    """One random biquad per example: low-pass, high-pass or band-pass."""

    p: float = Field(0.8, ge=0.0, le=1.0)
    min_lowpass_hz: float = Field(2200.0, gt=0)
    max_lowpass_hz: float = Field(4000.0, gt=0)
    min_highpass_hz: float = Field(200.0, gt=0)
    max_highpass_hz: float = Field(1200.0, gt=0)
    min_bandpass_hz: float = Field(200.0, gt=0)
    max_bandpass_hz: float = Field(4000.0, gt=0)
    min_bandwidth_fraction: float = Field(0.5, gt=0)
    max_bandwidth_fraction: float = Field(1.99, gt=0)

    @model_validator(mode="after")
    def _range(self) -> FilterAug:
        _check_range(self.min_lowpass_hz, self.max_lowpass_hz, "lowpass_hz")
        _check_range(self.min_highpass_hz, self.max_highpass_hz, "highpass_hz")
        _check_range(self.min_bandpass_hz, self.max_bandpass_hz, "bandpass_hz")
        _check_range(self.min_bandwidth_fraction, self.max_bandwidth_fraction, "bandwidth_fraction")
        return self


class PitchAug(_Section):
    """Pitch shift by a whole number of semitones in [-semitones, +semitones], tempo unchanged."""

    p: float = Field(0.6, ge=0.0, le=1.0)
    semitones: int = Field(5, ge=0, le=12)


class AudioAugConfig(_Section):
    backend: Literal["torch", "audiomentations"] = "torch"
    noise: NoiseAug = NoiseAug()
    gain: GainAug = GainAug()
    filter: FilterAug = FilterAug()
    pitch: PitchAug = PitchAug()


class MaskAug(_Section):
    """A mask of random width in [0, size] at a random position, applied with probability p."""

    p: float = Field(0.8, ge=0.0, le=1.0)
    size: int = Field(24, ge=0)


class FreqShiftAug(_Section):
    """Shift the mel spectrogram by a whole number of bins in [-max_bins, max_bins] (the
    spectrogram's pitch shift: mel bins are near-logarithmic in frequency); vacated bins read
    as the floor. Two crops of one clip share its key; this stops key being a free match."""

    p: float = Field(0.0, ge=0.0, le=1.0)
    max_bins: int = Field(0, ge=0)


class SpectrogramAugConfig(_Section):
    # Audio noise mixed into the waveform before the mel spectrogram.
    noise: NoiseAug = NoiseAug(p=0.5, min_snr_db=10.0, max_snr_db=30.0)
    freq_shift: FreqShiftAug = FreqShiftAug()
    freq_mask: MaskAug = MaskAug(size=24)
    time_mask: MaskAug = MaskAug(size=40)


class AugmentConfig(_Section):
    audio: AudioAugConfig = AudioAugConfig()
    spectrogram: SpectrogramAugConfig = SpectrogramAugConfig()


class MelConfig(_Section):
    n_fft: int = Field(2048, ge=16)
    hop_length: int = Field(512, ge=1)
    n_mels: int = Field(128, ge=8)
    f_min: float = Field(0.0, ge=0.0)
    f_max: float | None = None
    top_db: float = Field(80.0, gt=0)


# ----------------------------------------------------------------------------- models


class SampleCNNConfig(_Section):
    # Stem + 9 blocks; the last width is the representation size (512 in the paper).
    channels: list[int] = [128, 128, 128, 256, 256, 256, 256, 256, 256, 512]

    @model_validator(mode="after")
    def _ten(self) -> SampleCNNConfig:
        if len(self.channels) != 10 or min(self.channels) < 1:
            raise ValueError("samplecnn.channels needs 10 positive widths (stem + 9 blocks)")
        return self


class ResNetConfig(_Section):
    # torchvision's ResNet-18 is [2, 2, 2, 2]; fewer blocks make tests fast. Output is 512-d.
    blocks: list[int] = [2, 2, 2, 2]

    @model_validator(mode="after")
    def _four(self) -> ResNetConfig:
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError("resnet.blocks needs 4 positive block counts")
        return self


class ModelConfig(_Section):
    samplecnn: SampleCNNConfig = SampleCNNConfig()
    resnet: ResNetConfig = ResNetConfig()
    projector_hidden: int = Field(512, ge=1)
    projector_dim: int = Field(128, ge=1)


# ----------------------------------------------------------------------------- training


class TrainConfig(_Section):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(48, ge=2)
    lr: float = Field(3e-4, gt=0)
    # Learning-rate schedule over all optimiser steps: linear warm-up for `warmup_steps`, then
    # constant or a cosine decay to zero at the last step (`schedule`).
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(1e-6, ge=0)
    temperature: float = Field(0.5, gt=0)
    # Weight of a VICReg-style variance/covariance term on the encoder output h, added to
    # NT-Xent against dimensional collapse (0: NT-Xent alone, the paper's objective).
    vc_weight: float = Field(0.0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    # NT-Xent takes negatives from every data-parallel rank (Ray Train workers).
    gather_negatives: bool = True
    # Cap on optimizer steps per epoch (None: one pass over the train split).
    max_steps_per_epoch: int | None = Field(None, ge=1)
    # Validation metric every N epochs (0: off), on valid-split embeddings, never test:
    # `knn` = cosine kNN accuracy against train embeddings; `probe` = accuracy of a quick probe
    # with head `val_head` fitted on train embeddings. Tune's early stopping reads it.
    eval_every: int = Field(1, ge=0)
    val_metric: Literal["knn", "probe"] = "knn"
    val_head: Literal["linear", "mlp"] = "linear"
    knn_k: int = Field(10, ge=1)  # neighbours of the `knn` validation metric
    # Clips longer than this many crops per track are embedded from at most this many chunks.
    max_eval_chunks: int = Field(8, ge=1)


class ProbeConfig(_Section):
    fusions: list[str] = ["concat"]
    heads: list[str] = ["linear", "mlp"]
    hidden_dim: int = Field(512, ge=1)
    # Probe settings are chosen on the valid split only, over this grid.
    lrs: list[float] = [1e-3, 1e-2]
    weight_decays: list[float] = [0.0, 1e-3]
    max_epochs: int = Field(300, ge=1)
    patience: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    random_init_control: bool = True

    @model_validator(mode="after")
    def _known_names(self) -> ProbeConfig:
        # Checked here, not when the probe runs: a typo must not cost a whole embedding pass.
        for key, names, valid in (
            ("fusions", self.fusions, FUSION_NAMES),
            ("heads", self.heads, HEAD_NAMES),
        ):
            bad = [n for n in names if n not in valid]
            if bad:
                raise ValueError(
                    f"unknown {key[:-1]} '{bad[0]}' in probe.{key}; choose from {', '.join(valid)}"
                )
        if not self.heads:  # no fusion is fine (single formats only); no head gives no row
            raise ValueError(f"probe.heads is empty; list at least one of {', '.join(HEAD_NAMES)}")
        return self


class RayConfig(_Section):
    """Resources of a Ray Train run (`mfclr pretrain --workers N`, each sweep trial)."""

    workers: int = Field(1, ge=1)  # data-parallel Ray Train workers
    cpus_per_worker: float = Field(1.0, gt=0)
    # GPUs per worker when the run uses GPUs (train.device cuda, or auto on a cluster with
    # GPUs); 0 keeps every worker on CPU.
    gpus_per_worker: float = Field(1.0, ge=0)
    max_failures: int = Field(1, ge=0)  # worker-group restarts (resume from the checkpoint)


class TrackingConfig(_Section):
    # offline writes W&B run files locally (`wandb sync` uploads them); WANDB_MODE overrides.
    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "mfclr"
    entity: str | None = None
    group: str | None = None


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

    @model_validator(mode="after")
    def _compare_variants(self) -> Config:
        for name, overrides in self.compare.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in RESERVED_SET_NAMES:
                raise ValueError(
                    f"compare variant name '{name}' must be lower-case letters, digits or _ "
                    f"and not one of {', '.join(RESERVED_SET_NAMES)}; rename it"
                )
            for key in overrides:
                if not key.startswith(COMPARE_PREFIXES):
                    raise ValueError(
                        f"compare.{name}: '{key}' cannot vary between variants (probe data, "
                        f"inputs and encoders are shared); use keys under "
                        f"{', '.join(COMPARE_PREFIXES)}"
                    )
            self.variant(name)  # unknown keys and bad values fail now, not after pretraining
        return self

    def variant(self, name: str) -> Config:
        """The config of compare variant `name`: this one with its overrides (and no variants)."""
        data = self.to_dict()
        data["compare"] = {}
        try:
            for key, value in self.compare[name].items():
                _set_dotted(data, key, value)
            return build_config(data)
        except ConfigError as err:
            raise ConfigError(f"compare.{name}: {err}") from None

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
        for key, value in items.items():
            _set_dotted(data, key, value)
        return build_config(data)


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


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
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
    preset may leave a required key, such as a dataset root, to the command line)."""
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
        data = _merge(data, read_yaml(path))
    items = parse_set_args(overrides) if isinstance(overrides, list) else overrides or {}
    for key, value in items.items():
        _set_dotted(data, key, value)
    return build_config(data)


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
