"""`PerceptionPipeline`: the whole temporal stack (GeometryFilter + EgoMotionFilter) as one module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from perception.conventions import pose6_to_matrix

from .ego_motion import EgoMotionFilter
from .geometry_filter import GeometryFilter

if TYPE_CHECKING:
    from .presets import PresetConfig


@dataclass
class PipelineState:
    """Recurrent state of the pipeline, batched over streams.

    `geometry`: ConvGRU state (N, hidden, h, w); `ego`: GRUCell state (N, 128); `embedding`: the
    last frame's motion embedding (N, E, h, w: `GeometryFilter.motion_embedding`), the "t-1" of the
    next ego-motion pair. None means a fresh start. States keep their autograd graph; call `detach()`
    between training windows.
    """

    geometry: torch.Tensor | None = None
    ego: torch.Tensor | None = None
    embedding: torch.Tensor | None = None

    def detach(self) -> PipelineState:
        """A copy cut from the autograd graph (for truncated back-propagation between windows)."""
        return PipelineState(*(None if t is None else t.detach() for t in (self.geometry, self.ego, self.embedding)))


def _zero_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`x` with the rows where the (N,) bool mask `rows` is set replaced by zeros (no in-place ops)."""
    return torch.where(rows.view(-1, *([1] * (x.dim() - 1))), torch.zeros((), dtype=x.dtype, device=x.device), x)


class PerceptionPipeline(nn.Module):
    """Segmentation, metric depth and ego-motion with recurrent memory; built by `build_model`.

    Attributes: `geometry_filter`, `ego_motion_filter`, `config` (the `PresetConfig`),
    `num_classes`, `feature_dim` (size of the compact feature vector of `step`).
    Inputs are normalised images at `config.input_size` (see `perception.models.normalize`).
    `load_weights` also sets `weights_config`, the weights folder's config.json.
    """

    weights_config: dict[str, Any]  # set by `load_weights` only

    def __init__(self, config: PresetConfig, num_classes: int = 22) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.geometry_filter = GeometryFilter(num_classes=num_classes, **config.geometry_filter_kwargs())
        self.ego_motion_filter = EgoMotionFilter(
            self.geometry_filter.motion_channels,
            config.motion_channels,
            config.motion_strides,
            config.ego_gru_hidden,
            difference=config.motion_difference,
        )

    @property
    def feature_dim(self) -> int:
        """Feature vector size: pooled ConvGRU state (hidden channels) + ego-motion GRU state."""
        return self.geometry_filter.hidden_channels + self.ego_motion_filter.gru_hidden

    def forward(self, rgb_seq: torch.Tensor, state: PipelineState | None = None) -> dict:
        """A window (B, T, 3, H, W) -> the `GeometryFilter` outputs plus pose6 (B, T, 6) and matrix
        (B, T, 4, 4), and the final `PipelineState`.

        Entry t of pose6 is the motion from frame t-1 to t. Entry 0 uses the embedding carried in
        `state`; without one it is zeros (identity matrix), like `ClipWindows`' `rel_pose[0]`.
        """
        state = state or PipelineState()
        geo = self.geometry_filter(rgb_seq, state.geometry)
        emb = geo["embeddings"]
        first_missing = state.embedding is None
        seq = emb if state.embedding is None else torch.cat([state.embedding.unsqueeze(1), emb], dim=1)
        if seq.shape[1] >= 2:
            ego = self.ego_motion_filter(seq, state.ego)
            pose6, ego_state = ego["pose6"], ego["state"]
        else:
            pose6, ego_state = emb.new_zeros(emb.shape[0], 0, 6), state.ego
        if first_missing:
            pose6 = torch.cat([pose6.new_zeros(pose6.shape[0], 1, 6), pose6], dim=1)
        out = dict(geo)
        out.update(pose6=pose6, matrix=pose6_to_matrix(pose6), state=PipelineState(geo["state"], ego_state, emb[:, -1]))
        return out

    def step(
        self,
        x: torch.Tensor,
        state: PipelineState | None = None,
        first: torch.Tensor | None = None,
        upsample_seg: bool = True,
    ) -> dict:
        """One frame per stream: (N, 3, H, W) -> seg_logits, log_depth, depth, embedding, pose6 (N, 6),
        matrix (N, 4, 4), features (N, feature_dim) and the new `PipelineState` under "state".

        `first` (N,) bool marks streams starting afresh: their incoming state is ignored and their
        ego-motion is zero (identity), as for every stream when `state` is None. With
        `upsample_seg=False` the seg logits stay at the head's resolution.
        """
        state = state or PipelineState()
        n = x.shape[0]
        if state.embedding is None:  # nothing to pair with: every stream starts afresh
            all_first, first = True, torch.ones(n, dtype=torch.bool, device=x.device)
        elif first is None:  # no stream restarts (no data-dependent check, so this path runs on meta)
            all_first = False
        else:
            all_first = bool(first.all())
            if not all_first and state.geometry is not None and state.ego is not None:
                return self.step_masked(x, state, first, upsample_seg)
        geo_state = state.geometry
        if all_first:
            geo_state = None
        elif geo_state is not None and first is not None:
            geo_state = _zero_rows(geo_state, first)
        geo = self.geometry_filter.step(x, geo_state, upsample_seg)
        emb = geo["embedding"]
        if all_first:
            pose6 = emb.new_zeros(n, 6)
            ego_state = emb.new_zeros(n, self.ego_motion_filter.gru_hidden)
        elif first is None:
            ego = self.ego_motion_filter.step(cast(torch.Tensor, state.embedding), emb, state.ego)
            pose6, ego_state = ego["pose6"], ego["state"]
        else:  # not all_first: state.embedding is set
            prev = torch.where(first.view(-1, 1, 1, 1), emb, cast(torch.Tensor, state.embedding))
            ego_in = None if state.ego is None else _zero_rows(state.ego, first)
            ego = self.ego_motion_filter.step(prev, emb, ego_in)
            pose6 = _zero_rows(ego["pose6"], first)
            ego_state = _zero_rows(ego["state"], first)
        return self._step_outputs(geo, pose6, ego_state)

    def step_masked(
        self, x: torch.Tensor, state: PipelineState, first: torch.Tensor, upsample_seg: bool = True
    ) -> dict:
        """`step` with a complete `state` and a `first` (N,) bool mask, without data-dependent branches.

        Streams marked in `first` ignore their incoming state and get zero ego-motion, exactly as
        in `step`; a zero state with every stream marked is a fresh start. One static graph covers
        every case, which is what an exported (ONNX) step needs.
        """
        if state.geometry is None or state.ego is None or state.embedding is None:
            raise ValueError("step_masked needs a complete PipelineState (geometry, ego and embedding all set)")
        geo = self.geometry_filter.step(x, _zero_rows(state.geometry, first), upsample_seg)
        emb = geo["embedding"]
        prev = torch.where(first.view(-1, 1, 1, 1), emb, state.embedding)
        ego = self.ego_motion_filter.step(prev, emb, _zero_rows(state.ego, first))
        return self._step_outputs(geo, _zero_rows(ego["pose6"], first), _zero_rows(ego["state"], first))

    def _step_outputs(self, geo: dict, pose6: torch.Tensor, ego_state: torch.Tensor) -> dict:
        features = torch.cat([geo["state"].mean(dim=(2, 3)), ego_state], dim=1)
        out = dict(geo)
        out.update(
            pose6=pose6,
            matrix=pose6_to_matrix(pose6),
            features=features,
            state=PipelineState(geo["state"], ego_state, geo["embedding"]),
        )
        return out
