"""A PatchGAN discriminator (Isola et al. 2017, as LaMa uses it) for the optional adversarial term of training.

It scores overlapping patches of an image as real or generated (one logit per patch, the patches of a 256 px
image with three stride-2 layers are 70 px wide) and returns its intermediate feature maps as well, for LaMa's
feature-matching term. No normalisation layer: batch statistics would let the real and generated halves of a
batch inform each other; the R1 penalty (``pconv_hf.losses.r1_penalty``) or spectral normalisation keeps it
smooth instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

_MAX_CHANNEL_MULTIPLIER = 8


class PatchDiscriminator(nn.Module):
    """Stride-2 4x4 convolutions with LeakyReLU, then two stride-1 4x4 convolutions down to one logit per patch.

    Args:
        in_channels: image channels.
        base_channels: width of the first layer; doubles per layer up to 8x.
        num_layers: stride-2 layers (3: 70 px patches, pix2pix's default; 4: 142 px).
        spectral_normalization: wrap every convolution in spectral normalisation (Miyato et al. 2018).

    Raises:
        ValueError: a width or depth below 1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        spectral_normalization: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.spectral_normalization = spectral_normalization
        widths = [base_channels * min(2**i, _MAX_CHANNEL_MULTIPLIER) for i in range(num_layers + 1)]
        strides = [2] * num_layers + [1]
        blocks = []
        previous = in_channels
        for width, stride in zip(widths, strides, strict=True):
            conv = nn.Conv2d(previous, width, 4, stride=stride, padding=2, device=device, dtype=dtype)
            blocks.append(nn.Sequential(self._normalized(conv), nn.LeakyReLU(0.2)))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.head = self._normalized(nn.Conv2d(previous, 1, 4, stride=1, padding=2, device=device, dtype=dtype))

    def _normalized(self, conv: nn.Conv2d) -> nn.Module:
        return spectral_norm(conv) if self.spectral_normalization else conv

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Score ``image`` (N, C, H, W) in [0, 1].

        Returns:
            The patch logits (N, 1, h, w) (positive = real) and the feature map of every block.
        """
        if image.ndim != 4:
            raise ValueError(f"expected an image batch of shape (N, C, H, W), got {tuple(image.shape)}")
        # Centred inputs: the first layer sees the same range for any image.
        x = image * 2 - 1
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features
