"""What a dataset loader hands the cache: tracks per split, label names, files skipped and why.

Also the seeded stratified split shared by labelled folders and the embedded dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfclr.config import SPLITS
from mfclr.errors import DataError

log = logging.getLogger(__name__)

# Individual warnings per listing before switching to a count, so a half-copied dataset does
# not bury the log; every name is still kept in TrackList.skipped.
MAX_NAMED_WARNINGS = 10
_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Track:
    """One audio file: its path, integer label (-1 if unlabelled) and a stable id."""

    path: Path
    label: int
    track_id: str


@dataclass(frozen=True)
class SkippedFile:
    """A file left out: its path, a short reason key for counting ("missing", "corrupt", ...)
    and the one-line message shown to the user."""

    path: str
    reason: str
    message: str


@dataclass
class TrackList:
    """A dataset before decoding.

    splits: split name -> tracks (train/valid/test; only train for unlabelled data).
    skipped: files dropped while listing (e.g. missing), by name.
    require_rate / require_mono: strict format checks the decoder applies (GTZAN in strict mode).
    split_source: one line saying where the split came from (split files at ..., or generated).
    unlisted: audio files of the dataset that no split file lists (so they are not used).
    """

    root: Path
    label_names: list[str]
    splits: dict[str, list[Track]]
    skipped: list[SkippedFile] = field(default_factory=list)
    require_rate: int | None = None
    require_mono: bool = False
    dataset_name: str = "this dataset"
    split_source: str = ""
    unlisted: list[str] = field(default_factory=list)


def warn_skipped(skipped: Sequence[SkippedFile], what: str) -> None:
    """Log skipped files by name (the first few one per line, then the rest on one line).

    Each file is reported once per process: the training loop reopens its dataset every epoch.
    """
    fresh = [s for s in skipped if (s.path, s.reason) not in _warned]
    _warned.update((s.path, s.reason) for s in fresh)
    for item in fresh[:MAX_NAMED_WARNINGS]:
        log.warning("skipping %s", item.message)
    rest = fresh[MAX_NAMED_WARNINGS:]
    if rest:
        names = ", ".join(Path(item.path).name for item in rest[:MAX_NAMED_WARNINGS])
        log.warning(
            "skipping %d more %s files: %s%s (every name is in the dataset's stats.skipped_files)",
            len(rest), what, names, ", ..." if len(rest) > MAX_NAMED_WARNINGS else "",
        )  # fmt: skip


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


def read_split_entries(path: Path) -> list[tuple[int, str]]:
    """(line number, relative path) of each entry of a split file; blank lines and `#` comments
    are ignored."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"split file {path} cannot be read ({err}); fix or delete it") from None
    entries = ((i, line.strip()) for i, line in enumerate(lines, start=1))
    return [(i, s) for i, s in entries if s and not s.startswith("#")]


def read_split_file(path: Path) -> list[str]:
    """Relative paths from a split file; blank lines and `#` comments are ignored."""
    return [entry for _, entry in read_split_entries(path)]
