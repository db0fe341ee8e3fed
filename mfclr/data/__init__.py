"""Datasets (embedded default, GTZAN, your own folders), the decode-once cache, clip sampling.

Typical use::

    datasets = Datasets()                     # one per process, handed down
    ds = datasets.get(cfg.data, "pretrain")   # decodes once ever, opens once per process
    pairs = PairDataset(ds.splits["train"], cfg.data.crop_samples, seed)
    loader = make_loader(pairs, 48, shuffle=True, seed=seed, workers=cfg.data.loader_workers)
"""

from __future__ import annotations

from mfclr.data.audio_io import AUDIO_EXTENSIONS, DecodedAudio, read_audio, write_audio
from mfclr.data.cache import prepare_dataset
from mfclr.data.clips import PairDataset, chunk_starts, iter_track_chunks, make_loader
from mfclr.data.datasets import Datasets, dataset_spec, load_dataset
from mfclr.data.embedded import generate_embedded
from mfclr.data.store import PreparedDataset, Split
from mfclr.data.synthetic.genres import GENRES

__all__ = [
    "AUDIO_EXTENSIONS",
    "GENRES",
    "Datasets",
    "DecodedAudio",
    "PairDataset",
    "PreparedDataset",
    "Split",
    "chunk_starts",
    "dataset_spec",
    "generate_embedded",
    "iter_track_chunks",
    "load_dataset",
    "make_loader",
    "prepare_dataset",
    "read_audio",
    "write_audio",
]
