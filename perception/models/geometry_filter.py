"""`GeometryFilter`: shared backbone -> ConvGRU at the bottleneck -> segmentation head + depth decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone, build_projection
from .convgru import ConvGRUCell
from .decoder import SkipSpec
from .depth import DepthDecoder, log_depth_to_metres
from .segmentation import SegmentationHead


class GeometryFilter(nn.Module):
    """The temporal segmentation + depth model.

    Each frame goes through the backbone and the projection; the result (the *embedding*, which the
    `EgoMotionFilter` pairs across frames, with `motion_detail` finer backbone features beside it)
    updates a ConvGRU state at the bottleneck, and both heads read that state, so predictions carry
    memory from earlier frames. The embedding is taken before the GRU
    so the ego-motion filter sees the current frame's evidence, and stays valid when the GRU is
    fine-tuned with the backbone frozen (stage 4).

    Inputs are normalised images (see `perception.models.normalize`). The state is an (N, hidden,
    h, w) tensor or None (zeros); it is not detached, so a window's forward keeps the graph.
    Submodule names (`backbone`, `proj`, `seg_head`, `depth_decoder`) match the single-frame
    models', so stage 1 and 2 checkpoints load into it.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        seg_head: str,
        embed_channels: int | None = None,
        hidden_channels: int | None = None,
        gru_kernel: int = 3,
        skip_names: Sequence[str] = ("s4", "s2"),
        decoder_widths: Sequence[int] = (256, 256, 128),
        seg_skips: SkipSpec | None = None,
        decoder_reduce_kernel: int = 3,
        seg_inter_channels: int = 128,
        decoder_convs_per_stage: int = 2,
        motion_detail: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        out_ch = self.backbone.channels["out"]
        self.embed_channels = embed_channels or out_ch
        self.hidden_channels = hidden_channels or self.embed_channels
        self.num_classes = num_classes
        self.proj = build_projection(out_ch, embed_channels)
        self.motion_detail = motion_detail
        self.motion_channels = self.embed_channels
        if motion_detail is not None:
            strides = {n: int(n[1:]) for n in self.backbone.channels if n != "out"}  # "s8" -> 8
            if motion_detail not in strides or self.backbone.out_stride % strides[motion_detail]:
                raise ValueError(
                    f"motion_detail {motion_detail!r} is not a backbone feature finer than 'out': {list(strides)}"
                )
            self.detail_factor = self.backbone.out_stride // strides[motion_detail]
            self.motion_channels += self.backbone.channels[motion_detail] * self.detail_factor**2
        self.convgru = ConvGRUCell(self.embed_channels, self.hidden_channels, gru_kernel)
        # the unet segmentation decoder's skips: `seg_skips` where given, else the depth decoder's
        skips = seg_skips or SkipSpec(
            tuple(skip_names), tuple(decoder_widths), decoder_reduce_kernel, decoder_convs_per_stage
        )
        self.seg_head = SegmentationHead(
            seg_head, self.hidden_channels, num_classes, self.backbone.channels, seg_inter_channels, skips
        )
        self.skip_names = tuple(skip_names)
        self.depth_decoder = DepthDecoder(
            self.hidden_channels,
            [self.backbone.channels[s] for s in skip_names],
            decoder_widths,
            decoder_reduce_kernel,
            decoder_convs_per_stage,
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(N, 3, H, W) -> embedding (N, embed, h, w) and the backbone's feature dict.

        The frames go through in channels-last memory order, which oneDNN's and cuDNN's convolutions run faster;
        the features keep that order, the values do not change."""
        feats = self.backbone(x.contiguous(memory_format=torch.channels_last))
        return self.proj(feats["out"]), feats

    def motion_embedding(self, emb: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the ego-motion filter pairs across frames: the embedding (N, embed, h, w), and with `motion_detail`
        that finer backbone feature folded onto the embedding's grid (`pixel_unshuffle`) beside it, so a shift of
        a fraction of an embedding cell still shows: (N, motion_channels, h, w)."""
        if self.motion_detail is None:
            return emb
        return torch.cat([emb, F.pixel_unshuffle(feats[self.motion_detail], self.detail_factor)], dim=1)

    def decode(
        self, h: torch.Tensor, feats: dict[str, torch.Tensor], out_size: tuple[int, int], upsample_seg: bool = True
    ) -> dict[str, torch.Tensor]:
        """GRU state and backbone features -> seg logits, log-depth and depth (metres) at `out_size`
        (seg logits at the head's own resolution when `upsample_seg` is False)."""
        seg = self.seg_head(h, feats, out_size if upsample_seg else None)
        log_depth = self.depth_decoder(h, [feats[s] for s in self.skip_names], out_size)
        return {"seg_logits": seg, "log_depth": log_depth, "depth": log_depth_to_metres(log_depth)}

    def step(
        self, x: torch.Tensor, state: torch.Tensor | None = None, upsample_seg: bool = True
    ) -> dict[str, torch.Tensor]:
        """One frame for every stream: (N, 3, H, W) -> dict of seg_logits (N, C, H, W), log_depth and
        depth (N, 1, H, W), embedding (N, motion_channels, h, w: `motion_embedding`) and the new state
        (N, hidden, h, w)."""
        emb, feats = self.encode(x)
        h = self.convgru(emb, state)
        out = self.decode(h, feats, (x.shape[-2], x.shape[-1]), upsample_seg)
        out.update(embedding=self.motion_embedding(emb, feats), state=h)
        return out

    def forward(self, rgb_seq: torch.Tensor, state: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """A window (B, T, 3, H, W) -> seg_logits (B, T, C, H, W), log_depth and depth (B, T, 1, H, W),
        embeddings (B, T, motion_channels, h, w: `motion_embedding`) and the final state (B, hidden, h, w).

        The backbone and heads run on all B*T frames at once; only the GRU runs frame by frame.
        """
        if rgb_seq.dim() != 5:
            raise ValueError(f"expected a (B, T, 3, H, W) window, got shape {tuple(rgb_seq.shape)}")
        b, t = rgb_seq.shape[:2]
        size = (rgb_seq.shape[-2], rgb_seq.shape[-1])
        emb, feats = self.encode(rgb_seq.flatten(0, 1))
        emb_seq = emb.unflatten(0, (b, t))
        states = []
        h = state
        for i in range(t):
            h = self.convgru(emb_seq[:, i], h)
            states.append(h)
        out = self.decode(torch.stack(states, 1).flatten(0, 1), feats, size)
        out = {k: v.unflatten(0, (b, t)) for k, v in out.items()}
        embeddings = self.motion_embedding(emb, feats).unflatten(0, (b, t))
        out.update(embeddings=embeddings, state=cast(torch.Tensor, h))  # T >= 1: the GRU ran
        return out
