"""Embedding and classifying audio outside a dataset: files, folders and waveforms in memory.

    clf = Classifier(load_classifier_file("runs/demo/classifier.pt"))
    preds = clf.predict_files(["song.wav", "album/"])   # preds.probs (n, C), preds.skipped
    probs = clf.predict(waveform, 44100)                 # (C,)

Each file is decoded once and brought to each rate its encoders read as the data cache brings
a track (mfclr/data/files.py), cut into chunks as the probe cuts a track (`track_chunks`:
`chunk_starts` over at most max_chunks crops), and embedded by `embed_tracks`, the probe's own
chunk-and-mean-pool: chunks of consecutive files share forward batches of `batch_size` rows.
Files are taken in blocks of up to BLOCK_BYTES of chunks, so memory stays flat over any list;
within a block the batches are the probe's. A file that cannot be used (corrupt, truncated,
empty, non-finite, too short) is skipped with one log line naming it, or, with `strict`, stops
the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mfclr.data.audio_io import error_reason
from mfclr.data.clips import track_chunks
from mfclr.data.files import find_audio, load_file, waveform_at
from mfclr.errors import AudioError
from mfclr.formats.frozen import FrozenEncoder
from mfclr.probe.bundle import SavedClassifier
from mfclr.probe.embed import embed_tracks
from mfclr.progress import enabled as progress_enabled

log = logging.getLogger(__name__)

# Chunks held before a block is embedded (float32 bytes, all formats together).
BLOCK_BYTES = 256 * 2**20
# Shorter lists finish before a progress bar would help.
PROGRESS_MIN_FILES = 8


@dataclass(frozen=True)
class Encoding:
    """One encoder and how it reads a track: at most `max_chunks` crops, mean-pooled."""

    frozen: FrozenEncoder
    max_chunks: int


@dataclass
class Skipped:
    """A file that could not be used: its path, the cause ("corrupt", "short", ...) and the
    one-line message."""

    path: str
    reason: str
    message: str


@dataclass
class Embedded:
    """Files embedded: `paths` in order, `feats` format -> (n, D) float32 track embeddings,
    the files `skipped`, `chunks` embedded (all formats), and `seconds` per stage (decode:
    reading, resampling, quantising and cutting; embed: the encoders; head: the classifier)."""

    paths: list[str] = field(default_factory=list)
    feats: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def extend(self, other: Embedded) -> None:
        self.paths += other.paths
        for f, x in other.feats.items():
            self.feats[f] = np.concatenate([self.feats[f], x]) if f in self.feats else x
        self.skipped += other.skipped
        self.chunks += other.chunks
        for stage, s in other.seconds.items():
            self.seconds[stage] += s


STAGES = ("decode", "embed", "head")


@dataclass
class Predictions(Embedded):
    """Files classified: `Embedded` plus `probs` (n, C) float64 (rows sum to 1, in `paths`
    order) over `label_names`."""

    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    label_names: list[str] = field(default_factory=list)

    def top(self, k: int) -> list[list[tuple[str, float]]]:
        """Per file, its k most probable labels with their probabilities, most probable first
        (ties: label order)."""
        order = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return [[(self.label_names[j], float(p[j])) for j in row]
                for p, row in zip(self.probs, order, strict=True)]  # fmt: skip


def needs(encodings: dict[str, Encoding]) -> dict[int, int]:
    """rate (Hz) -> the longest crop read at that rate: what each file is decoded to."""
    out: dict[int, int] = {}
    for e in encodings.values():
        rate = e.frozen.sample_rate
        out[rate] = max(out.get(rate, 0), e.frozen.crop_samples)
    return out


def cut(tracks: dict[int, np.ndarray], encodings: dict[str, Encoding]) -> dict[str, np.ndarray]:
    """format -> chunks (k, crop) of one track held at every needed rate."""
    return {
        f: track_chunks(tracks[e.frozen.sample_rate], e.frozen.crop_samples, e.max_chunks)
        for f, e in encodings.items()
    }


def embed_block(
    encodings: dict[str, Encoding],
    block: list[dict[str, np.ndarray]],
    *,
    device: torch.device,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """format -> (len(block), D) track embeddings of a block of cut tracks (`embed_tracks`)."""
    return {
        f: embed_tracks(
            e.frozen.encoder,
            e.frozen.frontend,
            ((i, c[f]) for i, c in enumerate(block)),
            len(block),
            device=device,
            batch_size=batch_size,
        )  # fmt: skip
        for f, e in encodings.items()
    }


def _decode_one(path: Path, encodings: dict[str, Encoding], strict: bool,
                out: Embedded) -> dict[str, np.ndarray] | None:  # fmt: skip
    """One file cut for every encoder, or None when it is skipped (recorded in `out`)."""
    try:
        return cut(load_file(path, needs(encodings)), encodings)
    except AudioError as err:
        if strict:
            raise
        out.skipped.append(Skipped(str(path), error_reason(err), str(err)))
        log.warning("skipped %s", err)
        return None


def iter_embedded(
    encodings: dict[str, Encoding],
    paths: Sequence[str | Path],
    *,
    device: torch.device,
    batch_size: int,
    strict: bool = False,
    progress: bool = False,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[Embedded]:
    """The audio files of `paths` (files, folders walked recursively: `find_audio`) embedded
    block by block; each block's `Embedded` holds its files, those it skipped and its timings."""
    files = find_audio(paths)
    show = progress_enabled(progress) and len(files) >= PROGRESS_MIN_FILES
    with tqdm(total=len(files), unit="file", leave=False, disable=not show) as bar:
        out, block, held = Embedded(), [], 0
        for i, path in enumerate(files):
            start = time.perf_counter()
            cut_track = _decode_one(path, encodings, strict, out)
            out.seconds["decode"] += time.perf_counter() - start
            bar.update()
            if cut_track is not None:
                block.append(cut_track)
                out.paths.append(str(path))
                held += sum(c.nbytes for c in cut_track.values())
            if block and (held >= block_bytes or i == len(files) - 1):
                start = time.perf_counter()
                out.feats = embed_block(encodings, block, device=device, batch_size=batch_size)
                out.seconds["embed"] += time.perf_counter() - start
                out.chunks = sum(len(c) for track in block for c in track.values())
                yield out
                out, block, held = Embedded(), [], 0
        if out.skipped:  # the last files were all skipped
            yield out


def embed_files(
    encodings: dict[str, Encoding], paths: Sequence[str | Path], **kwargs: Any
) -> Embedded:
    """Every block of `iter_embedded` in one `Embedded` (feats (n, D) per format)."""
    total = Embedded()
    for part in iter_embedded(encodings, paths, **kwargs):
        total.extend(part)
    return total


def embed_waveform(
    encodings: dict[str, Encoding], waveform: Any, sample_rate: int, *, device: torch.device,
    batch_size: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """format -> (D,) embedding of one waveform in memory ((T,) or (C, T), numpy or torch, at
    `sample_rate` Hz), brought to each encoder's rate as a file would be."""
    tracks = waveform_at(waveform, sample_rate, needs(encodings))
    feats = embed_block(encodings, [cut(tracks, encodings)], device=device,
                        batch_size=batch_size)  # fmt: skip
    return {f: x[0] for f, x in feats.items()}


class Classifier:
    """A saved classifier (classifier.pt) ready to predict on `device`."""

    def __init__(self, saved: SavedClassifier, device: str | torch.device = "cpu") -> None:
        self.saved = saved
        self.device = torch.device(device)
        self.encodings = {
            f: Encoding(saved.encoders[f], saved.max_chunks[f]) for f in saved.predictor.formats
        }

    @property
    def label_names(self) -> list[str]:
        return list(self.saved.label_names)

    def predict(self, waveform: Any, sample_rate: int) -> np.ndarray:
        """Class probabilities (C,) float64 of one waveform ((T,) or (C, T), numpy or torch,
        at `sample_rate` Hz), in `label_names` order."""
        feats = embed_waveform(self.encodings, waveform, sample_rate, device=self.device,
                               batch_size=self.saved.batch_size)  # fmt: skip
        return self.saved.predictor.predict_proba({f: x[None] for f, x in feats.items()})[0]

    def predict_files(
        self,
        paths: Sequence[str | Path],
        *,
        strict: bool = False,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Predictions:
        """Every audio file of `paths` (files, folders walked recursively) classified, rows in
        order. `batch_size`: chunks per forward batch (default: the probe's, so the embeddings
        are the table's); `strict`: stop at the first unusable file (AudioError)."""
        total, probs = Predictions(label_names=self.label_names), []
        for part in iter_embedded(
            self.encodings, paths, device=self.device, strict=strict, progress=progress,
            batch_size=batch_size or self.saved.batch_size,
        ):  # fmt: skip
            start = time.perf_counter()
            if part.paths:
                probs.append(self.saved.predictor.predict_proba(part.feats))
            part.seconds["head"] += time.perf_counter() - start
            total.extend(part)
        total.probs = np.concatenate(probs) if probs else np.zeros((0, len(self.label_names)))
        return total
