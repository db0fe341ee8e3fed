"""The Python API: an encoder that embeds audio, a saved classifier that predicts genres.

    import mfclr
    enc = mfclr.load_encoder("runs/demo/pretrain/audio/encoder.pt")
    h = enc.embed(waveform, 44100)                # (512,) float32 track embedding
    clf = mfclr.load_classifier("runs/demo/classifier.pt")
    p = clf.predict(waveform, 44100)              # (C,) probabilities over clf.label_names
    preds = clf.predict_files(["song.wav", "album/"])   # preds.paths, preds.probs, .top(3)

A thin face over probe/: a waveform (numpy or torch, (T,) or (channels, T), any rate) or a file
goes through the data cache's decoding (downmix, resample, int16 quantisation), the probe's
chunking and mean pooling (`embed_tracks`), and for a classifier the fitted fusion and head of
its table row (`FusionPredictor`): what `mfclr predict` and `mfclr embed PATH...` run too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfclr import checkpoint as ckpt
from mfclr.config import TrainConfig
from mfclr.distributed import resolve_device
from mfclr.errors import ConfigError
from mfclr.formats.frozen import FrozenEncoder, frozen_from_state
from mfclr.probe.bundle import load_classifier_file
from mfclr.probe.predict import Classifier, Embedded, Encoding, embed_files, embed_waveform

__all__ = ["Classifier", "Encoder", "load_classifier", "load_encoder"]


def _device(device: str | torch.device) -> torch.device:
    """ "auto" (a GPU when one is visible), "cpu", "cuda" or a torch device."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but no GPU is visible; use auto or cpu")
    return resolve_device(device) if device == "auto" else torch.device(device)


class Encoder:
    """A frozen encoder ready to embed on `device`: each track is the mean of its embeddings
    over at most `max_chunks` crops of `crop_samples` at `sample_rate` (as the probe embeds)."""

    def __init__(
        self, frozen: FrozenEncoder, *, max_chunks: int, batch_size: int, device: torch.device
    ) -> None:
        self.frozen, self.device, self.batch_size = frozen, device, batch_size
        self.encoding = Encoding(frozen, max_chunks)

    @property
    def format(self) -> str:
        return self.frozen.fmt

    @property
    def sample_rate(self) -> int:
        return self.frozen.sample_rate

    def embed(self, waveform: Any, sample_rate: int) -> np.ndarray:
        """The (D,) float32 track embedding of one waveform at `sample_rate` Hz."""
        feats = embed_waveform({self.format: self.encoding}, waveform, sample_rate,
                               device=self.device, batch_size=self.batch_size)  # fmt: skip
        return feats[self.format]

    def embed_files(
        self, paths: Sequence[str | Path], *, strict: bool = False, progress: bool = False
    ) -> Embedded:
        """Every audio file of `paths` (folders walked recursively): `.paths` and
        `.feats[format]` (n, D), the files `.skipped`."""
        return embed_files({self.format: self.encoding}, paths, device=self.device,
                           batch_size=self.batch_size, strict=strict,
                           progress=progress)  # fmt: skip


def load_encoder(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    fmt: str | None = None,
    max_chunks: int | None = None,
) -> Encoder:
    """An exported encoder.pt (or a pretraining checkpoint: `fmt` picks the format of a
    cross-format one). `max_chunks` defaults to the train.max_eval_chunks its run probed with."""
    state = ckpt.load(path, ckpt.ENCODER_KIND, fmt)
    train = (state.get("config") or {}).get("train") or {}
    defaults = TrainConfig()
    return Encoder(
        frozen_from_state(state, str(path)),
        max_chunks=int(max_chunks or train.get("max_eval_chunks", defaults.max_eval_chunks)),
        batch_size=int(train.get("batch_size", defaults.batch_size)),
        device=_device(device),
    )


def load_classifier(path: str | Path, *, device: str | torch.device = "cpu") -> Classifier:
    """A saved classifier.pt, its encoders on `device` ("cpu", "cuda", "auto")."""
    return Classifier(load_classifier_file(path), _device(device))
