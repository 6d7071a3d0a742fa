"""Depth decoder with encoder skips, predicting log-depth, and the single-frame `DepthEstimationModel`.

Output scale: the decoder predicts the natural log of planar depth in metres (CARLA's depth camera:
distance along the optical axis). `log_depth_to_metres` turns it into metres clamped to
[`MIN_DEPTH_M`, `MAX_DEPTH_M`] = [0.5, 1000] (1000 m is CARLA's far plane, where the sky sits).
There is no final ReLU (the seed's died); the log space keeps near and far errors balanced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from .backbones import build_backbone, build_projection
from .decoder import SkipDecoder

MIN_DEPTH_M = 0.5
MAX_DEPTH_M = 1000.0
INITIAL_DEPTH_M = 20.0  # the head's bias starts here, a typical street-scene distance


def log_depth_to_metres(log_depth: torch.Tensor) -> torch.Tensor:
    """Metres (float32 at least, even under autocast) from predicted log-depth, clamped to [MIN_DEPTH_M, MAX_DEPTH_M]."""
    x = log_depth if log_depth.dtype in (torch.float32, torch.float64) else log_depth.float()
    return torch.exp(x.clamp(math.log(MIN_DEPTH_M), math.log(MAX_DEPTH_M)))


class DepthDecoder(SkipDecoder):
    """The depth head: a `SkipDecoder` with one output channel, log-depth, starting flat at `INITIAL_DEPTH_M`.

    Log-depth comes at the finest skip's resolution, bilinearly upsampled to the output size.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        widths: Sequence[int],
        reduce_kernel: int = 3,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__(in_channels, skip_channels, widths, 1, reduce_kernel, convs_per_stage)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.constant_(cast(torch.Tensor, self.head.bias), math.log(INITIAL_DEPTH_M))  # built with a bias


class DepthEstimationModel(nn.Module):
    """Single-frame metric depth: backbone -> (projection) -> `DepthDecoder` with skips (stage 2 baseline).

    `forward` returns `{"log_depth", "depth"}`, both (N, 1, H, W); depth in metres.
    """

    def __init__(
        self,
        backbone: str,
        embed_channels: int | None = None,
        skip_names: Sequence[str] = ("s4", "s2"),
        decoder_widths: Sequence[int] = (256, 256, 128),
        decoder_reduce_kernel: int = 3,
        decoder_convs_per_stage: int = 2,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        out_ch = self.backbone.channels["out"]
        self.proj = build_projection(out_ch, embed_channels)
        self.skip_names = tuple(skip_names)
        self.depth_decoder = DepthDecoder(
            embed_channels or out_ch,
            [self.backbone.channels[s] for s in skip_names],
            decoder_widths,
            decoder_reduce_kernel,
            decoder_convs_per_stage,
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        log_depth = self.depth_decoder(
            self.proj(feats["out"]), [feats[s] for s in self.skip_names], tuple(x.shape[-2:])
        )
        return {"log_depth": log_depth, "depth": log_depth_to_metres(log_depth)}
