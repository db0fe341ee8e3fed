"""The sections of the one typed configuration (`mfclr.config.Config`): data, augmentation, mel,
models, training, probe, Ray resources, tracking; the names the config checks against. Each
section is frozen, strict and validated on construction. No torch, no Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mfclr.config.base import _check_range, _Loader, _Section, yaml_load  # noqa: F401
from mfclr.config.data import (  # noqa: F401 (re-exported: one import path)
    DATASET_KINDS,
    EMBEDDED_GENRES,
    DataConfig,
    DatasetSpec,
    EmbeddedData,
)
from mfclr.config.formats import CROSS, check_format

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
# Encoder-set names a compare variant may not take (they name rows already; format names too).
RESERVED_SET_NAMES: tuple[str, ...] = ("trained", "random", "random_init", CROSS, "mfcc")
# What compare variants and per-format recipes may set: the recipe (training, augmentation,
# projector) and a format's own input and encoder (its sample rate and crop length, mel
# settings, encoder widths). Each encoder's random-init control is built from its own
# architecture and frontend, and it embeds the probe tracks at its own rate. The probe data,
# its split and the probe itself stay shared.
COMPARE_PREFIXES: tuple[str, ...] = (
    "train.", "augment.", "model.", "mel.", "data.sample_rate", "data.clip_seconds",
)  # fmt: skip
# The fusion strategies of mfclr/probe/fusion.py's registry (a test keeps the two equal): the
# config checks names here, without importing torch.
FUSION_NAMES: tuple[str, ...] = ("concat", "scaled", "average", "weighted", "product", "gated")
HEAD_NAMES: tuple[str, ...] = ("linear", "mlp")  # probe-head kinds (mfclr/heads.py ProbeHead)
# Projection heads g(h) the contrastive loss sees (mfclr/heads.py Projector): SimCLR's ablation.
PROJECTOR_NAMES: tuple[str, ...] = ("mlp", "linear", "none")
# Resources Ray defines itself: not custom resources (ray.custom_resources).
RAY_BUILTIN_RESOURCES: tuple[str, ...] = ("CPU", "GPU", "memory", "object_store_memory")
# The dataset splits, in order: probes fit on train, choose settings on valid, report on test.
SPLITS: tuple[str, ...] = ("train", "valid", "test")


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
    # The waveform frontend: "rms" scales every crop to one RMS level before the encoder (in
    # training, after the augmentations; in embedding too), so two crops of a track cannot be
    # matched by their loudness, which says nothing of the music (the log-mel frontend is
    # relative to each clip's peak for the same reason); "none" feeds the samples as they are.
    # rms won on the real-music panel (docs/results.md).
    normalize: Literal["none", "rms"] = "rms"

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
    # The projection head g(h) under the loss (SimCLR's ablation): `mlp` Linear-ReLU-Linear
    # (projector_hidden units, the paper's), `linear` one Linear, `none` the loss on h itself.
    # Only the encoder is exported: the head shapes what h learns, not what is probed.
    projector: Literal["mlp", "linear", "none"] = "mlp"
    projector_hidden: int = Field(512, ge=1)  # mlp only
    projector_dim: int = Field(128, ge=1)  # z's size (mlp, linear); none: z = h


# ----------------------------------------------------------------------------- training


class TrainConfig(_Section):
    epochs: int = Field(100, ge=1)
    # A budget in optimiser steps instead (None: `epochs` is the budget): `epochs` is then
    # derived from the pretraining split, the fewest whole epochs that hold this many steps, so a
    # small dataset gets as many steps as a large one (mfclr/train/budget.py). Not in sweeps,
    # whose budget is budget.epochs.
    steps: int | None = Field(None, ge=1)
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
    # The two formats `cross` pretraining trains together: a track's first crop through the
    # first format's chain, its second through the second's, as the positive pair.
    cross_pair: list[str] = ["audio", "spectrogram"]

    @field_validator("cross_pair")
    @classmethod
    def _pair(cls, pair: list[str]) -> list[str]:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"cross_pair names two different formats, got {pair}")
        for name in pair:
            check_format(name)
        return pair


class ProbeConfig(_Section):
    fusions: list[str] = ["concat"]
    heads: list[str] = ["linear", "mlp"]
    hidden_dim: int = Field(512, ge=1)
    # Probe settings are chosen on the valid split only, over this grid.
    lrs: list[float] = [1e-3, 1e-2]
    weight_decays: list[float] = [0.0, 1e-3]
    max_epochs: int = Field(300, ge=1)
    patience: int = Field(30, ge=1)
    # How the linear head is fitted: "lbfgs" solves the L2-regularised cross-entropy to
    # convergence (multinomial logistic regression, SimCLR's linear evaluation), one fit per
    # `l2s` value; "adam" trains it like the MLP head (the lrs x weight_decays grid, early
    # stopping on valid), which under-fitted the 1024-d concatenation (measured at 0079041). The MLP
    # head and the gated fusion always use Adam.
    linear_solver: Literal["adam", "lbfgs"] = "lbfgs"
    # L2 penalty 0.5 * l2 * |W|^2 on the mean cross-entropy, chosen on valid (lbfgs only);
    # strongest first: each fit starts from the previous solution.
    l2s: list[float] = [1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
    lbfgs_max_iter: int = Field(500, ge=1)
    # What valid picks the epoch and grid point by: accuracy (ties: lower loss) or the loss
    # alone, which is smoother and less optimistic on small valid splits. "auto": the loss for
    # L-BFGS fits (l2), accuracy for Adam fits (epoch and grid point): by accuracy, one valid
    # track in 640 moved an l2 choice worth 2.7 test points (measured at 0079041).
    select: Literal["auto", "accuracy", "loss"] = "auto"
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    random_init_control: bool = True
    # A row of MFCC statistics (mean and std of 20 coefficients over the whole track) under the
    # same probe: the classic baseline every trained row is compared with (delta_vs_mfcc).
    mfcc_baseline: bool = True
    # The row saved as classifier.pt beside results.json (`mfclr run`, `mfclr probe`, a sweep's
    # final stage), "NAME/HEAD" as the table names it: "fused/linear", "random-init/mlp".
    # None: the row with the best valid accuracy among those with trained encoders.
    save_row: str | None = None

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
        name, _, head = (self.save_row or "/").rpartition("/")
        if self.save_row is not None and (not name or head not in self.heads):
            raise ValueError(
                f"probe.save_row '{self.save_row}' must be NAME/HEAD with HEAD one of "
                f"probe.heads ({', '.join(self.heads)}), e.g. fused/{self.heads[0]}"
            )
        if self.linear_solver == "lbfgs" and (not self.l2s or min(self.l2s) <= 0):
            # l2 = 0 has no optimum on separable data: L-BFGS would run the weights to infinity.
            raise ValueError(f"probe.l2s must be a non-empty list of numbers > 0, got {self.l2s}")
        return self


class RayConfig(_Section):
    """Resources of a Ray Train run (`mfclr pretrain --workers N`, each sweep trial)."""

    workers: int = Field(1, ge=1)  # data-parallel Ray Train workers
    cpus_per_worker: float = Field(1.0, gt=0)
    # GPUs per worker when the run uses GPUs (train.device cuda, or auto on a cluster with
    # GPUs); 0 keeps every worker on CPU.
    gpus_per_worker: float = Field(1.0, ge=0)
    max_failures: int = Field(1, ge=0)  # worker-group restarts (resume from the checkpoint)
    # Ray custom resources each worker (a one-worker trial: the trial) also asks for, e.g.
    # {victim: 1} to place trials on the nodes started with `ray start --resources`.
    custom_resources: dict[str, float] = {}

    @field_validator("custom_resources")
    @classmethod
    def _custom(cls, resources: dict[str, float]) -> dict[str, float]:
        for name, amount in resources.items():
            if name in RAY_BUILTIN_RESOURCES or name.startswith("node:"):
                raise ValueError(
                    f"'{name}' is not a custom resource; set CPUs and GPUs with "
                    "ray.cpus_per_worker / ray.gpus_per_worker"
                )
            # Ray's own rule: a request above 1 must be whole (fractions share one unit).
            if amount <= 0 or (amount > 1 and not float(amount).is_integer()):
                raise ValueError(
                    f"custom resource '{name}': {amount} is not a valid amount; use a "
                    "fraction in (0, 1] or a whole number"
                )
        return resources


class TrackingConfig(_Section):
    # offline writes W&B run files locally (`wandb sync` uploads them); WANDB_MODE overrides.
    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "mfclr"
    entity: str | None = None
    group: str | None = None
