"""ResNet on mel spectrograms: torchvision's ResNet with BasicBlocks (ResNet-18 by default).

The first conv takes `in_chans` (1: a mel spectrogram is one image channel) and the classifier
`fc` is an Identity, so the output is the 512-d global-average-pooled feature. Randomly
initialised (torchvision's init); no pretrained weights. State-dict keys are torchvision's.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet


class ResNetEncoder(ResNet):
    """Spectrogram encoder: (B, in_chans, n_mels, frames) -> (B, 512).

    A (B, n_mels, frames) input is accepted when in_chans == 1. Spatial size is free: the network
    downsamples by 32 and ends in an adaptive average pool.

    Args:
        blocks: BasicBlocks per stage; (2, 2, 2, 2) is ResNet-18.
        in_chans: input image channels.
    """

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), in_chans: int = 1) -> None:
        blocks = [int(b) for b in blocks]
        if len(blocks) != 4 or min(blocks) < 1 or in_chans < 1:
            raise ValueError(
                f"ResNetEncoder needs 4 positive block counts and in_chans >= 1, "
                f"got blocks={blocks}, in_chans={in_chans}"
            )
        super().__init__(BasicBlock, blocks)
        self.blocks = blocks
        self.in_chans = in_chans
        self.num_features = 512 * BasicBlock.expansion
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # The same init torchvision gives every conv of the network.
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.fc = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_chans, n_mels, frames) or (B, n_mels, frames) -> (B, num_features)."""
        if x.ndim == 3 and self.in_chans == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"ResNetEncoder expects spectrograms shaped (B, {self.in_chans}, n_mels, frames), "
                f"got {tuple(x.shape)}"
            )
        return self._forward_impl(x)
