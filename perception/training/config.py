"""Training configuration: one `StageConfig` per curriculum stage, per-preset defaults and the smoke profile.

`lite` defaults, sized for about 2 hours on 2 CPU cores at 128x256. Throughput measured here:
seg ~18 images/s (batch 8), depth ~17 images/s, ego ~86 images/s (frozen encoder under no_grad),
seq ~29 images/s (backbone frozen, so no backward through it, but the decoders run at full size);
evaluation ~3 s per 20-frame test clip (2 modes x 4 conditions).

- data: 6 named train towns x 16 clips + 16 random towns x 4 clips = 160 clips x 20 frames = 3200
  frames; val and test 16 clips each. The random towns (`training_seeds`: none shares a held-out
  town's palette or the test town's layout) are there for variety: with the named towns alone,
  validation mIoU stalled at ~0.32 while the training loss kept falling (towns overfit, SPEC 11).
- seg:   3200 / 18 img/s = 175 s per epoch x 10 epochs = 30 min (with mirroring, validation mIoU rose by
         0.002-0.003 per epoch at epochs 8-10: 0.473, 0.476, 0.478; with zoom too, 0.494, 0.495,
         0.511; longer is untested)
- depth: 3200 / 17 img/s = 190 s per epoch x 14 epochs = 44 min (validation AbsRel still fell at epoch 10)
- ego:   6-frame windows every 5 frames: 160 clips x 3 = 480 windows = 2880 frames / 86 img/s
         = 34 s + ~3 s per epoch x 8 epochs = 5 min
- seq:   each 20-frame clip as one window: 160 windows = 3200 frames, ~110 s per epoch x 8 epochs = 15 min
- recording (~2 min) and the evaluation (~1 min).
Total: about 1 h 45 min (measured for the v6 weights, 2026-11-30: 103 minutes of epochs: seg 35 (zoom included),
depth 46, ego 5, seq 18; some epochs shared the cores with evaluations and tests; 104 minutes to the weights).
Each stage but seq ends with its best validation epoch (`loop.selection_metric`); seq ends with its last (see
`_stages`). Fewer seg epochs than before the random towns were added: each epoch sees twice the frames; without
mirroring, validation mIoU peaked at epoch 8 of 14.

`full` keeps the seed's epochs (20, 20, 20, 10) and batch sizes (8, 8, 4, 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

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
    bptt: int | None = None  # seq stage: frames per truncated back-propagation chunk of a window (None: the whole window)
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
    class_weighted: bool = True  # CE weighted by inverse sqrt class frequency (thin classes matter, SPEC 11)
    augment: bool = True
    # Mirror frames left to right at random in the per-frame stages (seg, depth). One lite seg stage of 10 epochs
    # with it: test-town per-frame mIoU 0.430 against 0.402 without (val 0.478 against 0.470, val loss 0.43 vs 0.48).
    mirror: bool = True
    # Zoom half the seg stage's frames in by a random factor up to this (1: off; `perception.data.zoom_frames`). One lite
    # seg stage of 10 epochs with mirroring and zoom 1.5: test per-frame mIoU 0.453 against 0.430 with mirroring alone
    # (val 0.511 against 0.478, val loss 0.38 against 0.43). Not in the depth stage: see `loop.run_stage`.
    zoom: float = 1.5
    workers: int = 0
    eval_corruptions: bool = True
    profile: str = "default"

    def stage(self, name: str) -> StageConfig:
        return next(s for s in self.stages if s.name == name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Loss weights of the sequence stage: CE is ~1-3 early on, SILog on log-depth ~0.2-0.5, pose L1 ~0.1-0.5
# (metres + 10 x radians); these weights put the three on a similar scale.
SEQ_DEPTH_WEIGHT = 1.0
SEQ_POSE_WEIGHT = 1.0
DEPTH_STAGE_SEG_WEIGHT = 0.1
# lite's sequence stage: whole 20-frame clips as windows at a fine-tuning learning rate. With 6-frame windows
# at 3e-4 the stage lowered validation mIoU (0.47 -> 0.46) and the temporal model trailed the per-frame one
# by 0.016 test mIoU; 12 frames at 3e-5 closed that to 0.006 (two seeds), and 20 frames to level (+0.002
# and 0.000, two seeds), with a quarter of the ego-motion error (v3 weights, test town).
LITE_SEQ_WINDOW = 20
LITE_SEQ_LR = 3e-5


def _stages(epochs: tuple[int, ...], batches: tuple[int, ...], stride: int) -> list[StageConfig]:
    # The seq stage ends with its last epoch: it fine-tunes three tasks at once and its validation mIoU stayed
    # within 0.008 over 8 epochs in three lite runs, so its "best" epoch is noise; picking it stopped one run
    # at epoch 2 of 8 with an unfinished ego-motion GRU: 0.043 m test translation error, 0.017 m with epoch 8.
    return [
        StageConfig("seg", epochs[0], batches[0]),
        StageConfig("depth", epochs[1], batches[1], seg_weight=DEPTH_STAGE_SEG_WEIGHT, depth_weight=1.0),
        StageConfig("ego", epochs[2], batches[2], window=6, stride=stride, seg_weight=0.0, pose_weight=1.0),
        StageConfig("seq", epochs[3], batches[3], window=6, stride=stride, seg_weight=1.0,
                    depth_weight=SEQ_DEPTH_WEIGHT, pose_weight=SEQ_POSE_WEIGHT, keep_best=False),
    ]


def default_config(preset: str = "lite", profile: str = "default") -> TrainConfig:
    """The defaults of a preset (`lite` | `full`), or the smoke profile (every stage for seconds on tiny data)."""
    if profile == "smoke":
        stages = _stages((1, 1, 1, 1), (2, 2, 2, 1), stride=1)
        for s in stages:
            s.max_batches, s.val_batches = 2, 1
        return TrainConfig(preset=preset, size=(64, 128), clips=1, frames=7, extra_towns=0, stages=stages,
                           profile="smoke", eval_corruptions=True)
    if profile != "default":
        raise ValueError(f"unknown profile {profile!r}; known: default, smoke")
    if preset == "full":
        return TrainConfig(preset="full", size=(256, 512), clips=12, frames=20,
                           stages=_stages((20, 20, 20, 10), (8, 8, 4, 2), stride=1))
    if preset == "lite":
        stages = _stages((10, 14, 8, 8), (8, 8, 4, 2), stride=5)
        seq = stages[3]
        seq.window, seq.lr = LITE_SEQ_WINDOW, LITE_SEQ_LR
        return TrainConfig(preset="lite", size=(128, 256), clips=16, frames=20, stages=stages)
    raise ValueError(f"unknown preset {preset!r}; known: full, lite")
