"""The data sections of the config: where the probe and pretraining datasets come from and how
they are decoded. No torch, no Ray."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from mfclr.config.base import _Section

# ----------------------------------------------------------------------------- data


# The embedded generator's genres in its order (mfclr/data/synthetic/genres.py; a test keeps the
# two equal): named here so that a class set is checked with the config, without the generator.
EMBEDDED_GENRES: tuple[str, ...] = (
    "techno", "rock", "jazz", "ambient", "dnb", "folk", "metal", "reggae", "classical", "hiphop",
)  # fmt: skip


class EmbeddedData(_Section):
    """The synthetic genre dataset the project generates itself (no download)."""

    n_classes: int = Field(8, ge=2, le=10)
    # The class set by name (another class set than the first n_classes, to check that a recipe
    # is not tuned to one); when given, n_classes is its length.
    genres: list[str] | None = None
    clips_per_class: int = Field(40, ge=3)
    seconds: float = Field(10.0, gt=0, le=120)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _class_set(cls, data: Any) -> Any:
        genres = data.get("genres") if isinstance(data, dict) else None
        if not isinstance(genres, list):
            return data  # unset, or a type error pydantic names
        unknown = [g for g in genres if g not in EMBEDDED_GENRES]
        if unknown:
            raise ValueError(
                f"genres: unknown genre '{unknown[0]}'; choose from {', '.join(EMBEDDED_GENRES)}"
            )
        if len(set(genres)) != len(genres) or len(genres) < 2:
            raise ValueError("genres: list at least two different genres")
        return {**data, "n_classes": len(genres)}


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

    @model_validator(mode="after")
    def _labelled_probe(self) -> DataConfig:
        if self.probe.kind == "unlabelled":
            raise ValueError(
                "data.probe.kind 'unlabelled' has no labels to probe; use it as data.pretrain "
                "(kind unlabelled) beside a labelled data.probe"
            )
        return self

    @property
    def crop_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)
