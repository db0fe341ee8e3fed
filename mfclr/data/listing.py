"""What a dataset loader hands the cache: tracks per split, label names, files skipped and why.

Also the seeded stratified split shared by labelled folders and the embedded dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfclr.errors import DataError

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Individual warnings per listing before switching to a count, so a half-copied dataset does
# not bury the log; every name is still kept in TrackList.skipped.
MAX_NAMED_WARNINGS = 10


@dataclass(frozen=True)
class Track:
    """One audio file: its path, integer label (-1 if unlabelled) and a stable id."""

    path: Path
    label: int
    track_id: str


@dataclass
class TrackList:
    """A dataset before decoding.

    splits: split name -> tracks (train/valid/test; only train for unlabelled data).
    skipped: (file name, reason) for files dropped while listing (e.g. missing).
    require_rate / require_mono: strict format checks the decoder applies (GTZAN in strict mode).
    """

    root: Path
    label_names: list[str]
    splits: dict[str, list[Track]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    require_rate: int | None = None
    require_mono: bool = False
    dataset_name: str = "this dataset"


def warn_skipped(skipped: Sequence[tuple[str, str]], what: str) -> None:
    """Log skipped files by name (the first few one per line, then a count)."""
    for name, reason in skipped[:MAX_NAMED_WARNINGS]:
        log.warning("skipping %s: %s", name, reason)
    if len(skipped) > MAX_NAMED_WARNINGS:
        log.warning(
            "skipping %d more %s files (%s)",
            len(skipped) - MAX_NAMED_WARNINGS,
            what,
            ", ".join(name for name, _ in skipped[MAX_NAMED_WARNINGS:]),
        )


def stratified_split(
    labels: Sequence[int], valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Seeded per-class split of indices into train/valid/test, sorted within each split.

    Each class gives round(n * fraction) to valid and to test, but always keeps >= 1 for train;
    the shuffle depends only on (seed, class), so adding a class does not reshuffle the others.
    """
    labels_arr = np.asarray(labels, dtype=np.int64)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for cls in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == cls)
        rng = np.random.default_rng([seed, int(cls)])
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_test = min(round(n * test_fraction), max(n - 1, 0))
        n_valid = min(round(n * valid_fraction), max(n - 1 - n_test, 0))
        out["test"].extend(idx[:n_test].tolist())
        out["valid"].extend(idx[n_test : n_test + n_valid].tolist())
        out["train"].extend(idx[n_test + n_valid :].tolist())
    return {name: sorted(v) for name, v in out.items()}


def write_split_files(root: Path, splits: dict[str, list[str]]) -> None:
    """`<root>/<split>.txt`: one path relative to root per line."""
    for name, rel_paths in splits.items():
        (root / f"{name}.txt").write_text("".join(f"{p}\n" for p in rel_paths))


def read_split_file(path: Path) -> list[str]:
    """Relative paths from a split file; blank lines and `#` comments are ignored."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"split file {path} cannot be read ({err}); fix or delete it") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def check_not_empty(tracks: TrackList) -> None:
    if not tracks.splits.get("train"):
        raise DataError(
            f"dataset at {tracks.root} has no usable tracks in its train split "
            f"({len(tracks.skipped)} skipped); check the folder layout and the log"
        )
