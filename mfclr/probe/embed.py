"""Frozen track embeddings: the mean encoder output over every chunk of a track, and their export.

The ancestor probed one random crop per track; here a track's embedding is the mean over all its
chunks, so the probe sees the whole clip and the result does not depend on a random draw.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mfclr.config import SPLITS, Config
from mfclr.data.clips import iter_track_chunks
from mfclr.data.store import PreparedDataset
from mfclr.errors import CheckpointError, DataError
from mfclr.formats.frozen import FrozenEncoder
from mfclr.io import atomic_write_with
from mfclr.progress import enabled as progress_enabled

FILE_VERSION = 1


class _Accumulator:
    """Per-track float64 sums and counts of (B, D) embedding rows."""

    def __init__(self, n_tracks: int) -> None:
        self.n_tracks = n_tracks
        self.counts = np.zeros(n_tracks, dtype=np.int64)
        self.sums: np.ndarray | None = None

    def add(self, track_idx: np.ndarray, h: np.ndarray) -> None:
        if self.sums is None:
            self.sums = np.zeros((self.n_tracks, h.shape[1]), dtype=np.float64)
        np.add.at(self.sums, track_idx, h.astype(np.float64))
        np.add.at(self.counts, track_idx, 1)

    def means(self) -> np.ndarray:
        missing = np.flatnonzero(self.counts == 0)
        if len(missing):
            shown = ", ".join(str(i) for i in missing[:5])
            raise DataError(
                f"{len(missing)} of {self.n_tracks} tracks got no chunks (track indices {shown}"
                f"{', ...' if len(missing) > 5 else ''}); check the split and the chunk iterator"
            )
        assert self.sums is not None
        return (self.sums / self.counts[:, None]).astype(np.float32)


def _forward(
    encoder: nn.Module, frontend: nn.Module, wave: np.ndarray, device: torch.device
) -> np.ndarray:
    """Waveforms (B, T) float32 -> embeddings (B, D) float32 on the CPU."""
    h = encoder(frontend(torch.from_numpy(wave).to(device)))
    if h.ndim != 2 or h.shape[0] != len(wave):
        raise DataError(f"the encoder returned shape {tuple(h.shape)}; expected ({len(wave)}, D)")
    return h.float().cpu().numpy()


def _check_chunks(track: int, chunks: np.ndarray, n_tracks: int, length: int | None) -> None:
    if not 0 <= track < n_tracks:
        raise DataError(f"chunk iterator yielded track index {track}; expected 0..{n_tracks - 1}")
    if chunks.ndim != 2 or len(chunks) == 0:
        raise DataError(f"chunks of track {track} have shape {chunks.shape}; expected (n>0, T)")
    if length is not None and chunks.shape[1] != length:
        raise DataError(
            f"chunks of track {track} have {chunks.shape[1]} samples, earlier ones {length}; "
            "all chunks must share one crop length"
        )


def embed_tracks(
    encoder: nn.Module,
    frontend: nn.Module,
    chunks: Iterable[tuple[int, np.ndarray]],
    n_tracks: int,
    *,
    device: str | torch.device,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Track embeddings (n_tracks, D) float32: the mean of the encoder output over each track's
    chunks.

    `chunks` yields (track_index, waveforms (n_chunks, T) float32); a track may appear more than
    once (its chunks are pooled). Chunks of several tracks share a forward batch of up to
    `batch_size` rows. `frontend` maps waveforms (B, T) to the encoder's input; `encoder` maps
    that to (B, D). Both are moved to `device`, run in eval mode without gradients, and put back
    in their previous train/eval mode afterwards.
    """
    dev = torch.device(device)
    modes = (encoder.training, frontend.training)
    encoder.to(dev).eval()
    frontend.to(dev).eval()
    acc = _Accumulator(n_tracks)
    pend_x: list[np.ndarray] = []
    pend_i: list[np.ndarray] = []
    n_pend, length = 0, None
    try:
        with torch.inference_mode():
            for track, arr in tqdm(
                chunks,
                total=n_tracks,
                unit="track",
                leave=False,
                disable=not progress_enabled(progress),
            ):
                arr = np.asarray(arr, dtype=np.float32)
                _check_chunks(track, arr, n_tracks, length)
                length = arr.shape[1]
                pend_x.append(arr)
                pend_i.append(np.full(len(arr), track, dtype=np.int64))
                n_pend += len(arr)
                if n_pend >= batch_size:
                    pend_x, pend_i, n_pend = _flush(
                        encoder, frontend, pend_x, pend_i, acc, dev, batch_size, final=False
                    )
            _flush(encoder, frontend, pend_x, pend_i, acc, dev, batch_size, final=True)
    finally:
        encoder.train(modes[0])
        frontend.train(modes[1])
    return acc.means()


def _flush(
    encoder: nn.Module,
    frontend: nn.Module,
    pend_x: list[np.ndarray],
    pend_i: list[np.ndarray],
    acc: _Accumulator,
    dev: torch.device,
    batch_size: int,
    *,
    final: bool,
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Run every full batch (and, if final, the remainder); return what is left pending."""
    if not pend_x:
        return [], [], 0
    x, idx = np.concatenate(pend_x), np.concatenate(pend_i)
    start = 0
    while len(x) - start >= batch_size or (final and start < len(x)):
        stop = start + batch_size
        acc.add(idx[start:stop], _forward(encoder, frontend, x[start:stop], dev))
        start = stop
    rest = len(x) - start
    return ([x[start:]], [idx[start:]], rest) if rest else ([], [], 0)


# ----------------------------------------------------------------------------- export


@dataclass
class EmbeddingFile:
    """What `save_embeddings` stores. `feats` keys are "<split>" or "<format>/<split>"."""

    feats: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    label_names: list[str]
    track_ids: dict[str, list[str]]
    meta: dict[str, Any]

    def features(self) -> dict[str, dict[str, np.ndarray]]:
        """`feats` nested as format -> split -> (n, D); a bare "<split>" key gets format ""."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, x in self.feats.items():
            fmt, _, split = key.rpartition("/")
            out.setdefault(fmt, {})[split] = x
        return out


def _check_export(
    feats: dict[str, np.ndarray], labels: dict[str, np.ndarray], track_ids: dict[str, Sequence[str]]
) -> None:
    for key, x in feats.items():
        split = key.rpartition("/")[2]
        if split not in labels or split not in track_ids:
            raise DataError(f"embeddings '{key}' have no labels/track ids for split '{split}'")
        if x.ndim != 2 or len(x) != len(labels[split]) or len(x) != len(track_ids[split]):
            raise DataError(
                f"embeddings '{key}' have shape {x.shape} but split '{split}' has "
                f"{len(labels[split])} labels and {len(track_ids[split])} track ids"
            )


def save_embeddings(
    path: str | Path,
    feats: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    label_names: Sequence[str],
    track_ids: dict[str, Sequence[str]],
    meta: dict[str, Any],
) -> Path:
    """Write one `.npz` atomically (temp file, then rename); loadable without pickle.

    feats: "<split>" or "<format>/<split>" -> (n, D); labels, track_ids: split -> (n,);
    label_names: class index -> name; meta: any JSON-able dict (checkpoint, config, git SHA).
    """
    _check_export(feats, labels, track_ids)
    header = {"version": FILE_VERSION, "label_names": [str(n) for n in label_names], "meta": meta}
    arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(header))}
    arrays |= {f"feats/{k}": np.asarray(v, dtype=np.float32) for k, v in feats.items()}
    arrays |= {f"labels/{k}": np.asarray(v, dtype=np.int64) for k, v in labels.items()}
    arrays |= {f"track_ids/{k}": np.array([str(t) for t in v]) for k, v in track_ids.items()}
    return atomic_write_with(path, lambda fh: np.savez(fh, **arrays), "embedding file")


def load_embeddings(path: str | Path) -> EmbeddingFile:
    """Read a file written by `save_embeddings`; DataError if missing or not such a file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"embedding file '{path}' does not exist; export it with `mfclr embed`")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            parts: dict[str, dict[str, np.ndarray]] = {"feats": {}, "labels": {}, "track_ids": {}}
            for name in z.files:
                group, _, key = name.partition("/")
                if group in parts:
                    parts[group][key] = z[name]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise DataError(
            f"embedding file '{path}' is not an mfclr embedding file ({type(err).__name__}); "
            "re-export it with `mfclr embed`"
        ) from None
    if header.get("version") != FILE_VERSION:
        raise DataError(
            f"embedding file '{path}' has version {header.get('version')}; re-export it"
        )
    return EmbeddingFile(
        feats=parts["feats"],
        labels=parts["labels"],
        label_names=list(header["label_names"]),
        track_ids={k: [str(t) for t in v] for k, v in parts["track_ids"].items()},
        meta=header["meta"],
    )


def embed_splits(
    frozen: FrozenEncoder,
    data: PreparedDataset,
    cfg: Config,
    device: torch.device,
    *,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Track-level embeddings (split -> (n_tracks, D)) of every split of the probe dataset."""
    if frozen.sample_rate != data.sample_rate:
        raise CheckpointError(
            f"encoder '{frozen.source}' was trained at {frozen.sample_rate} Hz but the probe data "
            f"is at {data.sample_rate} Hz; set data.sample_rate={frozen.sample_rate}"
        )
    encoder, frontend = frozen.encoder.to(device), frozen.frontend.to(device)
    out = {}
    for split in SPLITS:
        sp = data.splits[split]
        chunks = iter_track_chunks(sp, frozen.crop_samples, cfg.train.max_eval_chunks)
        out[split] = embed_tracks(
            encoder,
            frontend,
            chunks,
            len(sp),
            device=device,
            batch_size=cfg.train.batch_size,
            progress=progress,
        )
    return out
