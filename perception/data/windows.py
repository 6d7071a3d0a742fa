"""A PyTorch Dataset of N-frame windows (and, with N=2, frame pairs) cut from recorded clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from perception.conventions import relative_pose

from .clips import Clip, ClipStore


class ClipWindows(Dataset):
    """Windows of `window` consecutive frames from clips, every `stride` frames (`longest`: from clips of at most
    that many frames only; clips shorter than the window give none).

    Each item is a dict of tensors for T = `window` frames: `rgb` (T, 3, H, W) uint8, `semantic`
    (T, H, W) int64 class ids, `depth` (T, H, W) float32 metres, `pose` (T, 4, 4) camera-to-world,
    `rel_pose` (T, 4, 4) with `rel_pose[t] = inv(pose[t-1]) @ pose[t]` (the ego-motion target;
    identity at t = 0) and `intrinsics` (3, 3). Images stay uint8 so augmentations and models
    choose their own normalisation.
    """

    def __init__(
        self,
        source: str | Path | ClipStore | list[Clip],
        window: int = 6,
        stride: int = 1,
        split: str | None = None,
        towns: list[str] | tuple[str, ...] | None = None,
        longest: int | None = None,
    ) -> None:
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
        if isinstance(source, (str, Path)):
            source = ClipStore(source)
        clips = source.clips(split=split, towns=towns) if isinstance(source, ClipStore) else list(source)
        if longest is not None:
            clips = [c for c in clips if len(c) <= longest]
        if not clips:
            where = f" for split={split!r}" if split else ""
            where += f" towns={list(towns)}" if towns else ""
            where += f" of at most {longest} frames" if longest is not None else ""
            raise ValueError(f"no recorded clips{where} in {getattr(source, 'root', source)!s}")
        self.clips = clips
        self.window = window
        self.index = [(c, s) for c, clip in enumerate(clips) for s in range(0, len(clip) - window + 1, stride)]
        if not self.index:
            raise ValueError(f"every clip is shorter than the window of {window} frames")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip_idx, start = self.index[i]
        clip = self.clips[clip_idx]
        frames = [clip.frame(start + t) for t in range(self.window)]
        poses = np.stack([f["pose"] for f in frames])
        rel = np.empty_like(poses)
        rel[0] = np.eye(4)
        rel[1:] = relative_pose(poses[:-1], poses[1:])
        return {
            "rgb": torch.from_numpy(np.stack([f["rgb"] for f in frames])).permute(0, 3, 1, 2).contiguous(),
            "semantic": torch.from_numpy(np.stack([f["semantic"] for f in frames])).long(),
            "depth": torch.from_numpy(np.stack([f["depth"] for f in frames])),
            "pose": torch.from_numpy(poses).float(),
            "rel_pose": torch.from_numpy(rel).float(),
            "intrinsics": torch.from_numpy(clip.meta.intrinsics).float(),
        }
