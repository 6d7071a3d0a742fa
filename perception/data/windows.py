"""A PyTorch Dataset of N-frame windows (and, with N=2, frame pairs) cut from recorded clips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

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


def mixed_windows(
    source: str | Path | ClipStore | list[Clip],
    window: int,
    stride: int,
    short_window: int,
    split: str | None = None,
    longest: int | None = None,
) -> tuple[ConcatDataset, list[int]]:
    """Windows of `window` frames (every `stride`) from the recordings at least that long, and windows of
    `short_window` frames (every `short_window`) from the shorter ones: e.g. whole long drives beside the 20-frame
    clips. `source`: a clip folder or store (of `split`, all splits when None) or a list of clips. Returns the
    dataset and each item's window length, for `EqualLengthBatches`."""
    if isinstance(source, (str, Path)):
        source = ClipStore(source)
    found = source.clips(split=split) if isinstance(source, ClipStore) else source
    clips = [c for c in found if longest is None or len(c) <= longest]
    parts = [
        ClipWindows(group, window=w, stride=s)
        for group, w, s in (
            ([c for c in clips if len(c) >= window], window, stride),
            ([c for c in clips if len(c) < window], short_window, short_window),
        )
        if any(len(c) >= w for c in group)
    ]
    if not parts:
        where = source.root if isinstance(source, ClipStore) else "the given clips"
        raise ValueError(f"no recorded clips of at least {short_window} frames for split={split!r} in {where}")
    return ConcatDataset(parts), [part.window for part in parts for _ in range(len(part))]


class EqualLengthBatches(Sampler[list[int]]):
    """Batches of dataset indices whose windows have the same length (so they stack), shuffled per epoch from
    `seed` (`set_epoch`), the batch order shuffled too; rank `rank` of `world` takes every world-th batch, all
    ranks the same count (the last few batches are dropped when they do not divide evenly)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths, self.batch_size, self.seed, self.rank, self.world = lengths, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = []
        for length in sorted(set(self.lengths)):
            same = [i for i, n in enumerate(self.lengths) if n == length]
            same = [same[j] for j in torch.randperm(len(same), generator=g).tolist()]
            batches += [same[i : i + self.batch_size] for i in range(0, len(same), self.batch_size)]
        order = torch.randperm(len(batches), generator=g).tolist()
        usable = len(batches) - len(batches) % self.world
        return [batches[i] for i in order[:usable]][self.rank :: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
