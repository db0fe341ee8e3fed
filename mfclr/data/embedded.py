"""The embedded default dataset: synthetic genre clips generated from a seed, no download.

`generate_embedded` writes real wav files in the labelled-folder layout
`<root>/<genre>/<genre>.00007.wav`, split files `<root>/train.txt|valid.txt|test.txt` (a seeded
stratified 50/20/30 split per class) and `manifest.json` with the generation parameters. A root
whose manifest matches is left alone; the folder appears atomically (built beside it, renamed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mfclr.config import SPLITS, EmbeddedData
from mfclr.data.audio_io import write_audio
from mfclr.data.listing import stratified_split, write_split_files
from mfclr.data.synthetic.genres import GENRES
from mfclr.errors import DataError
from mfclr.io import check_writable_dir, fsync_dir, storage_error, temp_name
from mfclr.progress import enabled as progress_enabled

log = logging.getLogger(__name__)

# Bump when the synthesiser changes: existing generated folders are then rebuilt.
GENERATOR_VERSION = 2
VALID_FRACTION, TEST_FRACTION = 0.2, 0.3
MANIFEST = "manifest.json"


def embedded_params(spec: EmbeddedData, sample_rate: int) -> dict[str, Any]:
    """Everything the generated files depend on (the manifest's content)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "genres": list(spec.genres or GENRES[: spec.n_classes]),
        "clips_per_class": spec.clips_per_class,
        "seconds": spec.seconds,
        "seed": spec.seed,
        "sample_rate": sample_rate,
    }


def embedded_dir_name(spec: EmbeddedData, sample_rate: int) -> str:
    """A folder name unique to the generation parameters, e.g. `embedded-3f2a9c1b04de`."""
    blob = json.dumps(embedded_params(spec, sample_rate), sort_keys=True).encode()
    return f"embedded-{hashlib.sha256(blob).hexdigest()[:12]}"


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    return _read_manifest(root) == params and all((root / f"{s}.txt").is_file() for s in SPLITS)


def _write_all(tmp: Path, params: dict[str, Any], progress: bool) -> None:
    # Imported here: the synthesiser pulls in scipy.signal, a second or more at the start of
    # every process (a Tune trial, a Ray Train worker) that only reads the written clips.
    from mfclr.data.synthetic import render_clip

    genres, per_class = params["genres"], params["clips_per_class"]
    sr, seconds, seed = params["sample_rate"], params["seconds"], params["seed"]
    rel_paths, labels = [], []
    bar = tqdm(
        total=len(genres) * per_class, desc="generating embedded dataset", unit="clip",
        file=sys.stderr, disable=not progress_enabled(progress), leave=False,
    )  # fmt: skip
    with bar:
        for c, genre in enumerate(genres):
            for i in range(per_class):
                # Seeded by (seed, class, clip) alone: more clips or classes keep the old ones.
                clip = render_clip(genre, np.random.default_rng([seed, c, i]), sr, seconds)
                rel = f"{genre}/{genre}.{i:05d}.wav"
                write_audio(tmp / rel, clip, sr)
                rel_paths.append(rel)
                labels.append(c)
                bar.update()
    index = stratified_split(labels, VALID_FRACTION, TEST_FRACTION, seed)
    write_split_files(tmp, {name: [rel_paths[i] for i in idx] for name, idx in index.items()})
    # The manifest goes last: its presence means the folder is complete.
    (tmp / MANIFEST).write_text(json.dumps(params, indent=2, sort_keys=True))


def generate_embedded(
    root: Path | str, spec: EmbeddedData, sample_rate: int, *, progress: bool = False
) -> Path:
    """Generate the embedded dataset into `root` unless it is already there; returns root.

    Writes n_classes x clips_per_class wav files of `spec.seconds` s at `sample_rate` Hz.
    """
    root = Path(root)
    params = embedded_params(spec, sample_rate)
    if _is_complete(root, params):
        return root
    if root.exists() and any(root.iterdir()) and _read_manifest(root) is None:
        raise DataError(
            f"{root} is not empty and holds no {MANIFEST}; choose an empty or new folder as "
            "the embedded dataset's root"
        )
    log.info(
        "generating the embedded dataset (%d genres x %d clips x %g s at %d Hz) in %s",
        len(params["genres"]), spec.clips_per_class, spec.seconds, sample_rate, root,
    )  # fmt: skip
    check_writable_dir(root.parent, "the embedded dataset's folder (data.cache_dir)")
    tmp = root.parent / temp_name(root.name)
    try:
        _write_all(tmp, params, progress)
        _swap_in(tmp, root, params)
        fsync_dir(root.parent)
    except OSError as err:
        raise storage_error(root, err, "embedded dataset") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _swap_in(tmp: Path, root: Path, params: dict[str, Any]) -> None:
    """Move the finished folder to root, replacing an outdated generated one."""
    if root.exists():
        if _is_complete(root, params):  # another process finished first
            return
        trash = root.parent / temp_name(root.name)
        root.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:
        if not _is_complete(root, params):
            raise
