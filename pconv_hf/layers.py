"""Partial convolution (Liu et al. 2018, eq. 1-2).

For a window with input X, mask M (1 = valid) and weights W:

    x' = W^T (X * M) * sum(1) / sum(M) + b    if sum(M) > 0, else 0
    m' = 1                                    if sum(M) > 0, else 0

``sum(1)`` counts every input element under the window (``C_in * kh * kw``) and ``sum(M)`` the valid ones.
Zero padding is treated as hole, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def valid_channel_count(mask: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, 1, H, W): how many of ``channels`` input channels are valid at each pixel under ``mask``.

    ``mask`` is (N, 1, H, W), shared by all channels, or (N, channels, H, W).
    """
    # Counts in float32 or wider: exact at any width (bf16 holds integers exactly only up to 256).
    mask = mask.to(torch.promote_types(mask.dtype, torch.float32))
    return mask * channels if mask.shape[1] == 1 else mask.sum(dim=1, keepdim=True)


class PartialConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that only looks at valid pixels and renormalises by their count.

    Takes PyTorch's ``nn.Conv2d`` arguments (``groups`` must be 1 and ``padding_mode`` "zeros", because the
    paper's re-weighting is defined for a full window with zero padding counted as hole).

    ``forward(x, mask)`` returns ``(output, updated_mask)``. ``mask`` is float {0, 1} with 1 = valid, either
    ``(N, 1, H, W)`` (shared by all channels) or ``(N, C_in, H, W)`` (per channel). The updated mask is
    always ``(N, 1, H', W')``: after one partial convolution every output channel shares it.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1:
            raise ValueError(f"PartialConv2d supports groups=1 only, got groups={self.groups}")
        if self.padding_mode != "zeros":
            raise ValueError(
                f"PartialConv2d treats padding as hole and needs padding_mode='zeros', got {self.padding_mode!r}"
            )
        if isinstance(self.padding, str):
            raise ValueError(f"PartialConv2d needs explicit integer padding, got padding={self.padding!r}")
        # Counts valid pixels under each window; a buffer so it follows .to(device) but stays out of state_dict.
        # Created where the weight is (``device=`` / ``dtype=`` given to the constructor, or "meta").
        self.register_buffer(
            "window_ones", torch.ones(1, 1, *self.kernel_size, device=self.weight.device), persistent=False
        )

    @property
    def window_size(self) -> int:
        """``sum(1)`` in the paper: input elements under one window."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if mask.ndim != 4 or mask.shape[1] not in (1, self.in_channels):
            raise ValueError(
                f"expected mask of shape (N, 1, H, W) or (N, {self.in_channels}, H, W), got {tuple(mask.shape)}"
            )
        if mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match input shape {tuple(x.shape)}")
        mask = mask.to(x.dtype)
        return self.forward_masked(x * mask, valid_channel_count(mask, self.in_channels))

    def forward_masked(
        self, masked_input: torch.Tensor, valid_channels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Partial convolution of an input that is already zero in its holes.

        Args:
            masked_input: ``X * M``, shape (N, C_in, H, W).
            valid_channels: (N, 1, H, W), the number of valid input channels at each pixel (``sum_c M``).
                Summing channels before the window sum keeps the mask work a single-channel convolution.

        Returns:
            The output and its single-channel valid mask.
        """
        raw = F.conv2d(masked_input, self.weight, None, self.stride, self.padding, self.dilation)
        return self.renormalise(raw, valid_channels, masked_input.dtype)

    def renormalise(
        self, raw: torch.Tensor, valid_channels: torch.Tensor, mask_dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The partial convolution's output from ``raw = W^T (X * M)`` (no bias), computed by the caller.

        Args:
            raw: the convolution of the masked input with this layer's weight, shape (N, C_out, H', W').
            valid_channels: (N, 1, H, W), the number of valid input channels at each input pixel.
            mask_dtype: the returned mask's dtype (the masked input's).

        Returns:
            The output and its single-channel valid mask, as :meth:`forward_masked`.
        """
        scale, updated_mask = self._scale(valid_channels)
        scale = scale.to(raw.dtype)
        if self.bias is None:
            output = raw * scale  # scale is already 0 where the window has no valid input
        else:
            bias = self.bias.view(1, -1, 1, 1).to(raw.dtype)
            output = torch.addcmul(bias, raw, scale).mul_(updated_mask.to(raw.dtype))
        return output, updated_mask.to(mask_dtype)

    def renormalise_(
        self, raw: torch.Tensor, valid_channels: torch.Tensor, mask_dtype: torch.dtype, shift: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`renormalise` in place on ``raw``, for inference, with ``shift`` (C_out,) for the bias: this
        layer's, or a following BatchNorm's folded in. The output is 0 wherever the window has no valid input
        (where a BatchNorm would output its shift, which every consumer masks out)."""
        scale, updated_mask = self._scale(valid_channels)
        if shift is None:
            raw.mul_(scale.to(raw.dtype))
        else:
            torch.addcmul(shift.view(1, -1, 1, 1).to(raw.dtype), raw, scale.to(raw.dtype), out=raw)
            raw.mul_(updated_mask.to(raw.dtype))
        return raw, updated_mask.to(mask_dtype)

    def _scale(self, valid_channels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sum(1) / sum(M)`` per output pixel (0 where the window has no valid input) and the updated mask,
        in float32 or wider."""
        with torch.no_grad(), torch.autocast(valid_channels.device.type, enabled=False):
            # float32: counts reach C_in * kh * kw (4608 for 512 channels and 3x3), past fp16's exact integers.
            count_dtype = torch.promote_types(valid_channels.dtype, torch.float32)
            valid_count = self._window_sum(valid_channels.to(count_dtype))
            updated_mask = (valid_count > 0).to(count_dtype)
            # Windows with no valid input get scale 0, so they output exactly 0 without dividing by 0.
            scale = self.window_size / valid_count.clamp(min=1.0) * updated_mask
        return scale, updated_mask

    def _window_sum(self, counts: torch.Tensor) -> torch.Tensor:
        """The sum of ``counts`` (N, 1, H, W) under each window of this convolution. A pooling sum where it has the
        same windows (no dilation, padding at most half the kernel): 2-5x faster than a one-channel convolution
        on a CPU and as exact (sums of small integers in float32). ONNX has no pooling sum, so exports convolve."""
        pooling = self.dilation == (1, 1) and all(p <= k // 2 for p, k in zip(self.padding, self.kernel_size))
        if pooling and not torch.onnx.is_in_onnx_export():
            return F.avg_pool2d(
                counts, self.kernel_size, self.stride, self.padding, count_include_pad=True, divisor_override=1
            )
        return F.conv2d(counts, self.window_ones.to(counts.dtype), None, self.stride, self.padding, self.dilation)


# How the taps of a 3-tap kernel fall on the input once it is upsampled x2 (nearest): an output pixel of phase 0
# (even) sees input offsets (-1, 0) with taps (w0, w1 + w2); phase 1 (odd) sees (0, +1) with taps (w0 + w1, w2).
_PHASE_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def nearest_upsampled_phases(weight: torch.Tensor) -> torch.Tensor:
    """The (4 * C_out, C_in, 2, 2) kernel that :func:`conv3x3_nearest_upsampled` convolves with: the 2 x 2 kernels of
    the four output phases (even / odd row, even / odd column), stacked as output channels, from a 3 x 3 ``weight``."""
    with torch.autocast(weight.device.type, enabled=False):  # the tap sums in float32 or wider
        dtype = torch.promote_types(weight.dtype, torch.float32)
        taps = torch.tensor(_PHASE_TAPS, dtype=dtype, device=weight.device)
        phases = torch.einsum("pak,qbl,oikl->pqoiab", taps, taps, weight.to(dtype))
    return phases.reshape(4 * weight.shape[0], weight.shape[1], 2, 2).to(weight.dtype)


def conv3x3_nearest_upsampled(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)`` for a 3 x 3
    ``weight``, without the upsampled tensor and with 4/9 of the multiplications.

    Each of the four output phases (even / odd row and column) of a 3 x 3 convolution over a nearest-upsampled
    input is a 2 x 2 convolution of the input itself, whose taps are sums of the 3 x 3 taps: one convolution
    of ``x`` with the four phases' kernels stacked as output channels (:func:`nearest_upsampled_phases`), then the
    phases interleaved. Exact up to floating-point rounding; about 2x faster on a CPU (5x for the decoder's last
    layer, whose three output channels use the convolution kernels poorly at full resolution). In an ONNX export
    the phase kernels are computed from the 3 x 3 ones in the graph (the file keeps the model's own weights), and
    ONNX Runtime folds that computation once, when the session is created.
    """
    n, _, height, width = x.shape
    out_channels = weight.shape[0]
    # (N, 4 * C_out, H + 1, W + 1): output pixel (2i + row, 2j + col) is phase (row, col)'s pixel (i + row, j + col).
    stacked = F.conv2d(x, nearest_upsampled_phases(weight), padding=1)
    phases = {
        (row, col): stacked[:, (2 * row + col) * out_channels : (2 * row + col + 1) * out_channels][
            :, :, row : row + height, col : col + width
        ]
        for row in (0, 1)
        for col in (0, 1)
    }
    if torch.onnx.is_in_onnx_export():  # slice assignment exports poorly; stacks are plain ONNX
        rows = [torch.stack((phases[row, 0], phases[row, 1]), dim=-1).flatten(-2) for row in (0, 1)]
        output = torch.stack(rows, dim=3).reshape(n, out_channels, 2 * height, 2 * width)
        return output if bias is None else output + bias.view(1, -1, 1, 1).to(output.dtype)
    # One allocation filled phase by phase, in the convolution's memory format: inpaint()'s images arrive
    # channels-last, oneDNN keeps that, and a decoder output in the other format makes every later elementwise
    # operation with the skip a slow transposition (1.2x on a whole 12-MP fill).
    channels_last = stacked.is_contiguous(memory_format=torch.channels_last) and not stacked.is_contiguous()
    if channels_last:
        output = stacked.new_empty(n, height, 2, width, 2, out_channels)
        for (row, col), phase in phases.items():
            output[:, :, row, :, col] = phase.permute(0, 2, 3, 1)
        output = output.view(n, 2 * height, 2 * width, out_channels).permute(0, 3, 1, 2)
    else:
        output = stacked.new_empty(n, out_channels, height, 2, width, 2)
        for (row, col), phase in phases.items():
            output[:, :, :, row, :, col] = phase
        output = output.view(n, out_channels, 2 * height, 2 * width)
    return output if bias is None else output.add_(bias.view(1, -1, 1, 1).to(output.dtype))
