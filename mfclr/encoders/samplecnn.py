"""SampleCNN: a 1-D CNN on raw waveforms (Lee et al. 2017, as used by CLMR, Spijkervet 2021).

Layout: a stem conv1d(k=3, stride=3) + BatchNorm + ReLU, then `len(channels) - 1` blocks (9 with
the default 10 widths) of conv1d(k=3, padding=1) + BatchNorm + ReLU + a pool of 3.

Pooling, a deliberate change from CLMR:
- CLMR's 59,049-sample (3^10) input shrinks by exactly 3 per layer to ONE frame of
  `channels[-1]`; its floor pooling (`MaxPool1d(3)`) silently drops the tail of any other length
  (of a 5 s clip at 22,050 Hz = 110,250 samples only the first 88,571 reach the output).
- Here blocks 1..8 pool with `MaxPool1d(3, ceil_mode=True)` (a last, partial window is kept) and
  the last block ends in a GLOBAL max pool over time. For 59,049 samples the last block sees
  exactly 3 frames, so the global max equals CLMR's `MaxPool1d(3)` and the geometry is unchanged;
  for any other length every input sample reaches the output, except the `T mod 3` (at most 2)
  trailing samples that the stride-3 stem never covers.

Convolutions carry no bias: each feeds a BatchNorm, which removes any per-channel constant (a bias
there only receives a zero gradient). CLMR's extra 512->512 conv after the last pooled block is not
included (the 10 configured widths are stem + 9 blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

STEM_STRIDE = 3
CLMR_SAMPLES = 3**10  # 59,049: CLMR's input length, reduced to exactly one frame


def _conv_bn_relu(c_in: int, c_out: int, stride: int, padding: int) -> list[nn.Module]:
    return [
        nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride, padding=padding, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    ]


class SampleCNN(nn.Module):
    """Raw-waveform encoder: (B, T) or (B, in_chans, T) samples -> (B, channels[-1]).

    Args:
        channels: output widths of the stem and of each block; the last is the representation
            size (`num_features`). CLMR: [128, 128, 128, 256, 256, 256, 256, 256, 256, 512].
        in_chans: input channels (1 for mono audio).
    """

    min_samples = STEM_STRIDE  # the stem needs one full window

    def __init__(self, channels: Sequence[int], in_chans: int = 1) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1 or in_chans < 1:
            raise ValueError(
                f"SampleCNN needs >= 2 positive channel widths (stem + blocks) and in_chans >= 1, "
                f"got channels={channels}, in_chans={in_chans}"
            )
        self.channels = channels
        self.in_chans = in_chans
        self.num_features = channels[-1]
        self.stem = nn.Sequential(*_conv_bn_relu(in_chans, channels[0], STEM_STRIDE, 0))
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers = _conv_bn_relu(c_in, c_out, 1, 1)
            if i < len(channels) - 2:  # the last block pools globally in forward()
                layers.append(nn.MaxPool1d(3, ceil_mode=True))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)

    def _check_input(self, x: Tensor) -> Tensor:
        if x.ndim == 2 and self.in_chans == 1:
            x = x.unsqueeze(1)
        if x.ndim != 3 or x.shape[1] != self.in_chans:
            want = "(B, T) or (B, 1, T)" if self.in_chans == 1 else f"(B, {self.in_chans}, T)"
            raise ValueError(f"SampleCNN expects waveforms shaped {want}, got {tuple(x.shape)}")
        if x.shape[-1] < self.min_samples:
            raise ValueError(
                f"SampleCNN needs at least {self.min_samples} samples per clip (its stem is a "
                f"stride-3 conv), got {x.shape[-1]}; use longer clips (data.clip_seconds)"
            )
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, T) or (B, in_chans, T) -> (B, channels[-1], F): the last block before its pool.

        F = 3 for CLMR's 59,049 samples; F = ceil(floor(T / 3) / 3^(n_blocks - 1)) in general.
        """
        return self.blocks(self.stem(self._check_input(x)))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T) or (B, in_chans, T) waveform samples -> (B, num_features) representation."""
        return torch.amax(self.forward_features(x), dim=-1)
