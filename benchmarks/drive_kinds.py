"""Episode drives and approach drives (the autopilot brakes late for road users), recorded once into the cache.

Shared by `approach_drives.py` and `ego_motion_input.py`; not a script of its own.
"""

from __future__ import annotations

from typing import Any, cast

from carla_gym.datasets import RecordingConfig, cache_root, clip_name, record_clips
from perception.data import ClipStore

KINDS = ("episode", "approach")


def record(kind: str, split: str, drives: int, frames: int, size: tuple[int, int], seed: int) -> list[Any]:
    """The first `drives` drives of `kind` on the towns of `split`, recorded (or reused) in the cache."""
    h, w = size
    out = cache_root() / "drives" / f"{kind}-{split}-{h}x{w}-{frames}f-seed{seed}"
    config = RecordingConfig(split=split, drive=kind, clips=drives, frames=frames, size=size, out=out, seed=seed)
    record_clips(config)
    wanted = {clip_name(i, cast(str, config.name)) for i in range(drives)}
    return [c for c in ClipStore(out).clips(split=split) if c.path.name in wanted]
