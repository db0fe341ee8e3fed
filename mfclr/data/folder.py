"""Your own music: a labelled folder of class folders, or unlabelled audio.

Labelled layouts (class names sorted give the label order), both detected from `root` alone:

    <root>/<class>/*.wav|flac|mp3|ogg                 split files beside the classes:
    <root>/train.txt, valid.txt, test.txt              <class>/<file> per line
    <root>/genres/<class>/<class>.NNNNN.wav            the common layout of published datasets:
    <root>/splits/train.txt, valid.txt, test.txt       genres/<class>/<file> per line

Split files hold one path per line, relative to `root` (blank lines and `#` comments ignored); the
spec's `splits` key names another folder of them. Each path is normalised (`./a/x.wav`,
`a/../b/x.wav`), must stay inside `root`, takes its class from the normalised path, and may be
listed once only. Without split files, a seeded stratified split is made. Where the split came
from is always said (`TrackList.split_source`), and files that no split file lists are counted.

Unlabelled: every audio file below root, all in the train split with label -1 (pretraining only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mfclr.config import SPLITS, DatasetSpec
from mfclr.data.audio_io import AUDIO_EXTENSIONS
from mfclr.data.listing import (
    SkippedFile,
    Track,
    TrackList,
    read_split_entries,
    stratified_split,
    warn_skipped,
)
from mfclr.errors import DataError

_EXT_LIST = ", ".join(AUDIO_EXTENSIONS)
# Sub-folders of a dataset root that hold the class folders / the split files when present.
CLASSES_SUBFOLDER = "genres"
SPLITS_SUBFOLDER = "splits"


@dataclass(frozen=True)
class Layout:
    """Where a labelled dataset's parts are: `root` (split paths are relative to it), the folder
    of the class folders, and the folder of the split files (None: no split files)."""

    root: Path
    classes_root: Path
    split_dir: Path | None


def _check_root(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise DataError(f"{what} root {root} does not exist or is not a folder; check the path")
    return root.resolve()


def audio_files_below(folder: Path) -> list[Path]:
    """Audio files anywhere below `folder` (hidden folders skipped), sorted for a stable order."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _has_split_files(folder: Path) -> bool:
    return any((folder / f"{name}.txt").is_file() for name in SPLITS)


def find_layout(root: Path, splits: str | None = None) -> Layout:
    """Detect the class folder and the split files of a labelled dataset at `root` (resolved).

    `splits`: the folder of the split files (relative to root, or absolute), when not detected.
    """
    genres = root / CLASSES_SUBFOLDER
    classes_root = genres if genres.is_dir() else root
    if splits is not None:
        split_dir = (root / Path(splits).expanduser()).resolve()
        if not _has_split_files(split_dir):
            raise DataError(
                f"split folder {split_dir} (the dataset's splits key) holds none of "
                f"{', '.join(f'{s}.txt' for s in SPLITS)}; fix the path or unset the key"
            )
        return Layout(root, classes_root, split_dir)
    for candidate in (root / SPLITS_SUBFOLDER, root):
        if candidate.is_dir() and _has_split_files(candidate):
            return Layout(root, classes_root, candidate)
    return Layout(root, classes_root, None)


def class_folders(layout: Layout) -> list[Path]:
    """Non-hidden sub-folders of the classes root, sorted by name (= label order); never the
    folder of the split files."""
    root = layout.classes_root
    skip = {layout.split_dir, layout.root / SPLITS_SUBFOLDER}
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p not in skip
    )
    if not folders:
        raise DataError(
            f"labelled folder {root} has no class folders; expected <root>/<class>/*.wav or "
            f"<root>/{CLASSES_SUBFOLDER}/<class>/*.wav (also {_EXT_LIST})"
        )
    return folders


def _normalised(root: Path, entry: str, where: str) -> Path:
    """`root/entry` with `.` and `..` resolved (lexically: symlinks stay allowed); DataError when
    it leaves `root`."""
    path = Path(os.path.normpath(root / entry))
    if not path.is_relative_to(root):
        raise DataError(
            f"{where}: '{entry}' points outside the dataset root {root}; "
            "list paths relative to the root, inside it"
        )
    return path


def _class_of(layout: Layout, path: Path) -> str | None:
    """The class folder `path` lies in (its first part below the classes root), else None."""
    if not path.is_relative_to(layout.classes_root):
        return None
    parts = path.relative_to(layout.classes_root).parts
    return parts[0] if len(parts) >= 2 else None


def _split_from_files(
    layout: Layout, classes: dict[str, int], strict: bool
) -> tuple[dict[str, list[Track]], list[SkippedFile]]:
    assert layout.split_dir is not None
    root = layout.root
    splits: dict[str, list[Track]] = {}
    skipped: list[SkippedFile] = []
    seen: dict[str, tuple[str, int, str]] = {}  # normalised path -> (split, line, as written)
    for name in SPLITS:
        split_file = layout.split_dir / f"{name}.txt"
        entries = read_split_entries(split_file) if split_file.is_file() else []
        splits[name] = []
        for line, entry in entries:
            path = _normalised(root, entry, f"split file {split_file} line {line}")
            key = path.relative_to(root).as_posix()
            if key in seen:
                other, other_line, written = seen[key]
                raise DataError(
                    f"{key} is listed in {other}.txt line {other_line} ('{written}') and in "
                    f"{name}.txt line {line} ('{entry}') of {layout.split_dir}; a track must be "
                    "listed once, in one split only"
                )
            seen[key] = (name, line, entry)
            cls = _class_of(layout, path)
            problem = None
            if not path.is_file():
                problem = "missing", f"{path}: listed in {split_file} but does not exist"
            elif cls not in classes:
                problem = "no class", f"{path}: listed in {split_file}, not in a class folder"
            if problem:
                if strict:
                    raise DataError(f"{problem[1]}; fix the split file or run without --strict")
                skipped.append(SkippedFile(str(path), *problem))
                continue
            assert cls is not None
            splits[name].append(Track(path, classes[cls], key))
    return splits, skipped


def _stratified_source(layout: Layout, spec: DatasetSpec) -> str:
    root = layout.root
    line = (
        f"no split files found (looked for {root}/{SPLITS_SUBFOLDER}/{{train,valid,test}}.txt "
        f"and {root}/{{train,valid,test}}.txt); generated a seeded stratified split "
        f"(valid {spec.valid_fraction:g}, test {spec.test_fraction:g}, seed {spec.split_seed})"
    )
    above = root.parent / SPLITS_SUBFOLDER
    if _has_split_files(above):
        line += f"; {above} has split files: set the root to {root.parent} to use them"
    return line


def list_labelled(root: Path | str, spec: DatasetSpec, strict: bool = False) -> TrackList:
    """Tracks of a labelled folder, split by split files if present, else stratified."""
    layout = find_layout(_check_root(Path(root), "labelled folder"), spec.splits)
    folders = class_folders(layout)
    classes = {f.name: i for i, f in enumerate(folders)}
    tracks: list[Track] = []
    for folder in folders:
        files = audio_files_below(folder)
        if not files:
            raise DataError(
                f"class folder {folder} holds no audio files ({_EXT_LIST}); "
                "add some or remove the folder"
            )
        tracks.extend(
            Track(p, classes[folder.name], p.relative_to(layout.root).as_posix()) for p in files
        )
    unlisted: list[str] = []
    if layout.split_dir is not None:
        splits, skipped = _split_from_files(layout, classes, strict)
        warn_skipped(skipped, "split-file")
        listed = {t.track_id for split in splits.values() for t in split}
        unlisted = [t.track_id for t in tracks if t.track_id not in listed]
        given = [s for s in SPLITS if (layout.split_dir / f"{s}.txt").is_file()]
        source = f"split files at {layout.split_dir} ({', '.join(f'{s}.txt' for s in given)})"
        if len(given) < len(SPLITS):
            source += f"; no {', '.join(f'{s}.txt' for s in SPLITS if s not in given)}: empty"
    else:
        index = stratified_split(
            [t.label for t in tracks], spec.valid_fraction, spec.test_fraction, spec.split_seed
        )
        splits, skipped = {name: [tracks[i] for i in idx] for name, idx in index.items()}, []
        source = _stratified_source(layout, spec)
    return TrackList(
        layout.root, list(classes), splits, skipped, split_source=source, unlisted=unlisted
    )


def list_unlabelled(root: Path | str) -> TrackList:
    """Every audio file below root (recursive) in a single train split, labels -1."""
    root = _check_root(Path(root), "unlabelled folder")
    files = audio_files_below(root)
    if not files:
        raise DataError(f"unlabelled folder {root} holds no audio files ({_EXT_LIST}) below it")
    tracks = [Track(p, -1, p.relative_to(root).as_posix()) for p in files]
    source = "unlabelled: every audio file below the root, all in the train split"
    return TrackList(root, [], {"train": tracks}, split_source=source)
