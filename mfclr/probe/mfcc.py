"""The classic feature baseline of every probe table: MFCC statistics of the whole track.

A user's first comparison for a learned music representation is MFCC statistics under the same
probe (Pons & Serra 2019: MFCC + SVM 53.4 % on fault-filtered GTZAN). Per track: the project's
own log-mel frontend (`MelFrontend`, the spectrogram encoder's input, over the *whole* track, not
the capped chunks the encoders embed), a type-II orthonormal DCT over the mel axis, the first
`N_MFCC` coefficients, then their mean and standard deviation over time: a (2 * N_MFCC)-d vector.
The DCT is written out here so that torchaudio stays at its three transforms.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mfclr.config import SPLITS, MelConfig
from mfclr.data.store import PreparedDataset, Split
from mfclr.encoders.frontends import MelFrontend

N_MFCC = 20
# The baseline's encoder-set name and row name.
MFCC = "mfcc"


def dct_matrix(n_mels: int, n_coeffs: int) -> torch.Tensor:
    """(n_mels, n_coeffs) orthonormal DCT-II basis: `mel (..., n_mels) @ D` gives the cepstrum."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_coeffs, dtype=torch.float64)
    basis = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :])
    basis[:, 0] *= 1 / math.sqrt(2)
    return (basis * math.sqrt(2 / n_mels)).float()


@torch.no_grad()
def mfcc_stats(split: Split, mel: MelConfig, sample_rate: int, n_mfcc: int = N_MFCC) -> np.ndarray:
    """(n_tracks, 2 * n_mfcc) float32: per track, the mean then the std over time of its MFCCs."""
    front = MelFrontend.from_config(mel, sample_rate)
    dct = dct_matrix(mel.n_mels, min(n_mfcc, mel.n_mels))
    out = []
    for i in range(len(split)):
        wave = torch.from_numpy(split.track(i))
        if len(wave) < mel.n_fft:  # a track shorter than one frame: pad it to one
            wave = torch.nn.functional.pad(wave, (0, mel.n_fft - len(wave)))
        logmel = front(wave[None])[0, 0]  # (n_mels, frames)
        coeffs = logmel.T @ dct  # (frames, n_mfcc)
        out.append(torch.cat([coeffs.mean(0), coeffs.std(0, unbiased=False)]).numpy())
    return np.stack(out).astype(np.float32)


def mfcc_features(data: PreparedDataset, mel: MelConfig) -> dict[str, np.ndarray]:
    """split -> (n_tracks, 2 * N_MFCC) MFCC statistics of every split of the probe dataset."""
    return {s: mfcc_stats(data.splits[s], mel, data.sample_rate) for s in SPLITS}
