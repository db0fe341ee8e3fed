"""How fast does `mfclr predict` classify files? One JSON object, printed as the last line and
written to --out.

N synthetic files of S seconds (16-bit WAV at --rate Hz: tones, a beat and noise, a different
mix each) are written to a temp folder, then classified once by `Classifier.predict_files`,
the code `mfclr predict` runs: decode (read, downmix, resample to each encoder's rate, int16
quantisation, cutting into chunks), embed (the encoders, `embed_tracks`) and head (fusion and
probe head), each stage timed. A warm-up call on two of the files comes first.

The classifier: --classifier PATH (a run's classifier.pt), or by default random weights at a
preset's architecture (the `fused` concat row over both formats with a linear head; what it
predicts is meaningless, what it costs is a trained demo classifier's: the encoders are the
cost, and a fused row runs both).

    python -m benchmarks.predict --preset demo --files 100 --seconds 30 --rate 22050 \\
        --threads 2 --out predict.json

docs/performance.md ("Prediction") has three runs on the 2-core CPU
(benchmarks/results/predict/predict-demo-cpu.jsonl: one run's object per line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from mfclr.config import DEFAULT_FORMATS, load_config
from mfclr.distributed import resolve_device
from mfclr.formats.frozen import random_frozen
from mfclr.heads import ProbeHead
from mfclr.io import atomic_write_json, git_sha
from mfclr.probe.bundle import classifier_state, load_classifier_file, save_classifier
from mfclr.probe.fit import FittedProbe, Standardizer
from mfclr.probe.predict import Classifier
from mfclr.probe.predictor import FusionPredictor

N_LABELS = 8


def write_files(folder: Path, n: int, seconds: float, rate: int) -> list[Path]:
    """n WAV files (16-bit mono) of `seconds` at `rate`: two tones, a click beat and noise."""
    t = np.arange(round(seconds * rate)) / rate
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        f1, f2 = rng.uniform(80, 800, size=2)
        beat = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0.95).astype(np.float64)
        x = 0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t) + 0.3 * beat
        x += 0.05 * rng.standard_normal(len(t))
        path = folder / f"track-{i:04d}.wav"
        sf.write(str(path), (0.8 * x / np.abs(x).max()).astype(np.float32), rate,
                 subtype="PCM_16")  # fmt: skip
        paths.append(path)
    return paths


def random_classifier(preset: str, path: Path) -> Path:
    """A classifier.pt of `preset`'s encoders (random-init, each at its own rate) and a random
    linear head over their concatenation, saved and loaded as any other."""
    cfg = load_config(preset=preset)
    formats = sorted(DEFAULT_FORMATS)
    encoders = {f: random_frozen(cfg.for_format(f), f) for f in formats}
    dim = sum(e.encoder.num_features for e in encoders.values())
    torch.manual_seed(0)
    spec = {"module": "head", "kwargs": {"kind": "linear", "in_dim": dim,
                                         "n_classes": N_LABELS, "hidden_dim": 1}}  # fmt: skip
    head = FittedProbe(ProbeHead(**spec["kwargs"]).eval(),
                       Standardizer(np.zeros(dim), np.ones(dim)), spec=spec)  # fmt: skip
    row = {"name": "fused", "head": "linear", "fusion": "concat", "formats": formats,
           "encoders": "random-init"}  # fmt: skip
    state = classifier_state(
        row=row, predictor=FusionPredictor("concat", formats, [head]), encoders=encoders,
        label_names=[f"genre{i}" for i in range(N_LABELS)],
        max_chunks=cfg.train.max_eval_chunks, batch_size=cfg.train.batch_size,
        provenance={"dataset": "synthetic", "git_sha": git_sha()},
    )  # fmt: skip
    return save_classifier(path, state)


def measure(clf: Classifier, files: list[Path], batch_size: int | None) -> dict[str, Any]:
    clf.predict_files(files[:2], batch_size=batch_size)  # warm-up: allocator, kernels
    start = time.perf_counter()
    got = clf.predict_files(files, batch_size=batch_size)
    wall = time.perf_counter() - start
    assert len(got.paths) == len(files) and not got.skipped
    return {
        "seconds_total": wall,
        **{f"seconds_{k}": v for k, v in got.seconds.items()},
        "clips_per_s": len(files) / wall,
        "chunks": got.chunks,
        "chunks_per_s": got.chunks / wall,
        "ms_per_clip": 1e3 * wall / len(files),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", help="architecture of the random classifier")
    p.add_argument("--classifier", type=Path, help="a classifier.pt instead of random weights")
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=int, default=22050, help="the files' sample rate (Hz)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--batch-size", type=int, default=None, help="default: the classifier's")
    p.add_argument("--out", type=Path, help="also write the JSON object here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="mfclr-predict-bench-") as tmp:
        folder = Path(tmp)
        model = args.classifier or random_classifier(args.preset, folder / "classifier.pt")
        clf = Classifier(load_classifier_file(model), device)
        load_before = os.getloadavg()[0]
        files = write_files(folder / "audio", args.files, args.seconds, args.rate)
        result = measure(clf, files, args.batch_size)
    saved = clf.saved
    result |= {
        "classifier": str(args.classifier) if args.classifier else f"random {args.preset}",
        "row": f"{saved.meta['row']['name']}/{saved.meta['row']['head']}",
        "encoders": {f: {"sample_rate": e.sample_rate, "crop_samples": e.crop_samples,
                         "max_chunks": saved.max_chunks[f]}
                     for f, e in saved.encoders.items()},  # fmt: skip
        "batch_size": args.batch_size or saved.batch_size,
        "files": args.files, "seconds_per_file": args.seconds, "file_rate": args.rate,
        "device": str(device), "threads": args.threads,
        "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0],
        "cpus": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
        "python": platform.python_version(), "git_sha": git_sha(),
    }  # fmt: skip
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
