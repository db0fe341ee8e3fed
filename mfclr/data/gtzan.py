"""A local GTZAN copy in the fault-filtered split (train 443, valid 197, test 290); never downloads.

The split lists come from torchaudio (`torchaudio.datasets.gtzan`; importing them needs no
torchcodec). Accepted roots: a folder holding `genres/`, `genres_original/` or
`Data/genres_original/` (the Kaggle copy), or the genres folder itself; files are
`<genre>/<genre>.000NN.wav` or `.au`. Missing files are skipped by name (fatal when strict);
corrupt ones (common copies have a corrupt jazz.00054.wav, in train) fail at decode time.
"""

from __future__ import annotations

from pathlib import Path

from mfclr.data.listing import SkippedFile, Track, TrackList, warn_skipped
from mfclr.errors import DataError

GTZAN_RATE = 22050
_SUBFOLDERS = ("genres", "genres_original", "Data/genres_original")


def gtzan_lists() -> tuple[list[str], dict[str, list[str]]]:
    """(genre names, {split: track ids like "blues.00029"}) from torchaudio's filtered split."""
    from torchaudio.datasets.gtzan import (
        filtered_test,
        filtered_train,
        filtered_valid,
        gtzan_genres,
    )

    return list(gtzan_genres), {
        "train": list(filtered_train),
        "valid": list(filtered_valid),
        "test": list(filtered_test),
    }


def find_genres_dir(root: Path | str, genres: list[str]) -> Path:
    """The folder whose sub-folders are the genres; DataError naming the expected layout."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"GTZAN root {root} does not exist; point it at the folder holding genres/ "
            "(or genres_original/), or at the genres folder itself. GTZAN is never downloaded"
        )
    for candidate in (root, *(root / sub for sub in _SUBFOLDERS)):
        if candidate.is_dir() and any((candidate / g).is_dir() for g in genres):
            return candidate.resolve()
    raise DataError(
        f"GTZAN root {root} holds no genre folders; expected {root}/genres/<genre>/"
        "<genre>.000NN.wav (or genres_original/, or .au files), genres: " + ", ".join(genres)
    )


def _find_file(genres_dir: Path, track_id: str) -> Path | None:
    genre = track_id.split(".")[0]
    for ext in (".wav", ".au"):
        path = genres_dir / genre / f"{track_id}{ext}"
        if path.is_file():
            return path
    return None


def list_gtzan(root: Path | str, strict: bool = False) -> TrackList:
    """Tracks of a local GTZAN copy in torchaudio's fault-filtered split.

    strict: a missing file raises DataError, and the decoder later requires 22,050 Hz mono.
    """
    genres, lists = gtzan_lists()
    genres_dir = find_genres_dir(root, genres)
    label = {g: i for i, g in enumerate(genres)}
    splits: dict[str, list[Track]] = {}
    skipped: list[SkippedFile] = []
    for name, ids in lists.items():
        splits[name] = []
        for track_id in ids:
            path = _find_file(genres_dir, track_id)
            if path is None:
                where = genres_dir / track_id.split(".")[0] / f"{track_id}.wav"
                if strict:
                    raise DataError(
                        f"GTZAN file {where} (or .au) is missing; restore it or run without "
                        "--strict to skip it"
                    )
                msg = f"{where}: GTZAN file (.wav or .au) of the {name} split is missing"
                skipped.append(SkippedFile(str(where), "missing", msg))
                continue
            splits[name].append(Track(path, label[track_id.split(".")[0]], track_id))
    warn_skipped(skipped, "missing GTZAN")
    return TrackList(
        genres_dir,
        genres,
        splits,
        skipped,
        require_rate=GTZAN_RATE if strict else None,
        require_mono=strict,
        dataset_name="GTZAN",
        split_source="torchaudio's fault-filtered GTZAN split lists "
        f"(train {len(lists['train'])} / valid {len(lists['valid'])} / test {len(lists['test'])})",
    )
