"""Training configuration: one `StageConfig` per curriculum stage, per-preset defaults and the smoke profile.

The `lite` defaults are sized for a run of under 2.5 hours on 2 CPU cores at 128x256: named train towns
plus random towns for variety (with the named towns alone the model overfits their look), per-stage
epochs where validation stops improving, and a sequence stage that fine-tunes on whole clips. How each
default was chosen, with the throughput and the measurements behind it, is in the docs' training
guide and experiment log. `full` keeps the original design's epochs (20, 20, 20, 10) and batch sizes
(8, 8, 4, 2).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

STAGE_NAMES: tuple[str, ...] = ("seg", "depth", "ego", "seq")


@dataclass
class StageConfig:
    """One stage: how many epochs, the batch size, the window cut from clips and the loss weights."""

    name: str
    epochs: int
    batch_size: int
    window: int = 1  # frames per training item (1: per-frame stages)
    stride: int = 1  # frames between window starts
    lr: float = 3e-4
    seg_weight: float = 1.0  # CE weight (depth stage keeps a small one so segmentation is not forgotten)
    depth_weight: float = 0.0  # weight of the depth loss (log-depth SILog)
    pose_weight: float = 0.0  # weight of the pose L1 (metres + 10 x radians)
    clutter_p: float = 0.25  # probability that a training window gets occluding clutter (the seed's 0.25)
    bptt: int | None = (
        None  # seq stage: frames per truncated back-propagation chunk of a window (None: the whole window)
    )
    patience: int = 2  # ReduceLROnPlateau epochs without improvement before lr x 0.1
    keep_best: bool = True  # end the stage with its best validation epoch (False: with its last)
    max_batches: int | None = None  # cap on training batches per epoch (smoke profile)
    val_batches: int | None = None  # cap on validation batches per epoch


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data folder and the output folder."""

    preset: str = "lite"
    size: tuple[int, int] = (128, 256)  # training and recording resolution (H, W)
    clips: int = 16  # clips per town when recording
    extra_towns: int = 16  # random towns (embedded seeds) recorded as extra training data: variety for held-out towns
    extra_town_clips: int = 4  # clips per random town
    frames: int = 20  # frames per recorded clip
    stages: list[StageConfig] = field(default_factory=list)
    seed: int = 0
    depth_loss: str = "silog"
    class_weighted: bool = True  # CE weighted by inverse sqrt class frequency (thin classes matter)
    augment: bool = True
    # Mirror frames left to right at random in the per-frame stages (seg, depth): more layouts from the same towns.
    mirror: bool = True
    # Zoom half the seg stage's frames in by a random factor up to this (1: off; `perception.data.zoom_frames`):
    # far and thin objects at more scales. Not in the depth stage: see `loop.StageRun.inputs`.
    zoom: float = 1.5
    workers: int = 0
    eval_corruptions: bool = True
    profile: str = "default"

    def stage(self, name: str) -> StageConfig:
        return next(s for s in self.stages if s.name == name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """How this config differs from `stored` (a run's `to_dict()`, as kept in its checkpoints), one
        'field: stored vs now' line each, for the settings that change results: every field but
        `RESUME_MAY_CHANGE`. A field that one of the two lacks (a setting added or removed since) is not compared."""

        def flat(cfg: dict[str, Any]) -> dict[str, Any]:
            out = {k: v for k, v in cfg.items() if k != "stages" and k not in RESUME_MAY_CHANGE}
            out["stages"] = [s.get("name") for s in cfg.get("stages", [])]
            out.update(
                {f"stages.{s.get('name')}.{k}": v for s in cfg.get("stages", []) for k, v in s.items() if k != "name"}
            )
            return out

        old, now = flat(stored), flat(json.loads(json.dumps(self.to_dict())))  # tuples as JSON lists, like `stored`
        return [f"{k}: {old[k]!r} stored vs {now[k]!r} now" for k in now if k in old and old[k] != now[k]]


# Settings a resumed run may change: they do not change what it computes.
RESUME_MAY_CHANGE: tuple[str, ...] = ("workers",)


# Loss weights of the sequence stage: they put CE, SILog on log-depth and the pose L1 (metres + 10 x radians)
# on a similar scale early in the stage.
SEQ_DEPTH_WEIGHT = 1.0
SEQ_POSE_WEIGHT = 1.0
DEPTH_STAGE_SEG_WEIGHT = 0.1
# lite's sequence stage: whole 20-frame clips as windows at a fine-tuning learning rate. Shorter windows at the
# stages' 3e-4 made the temporal model trail the per-frame one (the experiment log has the runs).
LITE_SEQ_WINDOW = 20
LITE_SEQ_LR = 3e-5


def _stages(epochs: tuple[int, ...], batches: tuple[int, ...], stride: int) -> list[StageConfig]:
    # The seq stage ends with its last epoch: it fine-tunes three tasks at once, so its "best" validation epoch
    # is mostly noise, and stopping early can leave the ego-motion GRU unfinished.
    return [
        StageConfig("seg", epochs[0], batches[0]),
        StageConfig("depth", epochs[1], batches[1], seg_weight=DEPTH_STAGE_SEG_WEIGHT, depth_weight=1.0),
        StageConfig("ego", epochs[2], batches[2], window=6, stride=stride, seg_weight=0.0, pose_weight=1.0),
        StageConfig(
            "seq",
            epochs[3],
            batches[3],
            window=6,
            stride=stride,
            seg_weight=1.0,
            depth_weight=SEQ_DEPTH_WEIGHT,
            pose_weight=SEQ_POSE_WEIGHT,
            keep_best=False,
        ),
    ]


def default_config(preset: str = "lite", profile: str = "default") -> TrainConfig:
    """The defaults of a preset (`lite` | `full`), or the smoke profile (every stage for seconds on tiny data)."""
    if profile == "smoke":
        stages = _stages((1, 1, 1, 1), (2, 2, 2, 1), stride=1)
        for s in stages:
            s.max_batches, s.val_batches = 2, 1
        return TrainConfig(
            preset=preset,
            size=(64, 128),
            clips=1,
            frames=7,
            extra_towns=0,
            stages=stages,
            profile="smoke",
            eval_corruptions=True,
        )
    if profile != "default":
        raise ValueError(f"unknown profile {profile!r}; known: default, smoke")
    if preset == "full":
        return TrainConfig(
            preset="full",
            size=(256, 512),
            clips=12,
            frames=20,
            stages=_stages((20, 20, 20, 10), (8, 8, 4, 2), stride=1),
        )
    if preset == "lite":
        stages = _stages((10, 14, 8, 8), (8, 8, 4, 2), stride=5)
        seq = stages[3]
        seq.window, seq.lr = LITE_SEQ_WINDOW, LITE_SEQ_LR
        return TrainConfig(preset="lite", size=(128, 256), clips=16, frames=20, stages=stages)
    raise ValueError(f"unknown preset {preset!r}; known: full, lite")
