"""How much class information each augmentation destroys, without any pretraining.

A fixed feature (per mel band: mean and std over time of the log-mel, i.e. spectral envelope and
its variability) of every chunk of every track, averaged per track, scored by a standardised
logistic regression (train -> test). Computed on clean chunks and on chunks passed through each
augmentation alone and through each full chain, as a view of the pretraining would be. An
augmentation that costs many points here teaches the encoder to ignore class information: the
positive pair must keep what a genre is made of.

    python -m experiments.augment_damage --preset demo [--set key=value ...]

The last stdout line is one JSON object {variant: test accuracy}.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mfclr.augment.spectrogram import MelFrontend
from mfclr.config import Config, load_config
from mfclr.data import iter_track_chunks, load_dataset
from mfclr.formats import build_augment

# Each transform alone: (name, overrides that switch every other transform off).
_OFF_AUDIO = {"augment.audio.noise.p": 0.0, "augment.audio.gain.p": 0.0,
              "augment.audio.filter.p": 0.0, "augment.audio.pitch.p": 0.0}  # fmt: skip
_OFF_SPEC = {f"augment.spectrogram.{t}.p": 0.0 for t in ("noise", "freq_shift", "freq_mask",
                                                          "time_mask")}  # fmt: skip


def variants(cfg: Config) -> dict[str, tuple[str, Config]]:
    """name -> (format whose chain runs, config): each chain whole, each transform alone at p=1."""
    out = {"audio chain": ("audio", cfg), "spectrogram chain": ("spectrogram", cfg)}
    for t in ("noise", "gain", "filter", "pitch"):
        out[f"audio: {t}"] = (
            "audio",
            cfg.with_overrides(_OFF_AUDIO | {f"augment.audio.{t}.p": 1.0}),
        )
    for t in ("noise", "freq_shift", "freq_mask", "time_mask"):
        over = _OFF_SPEC | {f"augment.spectrogram.{t}.p": 1.0}
        if t == "freq_shift" and cfg.augment.spectrogram.freq_shift.max_bins == 0:
            continue
        out[f"spectrogram: {t}"] = ("spectrogram", cfg.with_overrides(over))
    return out


@torch.no_grad()
def features(cfg: Config, split, fmt: str | None, seed: int) -> np.ndarray:
    """(n_tracks, 2 * n_mels): mean over chunks of [band means, band stds] of the log-mel of
    each chunk, after `fmt`'s augmentation chain (None: clean)."""
    mel = MelFrontend.from_config(cfg.mel, cfg.data.sample_rate)
    aug = build_augment(fmt, cfg) if fmt else None
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _, chunks in iter_track_chunks(split, cfg.data.crop_samples, cfg.train.max_eval_chunks):
        x = torch.from_numpy(chunks)
        if fmt == "audio":
            x = mel(aug(x, generator=g))
        elif fmt == "spectrogram":
            x = aug(x, generator=g)
        else:
            x = mel(x)
        x = x[:, 0]  # (k, n_mels, frames)
        rows.append(torch.cat([x.mean(-1), x.std(-1)], dim=1).mean(0).numpy())
    return np.stack(rows)


def accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    clf.fit(*train)
    return float(clf.score(*test))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config, args.preset, args.set)
    data = load_dataset(cfg.data, "probe", progress=False)
    tr, te = data.splits["train"], data.splits["test"]
    result = {"clean": accuracy((features(cfg, tr, None, 0), tr.labels),
                                (features(cfg, te, None, 1), te.labels))}  # fmt: skip
    for name, (fmt, vcfg) in variants(cfg).items():
        result[name] = accuracy((features(vcfg, tr, fmt, 0), tr.labels),
                                (features(vcfg, te, fmt, 1), te.labels))  # fmt: skip
        print(f"{name:28s} {100 * result[name]:5.1f} %  (clean {100 * result['clean']:.1f})",
              file=sys.stderr)  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
