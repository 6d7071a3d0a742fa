"""Feature extractors built from torchvision's model builders (no weights are downloaded).

Each backbone returns a dict of feature maps: `"out"` (the bottleneck) plus the skip features the
decoders use, keyed by their output stride (`"s2"`, `"s4"`, `"s8"`), and exposes `channels`
(name -> channels) and `out_stride`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small, resnet50
from torchvision.models._utils import IntermediateLayerGetter


class ResNet50Backbone(nn.Module):
    """ResNet-50 with dilated layer3/layer4 (output stride 8, as in DeepLabv3): 2048 ch at H/8 x W/8.

    Skips: `s2` = stem (64 ch, after the first ReLU), `s4` = layer1 (256 ch). 23.5M parameters.
    """

    out_stride = 8

    def __init__(self) -> None:
        super().__init__()
        net = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        self.body = IntermediateLayerGetter(
            net, return_layers={"relu": "s2", "layer1": "s4", "layer2": "s8", "layer4": "out"}
        )
        self.channels = {"s2": 64, "s4": 256, "s8": 512, "out": 2048}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(x)


# Index of the last block at each output stride in torchvision's MobileNetV3 `features` (dilated last stage).
_MOBILENET_TAPS = {
    "mobilenet_v3_large": ({"s2": 1, "s4": 3, "s8": 6, "out": 16}, {"s2": 16, "s4": 24, "s8": 40, "out": 960}),
    "mobilenet_v3_small": ({"s2": 0, "s4": 1, "s8": 3, "out": 12}, {"s2": 16, "s4": 16, "s8": 24, "out": 576}),
}
REDUCED_TAIL = "_reduced_tail"


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3 (large or small) features with a dilated last stage: output stride 16, like LR-ASPP.

    A `_reduced_tail` suffix (e.g. `mobilenet_v3_large_reduced_tail`) halves the last stage's
    channels, as the MobileNetV3 paper does for segmentation: about 25% less backbone time on CPU
    at 128x256, and the narrow projection after it discards most of the width anyway.
    """

    out_stride = 16

    def __init__(self, arch: str = "mobilenet_v3_large") -> None:
        super().__init__()
        base = arch.removesuffix(REDUCED_TAIL)
        reduced_tail = arch.endswith(REDUCED_TAIL)
        if base not in _MOBILENET_TAPS:
            known = sorted(_MOBILENET_TAPS) + [k + REDUCED_TAIL for k in sorted(_MOBILENET_TAPS)]
            raise ValueError(f"unknown MobileNetV3 variant {arch!r}; known: {known}")
        builder = mobilenet_v3_large if base == "mobilenet_v3_large" else mobilenet_v3_small
        features = builder(weights=None, dilated=True, reduced_tail=reduced_tail).features
        taps, channels = _MOBILENET_TAPS[base]
        self.channels = dict(channels, out=channels["out"] // 2 if reduced_tail else channels["out"])
        self.body = IntermediateLayerGetter(features, return_layers={str(i): name for name, i in taps.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(x)


def build_backbone(name: str) -> ResNet50Backbone | MobileNetV3Backbone:
    """Build a backbone by name: `resnet50`, `mobilenet_v3_large` or `mobilenet_v3_small` (optionally `_reduced_tail`)."""
    if name == "resnet50":
        return ResNet50Backbone()
    return MobileNetV3Backbone(name)


def build_projection(in_channels: int, out_channels: int | None) -> nn.Module:
    """A 1x1 conv + BN + ReLU narrowing the bottleneck to `out_channels`; Identity when None or equal."""
    if out_channels is None or out_channels == in_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )
