"""Your own music: a labelled folder `<root>/<class>/*.wav|flac|mp3|ogg`, or unlabelled audio.

Labelled: class names sorted give the label order. Split files `<root>/train.txt|valid.txt|test.txt`
(paths relative to root, one per line) are used when present, else a seeded stratified split.
Unlabelled: every audio file below root, all in the train split with label -1 (pretraining only).
"""

from __future__ import annotations

from pathlib import Path

from mfclr.config import DatasetSpec
from mfclr.data.audio_io import AUDIO_EXTENSIONS
from mfclr.data.listing import (
    SPLITS,
    SkippedFile,
    Track,
    TrackList,
    read_split_file,
    stratified_split,
    warn_skipped,
)
from mfclr.errors import DataError

_EXT_LIST = ", ".join(AUDIO_EXTENSIONS)


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


def class_folders(root: Path) -> list[Path]:
    """Non-hidden sub-folders of root, sorted by name (= label order)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(
            f"labelled folder {root} has no class folders; expected <root>/<class>/*.wav "
            f"(also {_EXT_LIST})"
        )
    return folders


def _split_from_files(
    root: Path, classes: dict[str, int], strict: bool
) -> tuple[dict[str, list[Track]], list[SkippedFile]]:
    splits: dict[str, list[Track]] = {}
    skipped: list[SkippedFile] = []
    seen: dict[str, str] = {}
    for name in SPLITS:
        split_file = root / f"{name}.txt"
        entries = read_split_file(split_file) if split_file.is_file() else []
        splits[name] = []
        for rel in entries:
            path = root / rel
            cls = Path(rel).parts[0] if Path(rel).parts else ""
            problem = None
            if not path.is_file():
                problem = "missing", f"{path}: listed in {split_file} but does not exist"
            elif cls not in classes or len(Path(rel).parts) < 2:
                problem = "no class", f"{path}: listed in {split_file}, not in a class folder"
            if problem:
                if strict:
                    raise DataError(f"{problem[1]}; fix the split file or run without --strict")
                skipped.append(SkippedFile(str(path), *problem))
                continue
            if rel in seen:
                raise DataError(
                    f"{rel} is listed in both {seen[rel]}.txt and {name}.txt in {root}; "
                    "a track must be in one split only"
                )
            seen[rel] = name
            splits[name].append(Track(path, classes[cls], Path(rel).as_posix()))
    return splits, skipped


def list_labelled(root: Path | str, spec: DatasetSpec, strict: bool = False) -> TrackList:
    """Tracks of a labelled folder, split by split files if present, else stratified."""
    root = _check_root(Path(root), "labelled folder")
    folders = class_folders(root)
    classes = {f.name: i for i, f in enumerate(folders)}
    tracks: list[Track] = []
    for folder in folders:
        files = audio_files_below(folder)
        if not files:
            raise DataError(
                f"class folder {folder} holds no audio files ({_EXT_LIST}); "
                "add some or remove the folder"
            )
        tracks.extend(Track(p, classes[folder.name], p.relative_to(root).as_posix()) for p in files)
    if any((root / f"{name}.txt").is_file() for name in SPLITS):
        splits, skipped = _split_from_files(root, classes, strict)
        warn_skipped(skipped, "split-file")
    else:
        index = stratified_split(
            [t.label for t in tracks], spec.valid_fraction, spec.test_fraction, spec.split_seed
        )
        splits, skipped = {name: [tracks[i] for i in idx] for name, idx in index.items()}, []
    return TrackList(root, list(classes), splits, skipped)


def list_unlabelled(root: Path | str) -> TrackList:
    """Every audio file below root (recursive) in a single train split, labels -1."""
    root = _check_root(Path(root), "unlabelled folder")
    files = audio_files_below(root)
    if not files:
        raise DataError(f"unlabelled folder {root} holds no audio files ({_EXT_LIST}) below it")
    tracks = [Track(p, -1, p.relative_to(root).as_posix()) for p in files]
    return TrackList(root, [], {"train": tracks})
