"""The ImageNet feature networks, layer for layer as torchvision's ``vgg16().features`` and ``alexnet().features``.

One builder per network, used by the perceptual / style loss (``pconv_hf.losses``) and by LPIPS
(``pconv_hf.metrics``). The layers keep torchvision's indices, so the converted weights of
``pconv_hf.feature_weights`` (keys ``features.<index>.*``) load into ``nn.Sequential(*layers)`` one to one.
Each caller takes the first ``count`` layers it needs; only those are built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# torchvision's layer order: (out_channels, kernel_size, stride, padding) is a convolution followed by a ReLU,
# ("pool", size) a max pooling with that kernel and stride 2.
_VGG_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
_VGG16 = tuple(entry for block in _VGG_BLOCKS for entry in (*((channels, 3, 1, 1) for channels in block), ("pool", 2)))
_ALEXNET = ((64, 11, 4, 2), ("pool", 3), (192, 5, 1, 2), ("pool", 3), (384, 3, 1, 1), (256, 3, 1, 1),
            (256, 3, 1, 1), ("pool", 3))  # fmt: skip


def _first(spec: tuple, count: int, device: torch.device | str | None, inplace: bool) -> list[nn.Module]:
    # Modules are made one by one, in order, and only the first ``count``: a caller creates (and draws default
    # initialisations from the global RNG for) nothing beyond the layers it uses.
    total = sum(1 if entry[0] == "pool" else 2 for entry in spec)
    if not 0 < count <= total:
        raise ValueError(f"count must be in [1, {total}] (the network's layers), got {count}")
    layers: list[nn.Module] = []
    in_channels = 3
    for entry in spec:
        if len(layers) == count:
            break
        if entry[0] == "pool":
            layers.append(nn.MaxPool2d(kernel_size=entry[1], stride=2))
            continue
        out_channels, kernel_size, stride, padding = entry
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, device=device))
        if len(layers) < count:
            layers.append(nn.ReLU(inplace=inplace))
        in_channels = out_channels
    return layers


def vgg16_layers(count: int, *, device: torch.device | str | None = None, inplace: bool = False) -> list[nn.Module]:
    """torchvision's ``vgg16().features[:count]`` (31 layers in all), untrained."""
    return _first(_VGG16, count, device, inplace)


def alexnet_layers(count: int, *, device: torch.device | str | None = None, inplace: bool = False) -> list[nn.Module]:
    """torchvision's ``alexnet().features[:count]`` (13 layers in all), untrained."""
    return _first(_ALEXNET, count, device, inplace)


LAYER_BUILDERS: dict[str, Callable[..., list[nn.Module]]] = {"vgg16": vgg16_layers, "alexnet": alexnet_layers}
