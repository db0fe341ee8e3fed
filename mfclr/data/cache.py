"""Decode once, never again: every track of a dataset -> mono int16 at the configured rate.

The cache folder `<cache_dir>/<kind>-<key>/` holds one flat int16 file per split and `index.json`.
The key hashes everything the decoded samples depend on (kind, resolved root, each file's size and
mtime, sample rate, crop length, short-clip policy, strictness, embedded parameters), so a second
call with the same inputs opens the cache without decoding, and any change builds a new one. A cache
is built in a temporary folder and renamed into place: an interrupted run leaves no half cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mfclr.config import DataConfig, DatasetSpec
from mfclr.data.audio_io import audio_error, error_reason, read_audio
from mfclr.data.embedded import embedded_dir_name, embedded_params, generate_embedded
from mfclr.data.folder import list_labelled, list_unlabelled
from mfclr.data.gtzan import list_gtzan
from mfclr.data.listing import SkippedFile, TrackList, warn_skipped
from mfclr.data.store import (
    INDEX,
    DamagedCache,
    PreparedDataset,
    full_scale,
    open_prepared,
    split_index,
    to_int16,
    write_index,
)
from mfclr.errors import AudioError, DataError
from mfclr.io import check_writable_dir, clean_stale_temps, fsync_dir, storage_error, temp_name
from mfclr.progress import enabled as progress_enabled

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# A track louder than full scale is scaled down to it (int16 would clip it); past this peak the
# file itself is over full scale (a float file), not a resampler's overshoot, and is named.
OVER_FULL_SCALE_WARN_DB = 1.0
# Fewer tracks than this decode too fast for a progress bar to help.
PROGRESS_MIN_TRACKS = 32
# What decoding did to tracks, counted in the dataset's stats.
COUNTS = ("padded", "rejected", "resampled", "downmixed", "normalised")


def list_tracks(spec: DatasetSpec, data: DataConfig, progress: bool = True) -> TrackList:
    """The dataset's tracks before decoding; generates the embedded dataset first if needed."""
    if spec.kind == "embedded":
        cache_dir = Path(data.cache_dir).expanduser().resolve()
        default_root = cache_dir / embedded_dir_name(spec.embedded, data.sample_rate)
        root = Path(spec.root).expanduser() if spec.root else default_root
        generate_embedded(root, spec.embedded, data.sample_rate, progress=progress)
        return list_labelled(root, spec, data.strict)
    assert spec.root is not None  # DatasetSpec requires a root for every other kind
    if spec.kind == "gtzan":
        return list_gtzan(Path(spec.root).expanduser(), data.strict)
    if spec.kind == "folder":
        return list_labelled(Path(spec.root).expanduser(), spec, data.strict)
    return list_unlabelled(Path(spec.root).expanduser())


def cache_key(spec: DatasetSpec, data: DataConfig, tracks: TrackList) -> str:
    """Hex digest over everything the decoded cache depends on."""
    files = []
    for name, split in tracks.splits.items():
        for t in split:
            st = t.path.stat()
            files.append([name, t.track_id, t.label, str(t.path), st.st_size, st.st_mtime_ns])
    material = {
        "version": CACHE_VERSION,
        "kind": spec.kind,
        "root": str(tracks.root),
        "label_names": tracks.label_names,
        "files": files,
        "sample_rate": data.sample_rate,
        "crop_samples": data.crop_samples,
        "short_clips": data.short_clips,
        "strict": data.strict,
        "embedded": embedded_params(spec.embedded, data.sample_rate)
        if spec.kind == "embedded"
        else None,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


class _Builder:
    """Decodes the tracks of a TrackList into `folder`, counting what happened."""

    def __init__(
        self, name: str, tracks: TrackList, data: DataConfig, folder: Path, progress: bool
    ):
        self.name, self.tracks, self.data, self.folder = name, tracks, data, folder
        self.skipped: list[SkippedFile] = list(tracks.skipped)
        self.counts: Counter[str] = Counter()
        self.short: list[str] = []
        self.loud: list[SkippedFile] = []  # named warnings, not skipped: the files are used
        total = sum(len(s) for s in tracks.splits.values())
        self.bar = tqdm(
            total=total, desc=f"decoding {tracks.root.name}", unit="track", file=sys.stderr,
            disable=not progress_enabled(progress) or total < PROGRESS_MIN_TRACKS, leave=False,
        )  # fmt: skip

    def decode(self, path: Path) -> np.ndarray | None:
        """int16 (T,) samples of one file, or None if it is skipped (counted, logged)."""
        tl, data = self.tracks, self.data
        try:
            dec = read_audio(
                path, data.sample_rate, require_rate=tl.require_rate,
                require_mono=tl.require_mono, dataset=tl.dataset_name,
            )  # fmt: skip
        except AudioError as err:
            if data.strict:
                raise
            skipped = SkippedFile(str(path), error_reason(err), str(err))
            warn_skipped([skipped], "unusable")
            self.skipped.append(skipped)
            return None
        self.counts["resampled"] += dec.resampled
        self.counts["downmixed"] += dec.downmixed
        samples, crop = dec.samples, data.crop_samples
        if len(samples) < crop:
            self.short.append(str(path))
            if data.short_clips == "reject" and data.strict:
                raise audio_error(
                    path, "short",
                    f"is {len(samples) / data.sample_rate:.2f} s, shorter than one "
                    f"{data.clip_seconds:g} s crop; set data.short_clips=pad, lower "
                    "data.clip_seconds, or run without --strict to skip it",
                )  # fmt: skip
            if data.short_clips == "reject":
                self.counts["rejected"] += 1
                return None
            self.counts["padded"] += 1
            samples = np.pad(samples, (0, crop - len(samples)))
        return to_int16(self.below_full_scale(path, samples))

    def below_full_scale(self, path: Path, samples: np.ndarray) -> np.ndarray:
        """Samples peaking above full scale (a float file, or a resampler's overshoot) scaled
        down to it, counted as normalised: int16 would otherwise hard-clip them."""
        scaled, peak = full_scale(samples)
        if peak <= 1.0:
            return scaled
        self.counts["normalised"] += 1
        db = 20 * math.log10(peak)
        if db > OVER_FULL_SCALE_WARN_DB:
            self.loud.append(SkippedFile(str(path), "normalised",
                f"{path}: peaks at +{db:.1f} dBFS, above full scale; scaled down by {db:.1f} dB "
                "in the cache instead of clipping"))  # fmt: skip
        return scaled

    def build_split(self, name: str) -> dict[str, Any]:
        offsets, lengths, labels, ids, pos = [], [], [], [], 0
        with open(self.folder / f"{name}.i16", "wb") as f:
            for track in self.tracks.splits[name]:
                samples = self.decode(track.path)
                self.bar.update()
                if samples is None:
                    continue
                f.write(samples.tobytes())
                offsets.append(pos)
                lengths.append(len(samples))
                labels.append(track.label)
                ids.append(track.track_id)
                pos += len(samples)
        return split_index(name, offsets, lengths, labels, ids)

    def build(self) -> dict[str, Any]:
        with self.bar:
            splits = {name: self.build_split(name) for name in self.tracks.splits}
        if not splits.get("train", {}).get("lengths"):
            raise DataError(
                f"dataset at {self.tracks.root} has no usable tracks in its train split "
                f"({len(self.skipped)} skipped, {self.counts['rejected']} too short); "
                "check the folder layout and the log"
            )
        if self.loud:
            for item in self.loud[:10]:
                log.warning("%s", item.message)
            if len(self.loud) > 10:
                log.warning("%d more tracks peaked above full scale and were scaled down",
                            len(self.loud) - 10)  # fmt: skip
        if self.short:
            what = "rejected" if self.data.short_clips == "reject" else "zero-padded"
            names = ", ".join(Path(p).name for p in self.short[:5])
            log.warning(
                "%d tracks shorter than %g s were %s (data.short_clips=%s): %s%s",
                len(self.short), self.data.clip_seconds, what, self.data.short_clips, names,
                " ..." if len(self.short) > 5 else "",
            )  # fmt: skip
        return {
            "version": CACHE_VERSION,
            "name": self.name,
            "label_names": self.tracks.label_names,
            "sample_rate": self.data.sample_rate,
            "crop_samples": self.data.crop_samples,
            "splits": splits,
            "stats": self.stats(splits),
        }

    def stats(self, splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
        n_samples = sum(s["n_samples"] for s in splits.values())
        return {
            "root": str(self.tracks.root),
            "tracks": {name: len(s["lengths"]) for name, s in splits.items()},
            "skipped": dict(Counter(s.reason for s in self.skipped)),
            "skipped_files": [[s.path, s.reason, s.message] for s in self.skipped],
            **{k: self.counts[k] for k in COUNTS},
            "loud_files": [item.path for item in self.loud],
            "split_source": self.tracks.split_source,
            "unlisted": len(self.tracks.unlisted),
            "seconds": round(n_samples / self.data.sample_rate, 2),
        }


def _discard(folder: Path) -> None:
    """Move a damaged cache aside (an atomic rename), then delete it."""
    doomed = folder.parent / temp_name(folder.name)
    try:
        folder.rename(doomed)
    except OSError as err:
        raise storage_error(folder, err, "damaged data cache") from None
    shutil.rmtree(doomed, ignore_errors=True)


def summary_counts(stats: dict[str, Any]) -> str:
    """`skipped 3 (missing 3); padded 0, rejected 0, ...` from a dataset's stats."""
    skipped = sum(stats["skipped"].values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats["skipped"].items()))
    counts = ", ".join(f"{k} {stats.get(k, 0)}" for k in COUNTS)
    return f"skipped {skipped}{f' ({reasons})' if reasons else ''}; {counts}"


def empty_classes(ds: PreparedDataset) -> list[str]:
    """Label names with no track in any split (a class folder or genre that is missing)."""
    used = {int(y) for sp in ds.splits.values() for y in sp.labels}
    return [name for i, name in enumerate(ds.label_names) if i not in used]


def _log_summary(ds: PreparedDataset, reused: bool) -> None:
    st = ds.stats
    tracks = ", ".join(f"{k} {v}" for k, v in st["tracks"].items())
    log.info(
        "%s %s: %s tracks; %s; %.0f s of audio at %d Hz (cache %s)",
        "reusing" if reused else "prepared", st["root"], tracks, summary_counts(st),
        st["seconds"], ds.sample_rate, ds.cache_path,
    )  # fmt: skip
    if st.get("split_source"):
        log.info("%s: %s", ds.name, st["split_source"])
    if st.get("unlisted"):
        log.warning(
            "%s: %d audio files below %s are listed in no split file and are not used",
            ds.name, st["unlisted"], st["root"],
        )  # fmt: skip
    for name in empty_classes(ds):
        log.warning(
            "%s: class '%s' has no tracks in any split (its folder is missing or every file "
            "was skipped); restore it or expect it to be absent from every metric",
            ds.name, name,
        )  # fmt: skip


def prepare_dataset(
    spec: DatasetSpec, data: DataConfig, *, progress: bool = True
) -> PreparedDataset:
    """Decode every track of `spec` once into the cache (or reuse it) and open it.

    Raises DataError/AudioError with a one-line message for unusable datasets (and, when
    data.strict, for any missing, corrupt or mismatched file).
    """
    cache_dir = Path(data.cache_dir).expanduser().resolve()
    clean_stale_temps(cache_dir)
    tracks = list_tracks(spec, data, progress)
    final = cache_dir / f"{spec.kind}-{cache_key(spec, data, tracks)}"
    if (final / INDEX).is_file():
        try:
            ds = open_prepared(final)
        except DamagedCache as err:
            log.warning("%s; rebuilding it", str(err).split(";")[0])
            _discard(final)
        else:
            warn_skipped([SkippedFile(*item) for item in ds.stats["skipped_files"]], "unusable")
            _log_summary(ds, reused=True)
            return ds
    check_writable_dir(cache_dir, "data.cache_dir")
    tmp = cache_dir / temp_name(final.name)
    try:
        tmp.mkdir()
        name = (
            spec.kind if spec.kind in ("embedded", "gtzan") else f"{spec.kind}:{tracks.root.name}"
        )
        write_index(tmp, _Builder(name, tracks, data, tmp, progress).build())
        try:
            tmp.rename(final)
        except OSError:
            if not (final / INDEX).is_file():  # not a concurrent prepare that finished first
                raise
        fsync_dir(cache_dir)
    except OSError as err:
        raise storage_error(final, err, "data cache") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ds = open_prepared(final)
    _log_summary(ds, reused=False)
    return ds
