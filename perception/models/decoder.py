"""`SkipDecoder`: a progressive upsampling decoder with U-Net style skips, shared by the depth and segmentation heads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SkipSpec:
    """Where a decoder reads the encoder: skip names (coarse to fine), widths and conv shape (see `SkipDecoder`)."""

    names: tuple[str, ...] = ("s8", "s4")
    widths: tuple[int, ...] = (64, 48, 32)
    reduce_kernel: int = 1
    convs_per_stage: int = 1


def conv_bn_relu(in_ch: int, out_ch: int, k: int = 3) -> nn.Sequential:
    """A k x k convolution (same padding, no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class SkipDecoder(nn.Module):
    """Bottleneck + encoder skips -> an `out_channels` map at the finest skip's resolution.

    `reduce` maps the bottleneck to `widths[0]`; then for each skip (coarse to fine) the map is
    upsampled to the skip's size, concatenated with it and refined by `convs_per_stage` 3x3 convs
    of `widths[i + 1]` channels; a 3x3 `head` gives the output, bilinearly upsampled to `out_size`
    when one is given.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        widths: Sequence[int],
        out_channels: int,
        reduce_kernel: int = 3,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__()
        if len(widths) != len(skip_channels) + 1:
            raise ValueError(f"need one width per skip plus one, got widths={widths} skips={skip_channels}")
        self.reduce = conv_bn_relu(in_channels, widths[0], reduce_kernel)
        stages = []
        for i, skip in enumerate(skip_channels):
            layers = [conv_bn_relu(widths[i] + skip, widths[i + 1])]
            layers += [conv_bn_relu(widths[i + 1], widths[i + 1]) for _ in range(convs_per_stage - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(
        self, x: torch.Tensor, skips: Sequence[torch.Tensor], out_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Bottleneck (N, C, h, w) and skips (coarse to fine) -> (N, out_channels, *out_size), or at the
        finest skip's resolution when `out_size` is None."""
        x = self.reduce(x)
        for stage, skip in zip(self.stages, skips, strict=False):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        x = self.head(x)
        if out_size is None:
            return x
        return F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
