"""Network surgery on a trained PConvUNet: a copy with the boundary-blend last layer, a wider copy computing the
same function (Net2WiderNet), and the parameter count. Used by training to carry a model's weights into a new
shape; the copies are built with ``type(model)``, so this module does not import the network's."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .model import PConvUNet


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def add_boundary_blend(model: PConvUNet, blend: float = 0.95) -> PConvUNet:
    """A copy of a partial ``model`` with ``boundary_blend=True``: the last layer's feature weights become the
    feature prediction (scaled by the paper's renormalisation at a hole pixel), the known-pixel prediction
    starts as the mean of the known pixels, and boundary hole pixels start with weight ``blend`` on it."""
    if model.conv_type != "partial" or model.config.get("boundary_blend"):
        raise ValueError("add_boundary_blend needs a partial-convolution model with the paper's last layer")
    upgraded = type(model)(**{**model.config, "boundary_blend": True})
    state = model.state_dict()
    prefix = f"decoder.{model.layer_size - 1}."
    old = model.decoder[-1].conv
    feature_channels = old.in_channels - model.in_channels
    # At a hole pixel the paper's layer scaled everything by window / valid inputs = all / feature channels.
    state[prefix + "conv.weight"] = state[prefix + "conv.weight"][:, :feature_channels] * (
        old.in_channels / feature_channels
    )
    fresh = upgraded.state_dict()
    for name in ("known.weight", "blend_logit"):
        state[prefix + name] = fresh[prefix + name]
    state[prefix + "blend_logit"] = torch.full_like(fresh[prefix + "blend_logit"], math.log(blend / (1 - blend)))
    upgraded.load_state_dict(state)
    return upgraded.to(device=model.device, dtype=model.dtype).train(model.training)


def widen(model: PConvUNet, base_channels: int, seed: int = 0) -> PConvUNet:
    """A copy of ``model`` with a wider ``base_channels`` that computes the same function (Net2WiderNet, Chen et
    al. 2016): every new channel copies an existing one (weights, bias, BatchNorm statistics), and the layer
    reading it splits the copied channel's weights among its copies in random shares that sum to one, so the
    copies get different gradients from the first step and grow apart. Partial convolutions keep their
    renormalisation, because every widened input part of a layer grows by the same factor (base_channels /
    the old one). Exact up to float rounding for plain models and with ``boundary_blend``. The paper's last layer
    renormalises over the widened features and the 3 image channels together, so there the output changes at
    pixels whose window is partly hole: add the blend first (``add_boundary_blend``) to widen such a model."""
    old_base = model.config["base_channels"]
    if not isinstance(base_channels, int) or isinstance(base_channels, bool) or base_channels <= old_base:
        raise ValueError(f"base_channels must be an int above the model's {old_base}, got {base_channels!r}")
    layers = model.layer_size
    generator = torch.Generator().manual_seed(seed)

    def channel_map(old: int, new: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(source channel of each new channel, its share of the source's outgoing weights)."""
        index = torch.cat((torch.arange(old), torch.randint(old, (new - old,), generator=generator)))
        weight = torch.rand(new, generator=generator) + 0.5
        return index, weight / torch.zeros(old).index_add_(0, index, weight)[index]

    wide = type(model)(**{**model.config, "base_channels": base_channels})
    identity = (torch.arange(model.in_channels), torch.ones(model.in_channels))
    old_channels = [block.conv.out_channels for block in model.encoder]
    new_channels = [block.conv.out_channels for block in wide.encoder]
    encoder = [channel_map(o, n) for o, n in zip(old_channels, new_channels)]
    # Decoder level i outputs as many channels as encoder level i - 1 (the image's at level 0).
    decoder = [identity] + [channel_map(o, n) for o, n in zip(old_channels[:-1], new_channels[:-1])]

    # (output map, input map or None) of every tensor, by module prefix.
    maps: dict[str, tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]] = {}
    for i in range(layers):
        maps[f"encoder.{i}."] = (encoder[i], identity if i == 0 else encoder[i - 1])
        block = model.decoder[layers - 1 - i]
        below = encoder[-1] if i == layers - 1 else decoder[i + 1]
        skip = identity if i == 0 else encoder[i - 1]
        prefix = f"decoder.{layers - 1 - i}."
        if block.boundary_blend:
            maps[prefix + "conv."] = (decoder[i], below)
            maps[prefix + "known."] = (identity, identity)
        else:
            # [upsampled features, skip]: the skip's channels follow the features' old ones (index max + 1).
            joined = (torch.cat((below[0], skip[0] + int(below[0].max()) + 1)), torch.cat((below[1], skip[1])))
            maps[prefix + "conv."] = (decoder[i], joined)
        maps[prefix + "norm."] = (decoder[i], None)

    state = {}
    for name, tensor in model.state_dict().items():
        prefix = next((p for p in maps if name.startswith(p)), None)
        if prefix is None or tensor.ndim == 0:  # blend_logit (image channels), num_batches_tracked
            state[name] = tensor
            continue
        (out_index, _), source = maps[prefix]
        value = tensor.float().index_select(0, out_index)
        if tensor.ndim == 4 and source is not None:
            in_index, share = source
            value = value.index_select(1, in_index) * share.view(1, -1, 1, 1)
        state[name] = value.to(tensor.dtype)
    wide.load_state_dict(state)
    wide._encoder_bn_frozen = model._encoder_bn_frozen
    return wide.to(device=model.device, dtype=model.dtype).train(model.training)
