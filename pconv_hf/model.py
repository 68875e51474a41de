"""PConvUNet: the U-Net of Liu et al. 2018 built from partial convolutions, with Hugging Face Hub I/O.

The constructor's keyword arguments are the config (saved as ``config.json`` next to ``model.safetensors``).
``conv_type="plain"`` builds the paper's "Conv" baseline: the same shapes with ordinary convolutions and the
holes filled with mid-grey.
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any, Literal

import safetensors.torch
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .hub import CONFIG_NAME, MODEL_CARD_TEMPLATE, PAPER_URL, WEIGHTS_NAME, hub_reachable
from .images import ImageLike
from .inpainting import inpaint as _inpaint
from .jsonfile import read_json_object
from .layers import PartialConv2d, conv3x3_nearest_upsampled, valid_channel_count
from .onnx import export_onnx as _export_onnx
from .runtime import DTYPES, autocast_dtype, default_device, eval_mode, free_memory, native_bf16, parse_device
from .surgery import add_boundary_blend, count_parameters, widen

__all__ = [  # the runtime and surgery helpers are re-exported for code that imported them from here
    "DTYPES",
    "PConvUNet",
    "add_boundary_blend",
    "autocast_dtype",
    "compose",
    "count_parameters",
    "default_device",
    "eval_mode",
    "native_bf16",
    "widen",
]


def compose(image: torch.Tensor, valid_mask: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The paper's composite ``I_comp``: the known pixels of ``image`` (``valid_mask`` 1) and the network's
    ``output`` in the holes (``valid_mask`` 0)."""
    return valid_mask * image + (1 - valid_mask) * output


# The paper's encoder: kernel sizes of the first layers, 3x3 for the rest; channels double up to 8x base.
_ENCODER_KERNELS = (7, 5, 5)
_MAX_CHANNEL_MULTIPLIER = 8


def _encoder_channels(layer_size: int, base_channels: int) -> list[int]:
    return [base_channels * min(2**i, _MAX_CHANNEL_MULTIPLIER) for i in range(layer_size)]


def _weight_count(channels: list[int], kernels: list[int], in_channels: int) -> int:
    """The number of convolution weights of a PConvUNet (biases and BatchNorm, under 1 %, left out): known before
    anything is allocated, so a config too large for this machine is refused in one line."""
    inputs = [in_channels, *channels]  # encoder i reads inputs[i]; decoder i writes inputs[i] and reads its skip
    encoder = sum(c_in * c_out * k * k for c_in, c_out, k in zip(inputs, channels, kernels))
    decoder = sum((channels[i] + inputs[i]) * inputs[i] * 9 for i in range(len(channels)))
    return encoder + decoder


def _folded_norm(norm: nn.Module, bias: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(scale, shift) per channel such that ``norm(conv(x) + bias) = conv(x) * scale + shift`` for an inference
    BatchNorm (running statistics); ``(None, bias)`` when ``norm`` is the identity."""
    if isinstance(norm, nn.Identity):
        return None, bias
    if not isinstance(norm, nn.BatchNorm2d) or norm.training or norm.running_var is None or norm.weight is None:
        raise ValueError(f"only an affine BatchNorm2d in eval mode folds into a convolution, got {norm}")
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    return scale, shift if bias is None else shift + bias * scale


class EncoderBlock(nn.Module):
    """Stride-2 convolution, optional BatchNorm, ReLU; the mask (if any) goes through the convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, batch_norm: bool, partial: bool):
        super().__init__()
        conv_class = PartialConv2d if partial else nn.Conv2d
        # A bias before BatchNorm is cancelled by its mean subtraction, so only unnormalised layers have one.
        self.conv = conv_class(
            in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2, bias=not batch_norm
        )
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.activation = nn.ReLU(inplace=True)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, premasked: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``premasked``: ``x`` is already 0 in its holes (inference, see :meth:`PConvUNet.forward`); then the
        output is too."""
        if premasked and mask is not None:
            return self._forward_premasked(x, mask)
        if mask is None:
            x = self.conv(x)
        else:
            x, mask = self.conv(x, mask)
        return self.activation(self.norm(x)), mask

    def _forward_premasked(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # BatchNorm folded into the convolution, everything after it in place: the only new tensor is the
        # convolution's output (a few passes over memory fewer, and no fresh pages for the others).
        scale, shift = _folded_norm(self.norm, self.conv.bias)
        weight = self.conv.weight if scale is None else self.conv.weight * scale.view(-1, 1, 1, 1)
        raw = F.conv2d(x, weight, None, self.conv.stride, self.conv.padding, self.conv.dilation)
        x, mask = self.conv.renormalise_(raw, valid_channel_count(mask, self.conv.in_channels), x.dtype, shift)
        return self.activation(x), mask


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the encoder skip (and its mask), 3x3 convolution, optional BN + LeakyReLU."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        last: bool,
        partial: bool,
        upsampling_mode: str,
        boundary_blend: bool = False,
    ):
        super().__init__()
        conv_class = PartialConv2d if partial else nn.Conv2d
        self.in_channels = in_channels
        self.upsampling_mode = upsampling_mode
        self.boundary_blend = boundary_blend
        if boundary_blend:
            # Two predictions, each renormalised on its own: from the decoder features (everywhere) and from the
            # known pixels of the 3x3 window (a partial convolution of the skip alone, starting as their mean).
            # Hole pixels that touch a known pixel blend the two; the others take the features' prediction.
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.known = PartialConv2d(skip_channels, out_channels, 3, padding=1, bias=False)
            with torch.no_grad():
                self.known.weight.zero_()
                for c in range(min(skip_channels, out_channels)):
                    self.known.weight[c, c] = 1.0 / 9.0
            self.blend_logit = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        else:
            self.conv = conv_class(in_channels + skip_channels, out_channels, 3, padding=1, bias=last)
        self.norm = nn.Identity() if last else nn.BatchNorm2d(out_channels)
        self.activation = nn.Identity() if last else nn.LeakyReLU(0.2, inplace=True)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        skip: torch.Tensor,
        skip_mask: torch.Tensor | None,
        premasked: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``premasked``: ``x`` and ``skip`` are already 0 in their holes (inference, see
        :meth:`PConvUNet.forward`); then the output is too.

        A level of odd height or width: the encoder's stride-2 convolution rounded its size up, as if the level
        had one more row or column of hole, so ``x`` upsampled is one larger than ``skip``. The skip is padded
        with that hole (zeros, mask 0) and the output cropped back to the skip's size."""
        height, width = skip.shape[-2:]
        pad = (0, 2 * x.shape[-1] - width, 0, 2 * x.shape[-2] - height)
        if torch.onnx.is_in_onnx_export() or any(pad):  # an export pads always: its sizes are symbolic
            skip, skip_mask = _pad_like(skip, pad), None if skip_mask is None else _pad_like(skip_mask, pad)
            x, mask = self._forward(x, mask, skip, skip_mask, premasked)
            return x[:, :, :height, :width], None if mask is None else mask[:, :, :height, :width]
        return self._forward(x, mask, skip, skip_mask, premasked)

    def _forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        skip: torch.Tensor,
        skip_mask: torch.Tensor | None,
        premasked: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if premasked and mask is not None:
            return self._forward_premasked(x, mask, skip, skip_mask)
        if self.upsampling_mode == "nearest" and not torch.is_grad_enabled():
            return self._forward_subpixel(x, mask, skip, skip_mask)
        if mask is None:
            x = self.conv(torch.cat((self._upsample(x), skip), dim=1))
        else:
            # Masks stay single-channel: mask the two parts separately and count valid channels per pixel,
            # instead of materialising a (N, C_in, H, W) mask for the concatenation. Masking before the
            # upsampling touches a quarter of the pixels and keeps interpolation from blending in hole values.
            masked_x = self._upsample(x * mask)
            mask = F.interpolate(mask, scale_factor=2, mode="nearest")
            if self.upsampling_mode != "nearest":  # smooth modes spread values into upsampled holes
                masked_x = masked_x * mask
            if self.boundary_blend:
                return self._blend_known(self.conv(masked_x), skip, skip_mask, mask)
            masked = torch.cat((masked_x, skip * skip_mask), dim=1)
            x, mask = self.conv.forward_masked(masked, self._valid_channels(mask, skip, skip_mask))
        return self.activation(self.norm(x)), mask

    def _forward_subpixel(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        skip: torch.Tensor,
        skip_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` for nearest upsampling without gradients (inference): the same result, but the
        convolution's part over the upsampled features runs on them before upsampling
        (:func:`conv3x3_nearest_upsampled`), so they are never upsampled: 1.3-1.5x faster on a CPU. Training keeps
        the plain path, whose backward is the tested one."""
        bias = self.conv.bias
        up_weight, skip_weight = self._split_weight()
        if mask is None:
            x = conv3x3_nearest_upsampled(x, up_weight, bias) + F.conv2d(skip, skip_weight, padding=1)
            return self.activation(self.norm(x)), None
        upsampled_mask = F.interpolate(mask, scale_factor=2, mode="nearest")
        if self.boundary_blend:
            features = conv3x3_nearest_upsampled(x * mask, up_weight, bias)
            return self._blend_known(features, skip, skip_mask, upsampled_mask)
        masked_x, masked_skip = x * mask, skip * skip_mask
        raw = conv3x3_nearest_upsampled(masked_x, up_weight) + F.conv2d(masked_skip, skip_weight, padding=1)
        valid_channels = self._valid_channels(upsampled_mask, skip, skip_mask)
        # The mask's dtype as the plain path's (that of the concatenated masked input).
        x, mask = self.conv.renormalise(raw, valid_channels, torch.promote_types(masked_x.dtype, masked_skip.dtype))
        return self.activation(self.norm(x)), mask

    def _forward_premasked(
        self, x: torch.Tensor, mask: torch.Tensor, skip: torch.Tensor, skip_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_forward_subpixel` for inputs already 0 in their holes, with the BatchNorm folded into the
        convolution and everything after the convolutions in place."""
        upsampled_mask = F.interpolate(mask, scale_factor=2, mode="nearest")
        if self.boundary_blend:
            features = conv3x3_nearest_upsampled(x, self.conv.weight, self.conv.bias)
            return self._blend_known(features, skip, skip_mask, upsampled_mask)
        scale, shift = _folded_norm(self.norm, self.conv.bias)
        up_weight, skip_weight = self._split_weight()
        if scale is not None:
            up_weight, skip_weight = (w * scale.view(-1, 1, 1, 1) for w in (up_weight, skip_weight))
        raw = conv3x3_nearest_upsampled(x, up_weight).add_(F.conv2d(skip, skip_weight, padding=1))
        valid_channels = self._valid_channels(upsampled_mask, skip, skip_mask)
        x, mask = self.conv.renormalise_(raw, valid_channels, torch.promote_types(x.dtype, skip.dtype), shift)
        return self.activation(x), mask

    def _valid_channels(
        self, upsampled_mask: torch.Tensor, skip: torch.Tensor, skip_mask: torch.Tensor
    ) -> torch.Tensor:
        """Valid input channels per pixel of the convolution's input: the upsampled features' and the skip's."""
        return valid_channel_count(upsampled_mask, self.in_channels) + valid_channel_count(skip_mask, skip.shape[1])

    def _blend_known(
        self, features: torch.Tensor, skip: torch.Tensor, skip_mask: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """boundary_blend's output: the features' prediction, blended at hole pixels next to known ones with the
        partial convolution of the known pixels alone; every output pixel is valid."""
        near, near_mask = self.known(skip, skip_mask)
        blend = torch.sigmoid(self.blend_logit) * near_mask
        return features + blend * (near - features), torch.ones_like(mask)

    def _split_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution's kernel over the upsampled features and over the skip (None with boundary_blend)."""
        weight = self.conv.weight
        if self.boundary_blend:
            return weight, None
        return weight[:, : self.in_channels], weight[:, self.in_channels :]

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsampling_mode == "nearest" and x.requires_grad and not torch.compiler.is_compiling():
            return _NearestUpsample2x.apply(x)
        return F.interpolate(x, scale_factor=2, mode=self.upsampling_mode)


def _pad_like(tensor: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(tensor, pad)`` with zeros, in the tensor's memory format (a channels-last feature map padded into
    NCHW would make every later operation with it a transposition)."""
    padded = F.pad(tensor, pad)
    if tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        padded = padded.contiguous(memory_format=torch.channels_last)
    return padded


class _NearestUpsample2x(torch.autograd.Function):
    """``F.interpolate(x, scale_factor=2, mode="nearest")`` whose backward (a 2x2 sum) keeps the input's memory
    format. The gradient arriving here is a channel slice of the concatenation's, contiguous in no layout, and
    PyTorch's own backward copies it to NCHW first: about 1.15x on a channels-last bf16 training step (CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return F.interpolate(x, scale_factor=2, mode="nearest")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return F.avg_pool2d(grad.contiguous(memory_format=memory_format), 2, divisor_override=1)


_DOWNLOAD_ARGUMENTS = ("revision", "cache_dir", "force_download", "token", "local_files_only")
"""The keyword arguments of ``from_pretrained`` that say where to download from, passed to ``hf_hub_download``."""

_REQUIRED_CONFIG_KEYS = ("layer_size", "base_channels", "in_channels")
"""Keys every ``config.json`` must have: they set the weights' shapes, so no default can stand in for them."""


def _file_label(model_id: str, name: str) -> str:
    """How messages name a file of a saved model: its path in a local folder, else the file of the Hub id."""
    return os.path.join(model_id, name) if os.path.isdir(model_id) else f"{name} of {model_id!r}"


def _read_config(path: str | os.PathLike, label: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.json`` as a dict of the constructor's keyword arguments; ValueError naming ``label`` and the key
    when it is not UTF-8 JSON, not an object, names a key PConvUNet does not take or lacks a required one that the
    caller did not pass either (``given``, ``from_pretrained``'s keyword arguments). The constructor checks values."""
    config = read_json_object(path, label, 'PConvUNet settings like {"layer_size": 7}')
    known = [name for name in inspect.signature(PConvUNet.__init__).parameters if name != "self"]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"{label} has unknown keys {unknown}; PConvUNet takes {known}")
    missing = [key for key in _REQUIRED_CONFIG_KEYS if key not in config and key not in (given or {})]
    if missing:
        raise ValueError(
            f"{label} is missing the key(s) {', '.join(map(repr, missing))}, which set the weights' shapes"
        )
    return config


def _check_weights(
    state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], label: str, config: dict, strict: bool
) -> None:
    """Every tensor of a weights file against the model its config builds: names (when ``strict``), shapes, dtypes
    (floating point where the model's are, integer for BatchNorm's counters) and finite values. A NaN weight would
    fill every hole with black, and a bool or int one would be cast without a word."""
    built = "PConvUNet(" + ", ".join(f"{key}={value!r}" for key, value in config.items()) + ")"
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    if strict and (missing or unexpected):
        raise ValueError(
            f"weights in {label} do not match {built}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    common = [name for name in expected if name in state_dict]  # the model's order: the first layer first
    mismatched = [name for name in common if state_dict[name].shape != expected[name].shape]
    if mismatched:
        name = mismatched[0]
        raise ValueError(
            f"weights in {label} do not fit its config: tensor {name!r} has shape {tuple(state_dict[name].shape)} "
            f"where {CONFIG_NAME} builds {tuple(expected[name].shape)} ({len(mismatched)} of {len(common)} tensors "
            "differ); the two files belong to different models"
        )
    for name in common:
        tensor, floating = state_dict[name], expected[name].is_floating_point()
        if tensor.is_floating_point() != floating or tensor.dtype == torch.bool:
            kind = "floating point (float32, float16 or bfloat16)" if floating else "an integer type"
            raise ValueError(
                f"weights in {label}: tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}, expected {kind}; "
                "save the model again with PConvUNet.save_pretrained"
            )
        if floating and tensor.numel() and not _all_finite(tensor):
            bad = int((~torch.isfinite(tensor.float())).sum())
            raise ValueError(
                f"weights in {label}: tensor {name!r} has {bad:,} NaN or infinite values (a training run that "
                "diverged?); they would fill every hole with black: use an earlier checkpoint"
            )


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether a non-empty float tensor holds no NaN or infinity: its minimum and maximum, which both propagate
    NaN, are finite. One pass without a mask: 10x faster than ``isfinite().all()`` on the bundled half-precision
    weights (under 20 ms for the 26 M weights on one busy CPU thread, against 250 ms)."""
    if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = tensor.float()  # float8 and other rare kinds: aminmax may not take them
    low, high = torch.aminmax(tensor.reshape(-1))
    return bool(torch.isfinite(low) and torch.isfinite(high))


class PConvUNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="pconv_hf",
    license="apache-2.0",
    pipeline_tag="image-to-image",
    tags=["inpainting", "image-inpainting", "partial-convolution", "pconv"],
    paper_url=PAPER_URL,
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """The partial-convolution U-Net of Liu et al. 2018.

    Images are float RGB in [0, 1], shape (N, in_channels, H, W); masks are float {0, 1} with 1 = valid,
    shape (N, 1, H, W) or (N, in_channels, H, W), of any H and W.

    Args:
        layer_size: encoder depth (and decoder depth). 7 suits 256 px, 8 suits 512 px (the paper).
        base_channels: width of the first layer; 64 gives the paper's shapes.
        in_channels: image channels; the output has as many.
        upsampling_mode: ``F.interpolate`` mode for decoder features ("nearest" in the paper); masks are
            always upsampled with "nearest" so they stay binary.
        conv_type: "partial" (the paper's model) or "plain" (its "Conv" baseline: identical shapes, ordinary
            convolutions, holes filled with 0.5).
        boundary_blend: (partial only; not in the paper) split the last layer into a prediction from the decoder
            features and a partial convolution of the known pixels alone (renormalised on its own), and blend
            them, with a learned weight, at the hole pixels that touch a known pixel. In the paper's last layer
            the known pixels around a hole pixel add to it in proportion to how many of them are known (the
            renormalisation runs over the feature channels too, which are valid everywhere), and the
            half-resolution features cannot tell those pixels apart: hole pixels that stick out into the known
            area come out wrong, a dotted line along slanted hole edges.
        sample_size: the resolution the model was trained at; ``inpaint()`` works at this size.
    """

    def __init__(
        self,
        layer_size: int = 7,
        base_channels: int = 64,
        in_channels: int = 3,
        upsampling_mode: Literal["nearest", "bilinear", "bicubic"] = "nearest",
        conv_type: Literal["partial", "plain"] = "partial",
        sample_size: int = 256,
        boundary_blend: bool = False,
    ):
        super().__init__()
        if not isinstance(layer_size, int) or not 1 <= layer_size <= 10:
            raise ValueError(f"layer_size must be an int from 1 to 10 (7 for 256 px, 8 for 512 px), got {layer_size!r}")
        if not isinstance(base_channels, int) or base_channels < 1:
            raise ValueError(f"base_channels must be a positive int (64 in the paper), got {base_channels!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if upsampling_mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"upsampling_mode must be 'nearest', 'bilinear' or 'bicubic', got {upsampling_mode!r}")
        if conv_type not in ("partial", "plain"):
            raise ValueError(f"conv_type must be 'partial' or 'plain', got {conv_type!r}")
        if not isinstance(boundary_blend, bool) or (boundary_blend and conv_type != "partial"):
            raise ValueError(f"boundary_blend must be a bool and needs conv_type='partial', got {boundary_blend!r}")
        if not isinstance(sample_size, int) or sample_size < 2**layer_size or sample_size % 2**layer_size:
            raise ValueError(
                f"sample_size must be a positive multiple of 2**layer_size = {2**layer_size}, got {sample_size!r}"
            )
        self.layer_size = layer_size
        self.in_channels = in_channels
        self.conv_type = conv_type
        self.sample_size = sample_size
        self._config = {
            "layer_size": layer_size, "base_channels": base_channels, "in_channels": in_channels,
            "upsampling_mode": upsampling_mode, "conv_type": conv_type, "sample_size": sample_size,
            "boundary_blend": boundary_blend,
        }  # fmt: skip
        self._encoder_bn_frozen = False

        partial = conv_type == "partial"
        channels = _encoder_channels(layer_size, base_channels)
        kernels = [_ENCODER_KERNELS[i] if i < len(_ENCODER_KERNELS) else 3 for i in range(layer_size)]
        weights, available = _weight_count(channels, kernels, in_channels), free_memory()
        if torch.get_default_device().type != "meta" and available is not None and 4 * weights > available:
            raise ValueError(
                f"base_channels {base_channels} with layer_size {layer_size} makes {weights:,} weights "
                f"({4 * weights / 2**30:,.1f} GiB as float32), more memory than this machine has available "
                f"({available / 2**30:.1f} GiB); the paper uses base_channels 64"
            )
        self.encoder = nn.ModuleList(
            EncoderBlock(c_in, c_out, k, batch_norm=i > 0, partial=partial)
            for i, (c_in, c_out, k) in enumerate(zip([in_channels, *channels], channels, kernels))
        )
        # Decoder i (deepest first) concatenates encoder level i-1; the last one the input image itself.
        skip_channels = [in_channels, *channels[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(
                channels[i],
                skip_channels[i],
                skip_channels[i] if i > 0 else in_channels,
                last=i == 0,
                partial=partial,
                upsampling_mode=upsampling_mode,
                boundary_blend=boundary_blend and i == 0,
            )
            for i in reversed(range(layer_size))
        )

    @property
    def config(self) -> dict[str, Any]:
        """The constructor keyword arguments (what ``config.json`` holds); ``PConvUNet(**model.config)``."""
        return dict(self._config)

    @property
    def size_multiple(self) -> int:
        """H and W of the input must be multiples of this: 1, any size works (a level of odd size is treated as if
        it had one more row or column of hole, see :class:`DecoderBlock`). ``inpaint()`` pads its windows to
        multiples of it, so a window costs only its own pixels (padding to multiples of ``2 ** layer_size`` made
        a 12-MP fill's canvases 29 % hole: 0.85x the float32 time without it)."""
        return 1

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predict the full image; the caller composites it with the known pixels.

        Args:
            image: (N, C, H, W) in [0, 1]; values in the holes are ignored.
            mask: (N, 1, H, W) or (N, C, H, W), float {0, 1}, 1 = valid.

        Returns:
            (N, C, H, W), the network output I_out.
        """
        self._check_inputs(image, mask)
        if torch.is_autocast_enabled(image.device.type):
            # Under autocast the first convolution would cast the image anyway; casting here keeps the float32 image
            # and mask from promoting the first mask product and the full- and half-resolution decoder blocks (mask
            # products, upsampling, concatenations) back to float32: 1.35x per bf16 training step on CPU, same result.
            image = image.to(torch.get_autocast_dtype(image.device.type))
        mask = mask.to(image.dtype)

        # Inference: every feature map is kept 0 in its holes as it is made (in place), so no block multiplies
        # its inputs by their masks, and BatchNorm folds into the convolutions. The same result (tested to float64
        # rounding); the ONNX export keeps the plain graph.
        premasked = (
            self.conv_type == "partial"
            and self._config["upsampling_mode"] == "nearest"
            and not torch.is_grad_enabled()
            and not torch.onnx.is_in_onnx_export()
            and not any(module.training for module in self.modules())
        )

        # 1. Input: the partial network carries the mask; the plain baseline sees holes filled with 0.5.
        if self.conv_type == "partial":
            x, x_mask = (image * mask if premasked else image), mask
        else:
            x, x_mask = image * mask + 0.5 * (1 - mask), None

        # 2. Encoder: push every level (starting with the input) for the skip connections.
        skips = [(x, x_mask)]
        for block in self.encoder:
            x, x_mask = block(x, x_mask, premasked=premasked)
            skips.append((x, x_mask))
        skips.pop()  # the deepest level feeds the decoder directly

        # 3. Decoder: pop the matching level on the way up; the last skip is the input image and its mask.
        for block in self.decoder:
            skip, skip_mask = skips.pop()
            x, x_mask = block(x, x_mask, skip, skip_mask, premasked=premasked)
        return x

    def _check_inputs(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != self.in_channels:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be a tensor of shape (N, {self.in_channels}, H, W), got {shape}")
        if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[1] not in (1, self.in_channels):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask must be a tensor of shape (N, 1, H, W) or (N, {self.in_channels}, H, W), got {shape}"
            )
        if mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match image shape {tuple(image.shape)}")
        # Data-dependent, so torch.export cannot trace it: an exported graph trusts its caller (inpaint() thresholds).
        if not torch.compiler.is_compiling() and not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask must contain only 0 (hole) and 1 (valid); threshold it after resizing")

    def freeze_encoder_bn(self, frozen: bool = True) -> PConvUNet:
        """Freeze the encoder's BatchNorm (statistics and affine parameters) for the fine-tuning phase.

        The paper trains with BN everywhere, then fine-tunes with the encoder BN frozen (lr 5e-5) because
        statistics over hole pixels are unreliable. The setting survives ``train()`` calls.
        """
        self._encoder_bn_frozen = frozen
        for module in self.encoder.modules():
            if isinstance(module, _BatchNorm):  # SyncBatchNorm too, after convert_sync_batchnorm
                module.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> PConvUNet:
        super().train(mode)
        if self._encoder_bn_frozen:
            for module in self.encoder.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def inpaint(self, image: ImageLike, mask: ImageLike, **kwargs: Any) -> ImageLike:
        """Fill the white (nonzero) area of ``mask`` in ``image``; see :func:`pconv_hf.inpainting.inpaint`."""
        return _inpaint(self, image, mask, **kwargs)

    def export_onnx(self, path: str | os.PathLike, opset: int | None = None) -> Path:
        """Write the network as an ONNX file for ONNX Runtime; see :func:`pconv_hf.onnx.export_onnx`."""
        return _export_onnx(self, path, opset=opset)

    # --- Hub I/O -------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> PConvUNet:
        """Load from a local directory or a Hub id: ``config.json`` + ``model.safetensors``, strictly.

        Only safetensors weights are read (never pickles); every tensor must have the config's shape, a floating-point
        (or, for BatchNorm's counters, integer) dtype and finite values. ``map_location`` picks the device (default
        "cpu"). Raises ``ValueError`` with one message naming the directory or id, the file and the key or tensor
        when it cannot be loaded.
        """
        model_id = str(pretrained_model_name_or_path)
        if os.path.isdir(model_id):
            missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not os.path.isfile(os.path.join(model_id, name))]
            if missing:
                raise ValueError(f"{model_id!r} is not a saved PConvUNet: missing {', '.join(missing)}")
        elif os.path.exists(model_id) or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
            raise ValueError(f"{model_id!r} is not a directory (expected a saved model folder or a Hub id 'user/name')")
        elif not (hub_constants.HF_HUB_OFFLINE or kwargs.get("local_files_only")):
            # Unreachable but cached: load from the cache instead of waiting for huggingface_hub's retries.
            kwargs["local_files_only"] = not hub_reachable(model_id, kwargs.get("cache_dir"), kwargs.get("revision"))
        try:
            # Read and checked here, before the mixin's json.load, whose errors name neither the file nor the key.
            if os.path.isdir(model_id):
                config_file = os.path.join(model_id, CONFIG_NAME)
            else:
                config_file = hf_hub_download(
                    model_id,
                    CONFIG_NAME,
                    **{key: kwargs[key] for key in _DOWNLOAD_ARGUMENTS if kwargs.get(key) is not None},
                )
            _read_config(config_file, _file_label(model_id, CONFIG_NAME), given=kwargs)
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except (HfHubHTTPError, LocalEntryNotFoundError, HFValidationError, ConnectionError) as err:
            if hub_constants.HF_HUB_OFFLINE:
                reason = "HF_HUB_OFFLINE is set and it is not in the local Hub cache"
            else:
                reason = f"{err}".split("\n")[0]
            raise ValueError(
                f"could not load PConvUNet {model_id!r}: no such local directory, and from the Hub: {reason}"
            ) from err

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> PConvUNet:
        if config is None:
            raise ValueError(f"{model_id!r} has no {CONFIG_NAME}; cannot tell which PConvUNet to build")
        if isinstance(map_location, (str, torch.device)) and str(map_location).split(":")[0] == "meta":
            raise ValueError(f"cannot load {model_id!r} onto the meta device: it holds no weights; use 'cpu' or 'cuda'")
        device = parse_device(map_location, "map_location") or default_device()
        try:
            model = cls(**model_kwargs)
        except ValueError as err:
            raise ValueError(f"{_file_label(model_id, CONFIG_NAME)}: {err}") from err
        if os.path.isdir(model_id):
            weights_file = os.path.join(model_id, WEIGHTS_NAME)
        else:
            weights_file = hf_hub_download(
                repo_id=model_id,
                filename=WEIGHTS_NAME,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        weights_label = _file_label(model_id, WEIGHTS_NAME)
        try:
            state_dict = safetensors.torch.load_file(weights_file)
        except (safetensors.SafetensorError, OSError) as err:
            raise ValueError(
                f"cannot read the weights {weights_label} ({err}): the file is truncated or not safetensors; "
                "download or save the model again"
            ) from err
        _check_weights(state_dict, model.state_dict(), weights_label, model.config, strict)
        try:
            # copy_ casts, so half-precision files load into a float32 model.
            model.load_state_dict(state_dict, strict=False)
        except RuntimeError as err:  # _check_weights found nothing wrong: not expected, but one line all the same
            raise ValueError(f"weights in {weights_label} do not fit its config: {str(err).splitlines()[0]}") from err
        return model.to(device).eval()

    def save_pretrained(self, save_directory: str | Path, *, weights_dtype: torch.dtype | None = None, **kwargs: Any):
        """Write ``config.json``, ``model.safetensors`` and a model card (``README.md``) to ``save_directory``.

        Args:
            weights_dtype: store floating-point weights in this dtype (e.g. ``torch.float16`` to halve the
                file); loading casts back to the model's dtype.
            **kwargs: passed to ``PyTorchModelHubMixin.save_pretrained`` (``push_to_hub``, ``repo_id``, ...).
        """
        if weights_dtype is None:
            return super().save_pretrained(save_directory, **kwargs)
        # A copy in that dtype writes itself: floating-point parameters and buffers cast, integer ones kept.
        stored = copy.deepcopy(self).to(dtype=weights_dtype)
        return super(PConvUNet, stored).save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        state_dict = {name: tensor.contiguous() for name, tensor in self.state_dict().items()}
        # Written by us, not safetensors.torch.save_file, which (0.8) leaves the file readable by its owner only.
        (save_directory / WEIGHTS_NAME).write_bytes(safetensors.torch.save(state_dict, metadata={"format": "pt"}))
