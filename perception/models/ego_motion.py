"""`EgoMotionFilter`: camera motion between consecutive frames from the geometry embeddings.

MotionEstimator (three stride-2 3x3 convs with BatchNorm2d on the pair of embeddings of frames t-1
and t, as (change, current) or (previous, current): `EgoMotionFilter.pair`; pooling, linear) ->
GRUCell(128) -> CameraHead -> pose6 = (x, y, z, roll, pitch, yaw) in metres and radians, the
camera-relative motion `T_rel = inv(M_{t-1}) @ M_t` -> 4x4 through `conventions.pose6_to_matrix`.
Angles are regressed directly (no `asin` of clamped values) and there is no BatchNorm1d, so batch
size 1 trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from perception.conventions import pose6_to_matrix


class MotionEstimator(nn.Module):
    """Concatenated embeddings (N, 2E, h, w) -> motion feature (N, out_features)."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (1024, 256, 128),
        strides: Sequence[int] = (2, 2, 2),
        out_features: int = 128,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width, stride in zip(channels, strides, strict=False):
            layers += [
                nn.Conv2d(c, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c = width
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, out_features), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.convs(x)).flatten(1))


class CameraHead(nn.Module):
    """GRU state (N, hidden) -> pose6 (N, 6): translation in metres, roll/pitch/yaw in radians.

    A two-layer MLP; the last layer starts near zero (the motion between two frames is small), and
    the angles are scaled by `rotation_scale` so both outputs start on comparable scales.
    """

    def __init__(self, hidden: int = 128, rotation_scale: float = 0.1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 6))
        last = cast(nn.Linear, self.mlp[2])
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
        self.register_buffer("scale", torch.tensor([1.0, 1.0, 1.0] + [rotation_scale] * 3), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h) * self.scale


class EgoMotionFilter(nn.Module):
    """MotionEstimator -> GRUCell -> CameraHead, run over consecutive pairs of embeddings.

    The GRU state is (N, gru_hidden) or None (zeros); it is never detached here.
    """

    def __init__(
        self,
        embed_channels: int,
        channels: Sequence[int] = (1024, 256, 128),
        strides: Sequence[int] = (2, 2, 2),
        gru_hidden: int = 128,
        rotation_scale: float = 0.1,
        difference: bool = False,
    ) -> None:
        super().__init__()
        self.embed_channels = embed_channels
        self.difference = difference
        self.gru_hidden = gru_hidden
        self.motion_estimator = MotionEstimator(2 * embed_channels, channels, strides, gru_hidden)
        self.gru = nn.GRUCell(gru_hidden, gru_hidden)
        self.camera_head = CameraHead(gru_hidden, rotation_scale)

    def pair(self, prev: torch.Tensor, current: torch.Tensor, dim: int) -> torch.Tensor:
        """The MotionEstimator's input for frames t-1 and t, stacked along `dim`: (change, current) with
        `difference`, else (previous, current). Both hold the same information, but the change makes a standing
        camera's pair exactly zero in half the channels, which the estimator learns to read; from (previous,
        current) it learns the look of scenes it usually moves through and reports motion where it stands."""
        return torch.cat([current - prev if self.difference else prev, current], dim=dim)

    def step(
        self, prev_embedding: torch.Tensor, embedding: torch.Tensor, state: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One pair: embeddings (N, E, h, w) of frames t-1 and t -> pose6 (N, 6), matrix (N, 4, 4), state (N, hidden)."""
        feat = self.motion_estimator(self.pair(prev_embedding, embedding, dim=1))
        h = self.gru(feat, state)
        pose6 = self.camera_head(h)
        return {"pose6": pose6, "matrix": pose6_to_matrix(pose6), "state": h}

    def forward(self, embeddings_seq: torch.Tensor, state: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Embeddings (B, T, E, h, w) -> pose6 (B, T-1, 6) and matrix (B, T-1, 4, 4) for each pair (t-1, t),
        plus the final state (B, hidden). The MotionEstimator runs on all pairs at once."""
        if embeddings_seq.dim() != 5 or embeddings_seq.shape[1] < 2:
            raise ValueError(f"expected (B, T>=2, E, h, w) embeddings, got shape {tuple(embeddings_seq.shape)}")
        b, t = embeddings_seq.shape[:2]
        pairs = self.pair(embeddings_seq[:, :-1], embeddings_seq[:, 1:], dim=2).flatten(0, 1)
        feats = self.motion_estimator(pairs).unflatten(0, (b, t - 1))
        h = state
        poses = []
        for i in range(t - 1):
            h = self.gru(feats[:, i], h)
            poses.append(self.camera_head(h))
        pose6 = torch.stack(poses, 1)
        return {"pose6": pose6, "matrix": pose6_to_matrix(pose6), "state": cast(torch.Tensor, h)}  # T >= 2: the GRU ran
