"""Segmentation heads and the single-frame `SegmentationModel` (the per-frame baseline, stage 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.lraspp import LRASPPHead

from .backbones import build_backbone, build_projection
from .decoder import SkipDecoder, SkipSpec

SEG_HEADS = ("deeplabv3", "lraspp", "unet")


class SegmentationHead(nn.Module):
    """Class logits at the input resolution from the bottleneck (and, except DeepLabv3, encoder skips).

    - `deeplabv3`: torchvision's `DeepLabHead` (ASPP with rates 12/24/36) on the bottleneck.
    - `lraspp`: torchvision's `LRASPPHead`, which adds a classifier on the stride-8 stage.
    - `unet`: a `SkipDecoder` through the `skips` (stride 8 then 4 for `lite`): 3x3 convs on the
      upsampled state joined with encoder detail, so classes a few pixels wide (poles, signs,
      pedestrians, road lines) are decided at stride 4 rather than blurred up from stride 8 or 16.

    `feature_channels` maps the backbone's feature names to their channels.
    """

    def __init__(
        self,
        kind: str,
        in_channels: int,
        num_classes: int,
        feature_channels: dict[str, int],
        inter_channels: int = 128,
        skips: SkipSpec | None = None,
    ) -> None:
        super().__init__()
        if kind not in SEG_HEADS:
            raise ValueError(f"unknown segmentation head {kind!r}; known: {SEG_HEADS}")
        self.kind = kind
        self.skip_names: tuple[str, ...] = ()
        if kind == "deeplabv3":
            self.head = DeepLabHead(in_channels, num_classes)
        elif kind == "lraspp":
            self.head = LRASPPHead(feature_channels["s8"], in_channels, num_classes, inter_channels)
        else:
            skips = skips or SkipSpec()
            self.skip_names = skips.names
            self.head = SkipDecoder(
                in_channels,
                [feature_channels[n] for n in skips.names],
                skips.widths,
                num_classes,
                skips.reduce_kernel,
                skips.convs_per_stage,
            )

    def forward(
        self, x: torch.Tensor, features: dict[str, torch.Tensor], out_size: tuple[int, int] | None
    ) -> torch.Tensor:
        """Bottleneck (N, C, h, w) and backbone features -> logits (N, num_classes, *out_size).

        With `out_size=None` the logits stay at the head's resolution (stride 8, or the finest
        skip's for `unet`), for callers that upsample probabilities instead (cheaper when streaming).
        """
        if self.kind == "deeplabv3":
            logits = self.head(x)
        elif self.kind == "lraspp":
            logits = self.head({"low": features["s8"], "high": x})
        else:
            logits = self.head(x, [features[n] for n in self.skip_names])
        if out_size is None:
            return logits
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """Single-frame segmentation: backbone -> (projection) -> head. Input normalised (N, 3, H, W).

    With the `full` preset this is DeepLabv3-ResNet50 at output stride 8 without the auxiliary head
    (39.6M parameters). Its `backbone`, `proj` and `seg_head` names match `GeometryFilter`'s, so a
    stage-1 checkpoint loads into the temporal model.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        seg_head: str,
        embed_channels: int | None = None,
        seg_inter_channels: int = 128,
        seg_skips: SkipSpec | None = None,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        out_ch = self.backbone.channels["out"]
        self.proj = build_projection(out_ch, embed_channels)
        c = embed_channels or out_ch
        self.seg_head = SegmentationHead(
            seg_head, c, num_classes, self.backbone.channels, seg_inter_channels, seg_skips
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, num_classes, H, W) logits."""
        feats = self.backbone(x)
        return self.seg_head(self.proj(feats["out"]), feats, tuple(x.shape[-2:]))
