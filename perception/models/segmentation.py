"""Segmentation heads and the single-frame `SegmentationModel` (the per-frame baseline, stage 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.lraspp import LRASPPHead

from .backbones import build_backbone, build_projection

SEG_HEADS = ("deeplabv3", "lraspp")


class SegmentationHead(nn.Module):
    """Class logits at the input resolution from the bottleneck (and, for LR-ASPP, stride-8 features).

    - `deeplabv3`: torchvision's `DeepLabHead` (ASPP with rates 12/24/36) on the bottleneck.
    - `lraspp`: torchvision's `LRASPPHead`, which adds a classifier on the higher-resolution stride-8
      stage so thin classes (poles, signs, road lines) keep their detail.
    """

    def __init__(self, kind: str, in_channels: int, num_classes: int, low_channels: int = 0, inter_channels: int = 128) -> None:
        super().__init__()
        if kind not in SEG_HEADS:
            raise ValueError(f"unknown segmentation head {kind!r}; known: {SEG_HEADS}")
        self.kind = kind
        if kind == "deeplabv3":
            self.head = DeepLabHead(in_channels, num_classes)
        else:
            self.head = LRASPPHead(low_channels, in_channels, num_classes, inter_channels)

    def forward(self, x: torch.Tensor, features: dict[str, torch.Tensor], out_size: tuple[int, int] | None) -> torch.Tensor:
        """Bottleneck (N, C, h, w) and backbone features -> logits (N, num_classes, *out_size).

        With `out_size=None` the logits stay at the head's resolution (stride 8), for callers that
        upsample probabilities instead (cheaper when streaming).
        """
        logits = self.head(x) if self.kind == "deeplabv3" else self.head({"low": features["s8"], "high": x})
        if out_size is None:
            return logits
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """Single-frame segmentation: backbone -> (projection) -> head. Input normalised (N, 3, H, W).

    With the `full` preset this is DeepLabv3-ResNet50 at output stride 8 without the auxiliary head
    (39.6M parameters). Its `backbone`, `proj` and `seg_head` names match `GeometryFilter`'s, so a
    stage-1 checkpoint loads into the temporal model.
    """

    def __init__(self, backbone: str, num_classes: int, seg_head: str, embed_channels: int | None = None,
                 seg_inter_channels: int = 128) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        out_ch = self.backbone.channels["out"]
        self.proj = build_projection(out_ch, embed_channels)
        c = embed_channels or out_ch
        self.seg_head = SegmentationHead(seg_head, c, num_classes, self.backbone.channels["s8"], seg_inter_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, num_classes, H, W) logits."""
        feats = self.backbone(x)
        return self.seg_head(self.proj(feats["out"]), feats, tuple(x.shape[-2:]))
