"""Training configuration: one `StageConfig` per curriculum stage, per-preset defaults and the smoke profile.

The `lite` defaults are sized for one run of at most 2.5 hours on 2 CPU cores at 128x256: named train towns
plus random towns for variety (with the named towns alone the model overfits their look), episode-style
recordings (standing and starting, vehicles close up, long drives for the memory), per-frame stages that
sample a fixed number of batches per epoch from all of them, a sequence stage that trains the memory on the
20-frame clips and a drive stage that trains it through whole drives. How each default was chosen, with the
throughput and the measurements behind it, is in the docs' training guide and experiment log. `full` keeps the original
design's four stages, epochs (20, 20, 20, 10) and batch sizes (8, 8, 4, 2), and no drive stage.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from perception.models import PresetConfig, get_preset, parse_overrides

STAGE_NAMES: tuple[str, ...] = ("seg", "depth", "ego", "seq", "drive")
# A stage's learning-rate schedules (`StageConfig.schedule`).
SCHEDULES: tuple[str, ...] = ("plateau", "cosine")
# The stages that run the whole pipeline through time, its recurrent state carried from frame to frame: `seq` on the
# short clips, `drive` through whole long drives.
MEMORY_STAGES: tuple[str, ...] = ("seq", "drive")


def _opt(default: Any, help: str) -> Any:
    """A dataclass field with its command-line help (`carla_gym.config_cli` makes one flag per field)."""
    if isinstance(default, list):
        return field(default_factory=list, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class StageConfig:
    """One stage: how many epochs, the batch size, the window cut from clips and the loss weights."""

    name: str
    epochs: int = field(metadata={"help": "epochs per stage (0: skip its training)"})
    batch_size: int = field(metadata={"help": "batch size per stage"})
    window: int = _opt(1, "frames per training window (1: a per-frame stage)")
    stride: int = _opt(1, "frames between window starts")
    lr: float = _opt(3e-4, "Adam learning rate per stage")
    memory_lr: float = _opt(
        1.0, "the ConvGRU memory's learning rate as a fraction of the stage's --lr (0: the memory stays frozen)"
    )
    seg_weight: float = _opt(1.0, "weight of the segmentation cross-entropy")
    depth_weight: float = _opt(0.0, "weight of the depth loss (on log-depth)")
    pose_weight: float = _opt(
        0.0, "weight of the pose L1 (metres + 10 x radians); 0 also freezes the ego-motion filter"
    )
    clutter_p: float = _opt(0.25, "probability per stage that a training window gets occluding clutter")
    hold_p: float = _opt(
        0.0,
        "probability per stage that a training window's camera stops or starts at a random frame, the frames "
        "after (before) it repeating it: standing pairs before any scene for the ego-motion filter (windows only)",
    )
    bptt: int | None = _opt(
        None,
        "truncated back-propagation through each window in chunks of N frames, the state carried between them "
        "(seq and drive stages; none: the whole window)",
    )
    # The per-frame stages leave the long drives out: their frames are near-duplicates at 20 per second and would
    # double the epoch.
    long_recordings: bool = _opt(True, "read the long episode drives as well as the clips")
    episode_recordings: bool = _opt(
        True, "read the episode-style recordings (driven from the first tick: standing and starting) as well"
    )
    short_window: int | None = _opt(
        None,
        "also train on windows of N frames cut from the recordings shorter than the stage's window, e.g. the "
        "20-frame clips beside whole drives (none: recordings shorter than the window are left out)",
    )
    schedule: str = _opt(
        "plateau",
        "learning-rate schedule per stage: plateau (ReduceLROnPlateau on the validation metric) or cosine (from "
        "lr down to 0 over the stage's batches, a half cosine)",
    )
    patience: int = _opt(2, "ReduceLROnPlateau epochs without improvement before the learning rate drops 10x")
    keep_best: bool = _opt(True, "end the stage with its best validation epoch (off: with its last)")
    interpolate: float = _opt(
        1.0,
        "end the stage this fraction of the way from the weights it started from to those it trained (a "
        "weight-space ensemble of the model before and after fine-tuning; 1: the trained weights)",
    )
    max_batches: int | None = _opt(None, "cap on training batches per epoch (none: all)")
    val_batches: int | None = _opt(None, "cap on validation batches per epoch (none: all)")

    @property
    def memory(self) -> bool:
        """Whether the stage runs the whole pipeline through time (`MEMORY_STAGES`)."""
        return self.name in MEMORY_STAGES

    @property
    def mirrors_and_zooms(self) -> bool:
        """Whether the stage's training windows, single frames or longer, may be mirrored and zoomed (`TrainConfig.
        mirror`, `zoom`): not with a pose loss (a mirrored or zoomed window would need other poses), nor in the memory
        stages."""
        return not self.pose_weight and not self.memory


@dataclass(frozen=True)
class EpisodeData:
    """Episode-style training recordings per named train and val town (`collect --drive episode`): `clips`
    clips of the run's clip length and `drives` long drives of `drive_frames` frames. They hold what the
    environment shows and warm-up clips lack: the first ticks after a reset, standing and starting, and the
    hundreds of frames a recurrent state runs through in an episode."""

    clips: int = _opt(0, "episode-style clips per train and val town")
    drives: int = _opt(0, "episode-style long drives per train and val town")
    drive_frames: int = _opt(
        300, "frames per long training drive, also the drive stage's window unless --window sets it"
    )
    approach: int = _opt(
        0,
        "approach drives per train and val town: long drives whose autopilot brakes late for road users ahead, "
        "so vehicles are seen close up while the ego closes in on them (`collect --drive approach`)",
    )
    follow: int = _opt(
        0,
        "follow drives per train and val town: approach drives behind a vehicle placed on the route ahead, so "
        "every drive closes in on one (`collect --drive follow`)",
    )
    crossing: int = _opt(
        0,
        "crossing drives per train and val town: approach drives towards a pedestrian who steps out to cross "
        "the route ahead (`collect --drive crossing`)",
    )
    close_crossing: int = _opt(
        0,
        "close crossing drives per train and val town: crossing drives whose pedestrian steps out a few metres "
        "ahead of the starting car, so it is seen a metre or two away (`collect --drive close_crossing`)",
    )

    def __post_init__(self) -> None:
        counts = (self.clips, self.drives, self.approach, self.follow, self.crossing, self.close_crossing)
        if min(counts) < 0 or self.drive_frames < 2:
            raise ValueError(
                f"episode data needs clips, drives, approach, follow, crossing and close_crossing >= 0 and "
                f"drive_frames >= 2, got {self}"
            )

    @property
    def long_frames(self) -> int:
        """Frames of the longest episode-style recordings (0 when there are no long drives)."""
        long = self.drives or self.approach or self.follow or self.crossing or self.close_crossing
        return self.drive_frames if long else 0

    @property
    def key(self) -> str:
        """The part of the recording cache's name that these recordings decide ('' when there are none)."""
        return (
            (f"-ep{self.clips}" if self.clips else "")
            + (f"-{self.drives}x{self.drive_frames}drive" if self.drives else "")
            + (f"-{self.approach}x{self.drive_frames}approach" if self.approach else "")
            + (f"-{self.follow}x{self.drive_frames}follow" if self.follow else "")
            + (f"-{self.crossing}x{self.drive_frames}crossing" if self.crossing else "")
            + (f"-{self.close_crossing}x{self.drive_frames}close_crossing" if self.close_crossing else "")
        )


def network_config(preset: str, architecture: Sequence[str] = ()) -> PresetConfig:
    """A preset with `FIELD=VALUE` changes (`TrainConfig.architecture`; `perception.models.parse_overrides`)."""
    return get_preset(preset, **parse_overrides(architecture))


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data folder and the output folder."""

    preset: str = _opt("lite", "model size: lite or full")
    architecture: list[str] = _opt(
        [],
        "changes to the preset's architecture, FIELD=VALUE (fields of perception.models.PresetConfig; a tuple's "
        "elements comma-separated), e.g. seg_skip_names=s8,s4,s2 seg_decoder_widths=64,48,32,24",
    )
    size: tuple[int, int] = _opt(
        (128, 256), "camera image height and width of the recording, also the training input size"
    )
    crop: tuple[int, int] | None = _opt(
        None,
        "train on random boxes of this height and width cut from the recorded frames (same cost per sample as "
        "recording at that size, objects at the recording's pixel scale); validate, report and run on whole frames "
        "(none: train on whole frames)",
    )
    clips: int = _opt(16, "clips per town to record")
    extra_towns: int = _opt(
        16, "random embedded towns recorded as extra training data: variety for held-out towns (0: none)"
    )
    extra_town_clips: int = _opt(4, "clips per random town")
    frames: int = _opt(20, "frames per recorded clip")
    episodes: EpisodeData = _opt(EpisodeData(), "episode-style recordings of the train and val towns")
    stages: list[StageConfig] = _opt([], "the curriculum's stages, in order")
    seed: int = _opt(0, "seed of the recording, initialisation, shuffling and augmentation")
    depth_loss: str = _opt("silog", "depth loss on log-depth: silog or l1")
    class_weighted: bool = _opt(True, "weight the cross-entropy by inverse sqrt class frequency (thin classes matter)")
    augment: bool = _opt(True, "temporal augmentations (noise, lighting drift, clutter) on training windows")
    mirror: bool = _opt(True, "mirror training frames left to right at random in the seg and depth stages")
    # Not in the depth stage: a zoom also changes the camera height that metric depth is learnt against.
    zoom: float = _opt(1.5, "zoom half the training frames of the seg stage in by a random factor up to MAX (1: off)")
    close_pedestrian_weight: float = _opt(
        1.0, "weight the segmentation loss of Pedestrian pixels within close_m metres by this (1: off)"
    )
    close_road_user_depth_weight: float = _opt(
        1.0, "weight the depth loss of Vehicles and Pedestrian pixels within close_m metres by this (1: off)"
    )
    close_m: float = _opt(
        10.0,
        "the distance within which close_pedestrian_weight and close_road_user_depth_weight weight pixels, in metres",
    )
    workers: int = _opt(0, "DataLoader worker processes")
    eval_corruptions: bool = _opt(True, "score the report under noise, lighting drift and clutter as well as clean")
    profile: str = _opt("default", "default, or smoke: every stage for seconds on tiny data")

    def network(self) -> PresetConfig:
        """The network this run trains: the preset with the `architecture` changes, at the run's camera `size` (the
        size its weights stream at, which a `crop` run trains on parts of)."""
        height, width = self.size
        return dataclasses.replace(network_config(self.preset, self.architecture), input_size=(height, width))

    def close_weighting(self) -> tuple[float, float] | None:
        """(weight, metres) of the close-pedestrian loss weighting for `stage_loss`, or None when it is off."""
        return None if self.close_pedestrian_weight == 1.0 else (self.close_pedestrian_weight, self.close_m)

    def close_depth_weighting(self) -> tuple[float, float] | None:
        """(weight, metres) of the close road users' depth loss weighting for `stage_loss`, or None when it is off."""
        weight = self.close_road_user_depth_weight
        return None if weight == 1.0 else (weight, self.close_m)

    def stage(self, name: str) -> StageConfig:
        return next(s for s in self.stages if s.name == name)

    def window_problems(self) -> list[str]:
        """A crop larger than the recorded frames, and stages (with epochs to run) whose window is longer than every
        recording they read (the clips of `frames` frames, and with `long_recordings` the episode drives too), or whose
        `short_window` is not shorter than the window. One line per problem; empty when all fit."""
        drives = self.episodes.long_frames
        problems = []
        if self.crop is not None and (self.crop[0] > self.size[0] or self.crop[1] > self.size[1]):
            problems.append(
                f"crop {self.crop[0]}x{self.crop[1]} is larger than the recorded frames ({self.size[0]}x{self.size[1]})"
            )
        for s in self.stages:
            longest = max(self.frames, drives) if s.long_recordings else self.frames
            if s.epochs and s.window > longest:
                problems.append(
                    f"stage {s.name!r}: its {s.window}-frame window is longer than its recordings ({longest} frames)"
                )
            if s.epochs and s.short_window is not None and not 1 <= s.short_window < s.window:
                problems.append(
                    f"stage {s.name!r}: its short window ({s.short_window} frames) must be at least 1 and shorter "
                    f"than its window ({s.window} frames)"
                )
        return problems

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """How this config differs from `stored` (a run's `to_dict()`, as kept in its checkpoints), one
        'field: stored vs now' line each, for the settings that change results: every field but
        `RESUME_MAY_CHANGE`. A field that one of the two lacks (a setting added or removed since, also inside
        a nested config such as `episodes`) is not compared."""

        def flat(cfg: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in cfg.items():
                if k != "stages" and k not in RESUME_MAY_CHANGE:
                    out.update({f"{k}.{n}": x for n, x in v.items()} if isinstance(v, dict) else {k: v})
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
# lite's memory stages fine-tune at a tenth of the other stages' learning rate, the seq stage on whole 20-frame
# clips and the drive stage through whole long drives in chunks of LITE_DRIVE_BPTT frames (the experiment log has
# the runs behind these).
LITE_SEQ_LR = 3e-5
LITE_DRIVE_BPTT = 20
# lite's drive stage ends halfway between the weights it starts from and those it trains: the drives keep most of
# its gain, and the short clips lose none of the earlier stages' (chosen on the validation town; experiment log).
LITE_DRIVE_INTERPOLATE = 0.5
# lite's episode-style recordings per named train and val town: short clips with standing and starting for the
# ego and seq stages, and long drives (plain, approach and follow drives) for every stage but seq. The follow drives
# close in on a vehicle ahead, a view the others rarely hold (experiment log).
LITE_EPISODE_CLIPS = 4
LITE_DRIVES = 2
LITE_APPROACH = 2
LITE_FOLLOW = 2
LITE_DRIVE_FRAMES = 300
# lite's per-frame stages sample this many batches per epoch from all their recordings: the long drives' frames are
# near-duplicates at 20 per second, so a cap keeps an epoch at the clips' cost while the drives add what the clips
# lack (standing, starting, vehicles close ahead).
LITE_SEG_BATCHES = 600
LITE_DEPTH_BATCHES = 460
# lite's stages that train the ego-motion filter (ego, seq) stop or start the camera in this share of their windows,
# so it sees standing and starting pairs before any scene (experiment log).
LITE_HOLD = 0.25
# lite's per-frame segmentation stage starts at a higher learning rate, and it and the ego stage decay theirs on a half
# cosine rather than on plateaus (chosen on the validation town; experiment log).
LITE_SEG_LR = 1e-3


def _stages(epochs: tuple[int, ...], batches: tuple[int, ...], stride: int) -> list[StageConfig]:
    # The memory stages end with their last epoch: they fine-tune several tasks at once, so their "best" validation
    # epoch is mostly noise, and stopping early can leave the ego-motion GRU unfinished. The drive stage is set up
    # by `drive_stages` (until then it is a 6-frame memory stage like seq).
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
        StageConfig(
            "drive",
            epochs[4],
            batches[3],
            window=6,
            stride=stride,
            depth_weight=SEQ_DEPTH_WEIGHT,
            pose_weight=SEQ_POSE_WEIGHT,
            keep_best=False,
        ),
    ]


def drive_stages(stages: list[StageConfig], drive_frames: int, bptt: int) -> list[StageConfig]:
    """`stages` made to use episode-style recordings. Every stage reads them (the per-frame stages' `max_batches`
    decides how much of them an epoch samples) but the seq stage, which trains the memory on the 20-frame clips
    (episode clips included); the drive stage then trains it through whole drives (one window per drive, truncated
    back-propagation in chunks of `bptt` frames, the state carried from chunk to chunk) without the pose loss, so the
    ego-motion filter keeps what the earlier stages taught it (long windows with the pose loss degrade it)."""
    seq = next(s for s in stages if s.name == "seq")
    seq.long_recordings = False
    drive = next(s for s in stages if s.name == "drive")
    drive.window, drive.stride, drive.bptt, drive.pose_weight = drive_frames, drive_frames, bptt, 0.0
    return stages


def default_config(preset: str = "lite", profile: str = "default") -> TrainConfig:
    """The defaults of a preset (`lite` | `full`), or the smoke profile (every stage for seconds on tiny data)."""
    if profile == "smoke":
        stages = _stages((1, 1, 1, 1, 1), (2, 2, 2, 1), stride=1)
        for s in stages:
            s.max_batches, s.val_batches = 2, 1
        stages[2].hold_p = stages[3].hold_p = LITE_HOLD
        stages[4].interpolate = LITE_DRIVE_INTERPOLATE
        episodes = EpisodeData(clips=1, drives=1, drive_frames=10)
        return TrainConfig(
            preset=preset,
            size=(64, 128),
            clips=1,
            frames=7,
            extra_towns=0,
            episodes=episodes,
            stages=drive_stages(stages, episodes.drive_frames, bptt=5),
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
            stages=_stages((20, 20, 20, 10, 0), (8, 8, 4, 2), stride=1),
        )
    if preset == "lite":
        frames = 20
        stages = _stages((7, 11, 4, 4, 2), (8, 8, 4, 2), stride=5)
        seg, depth, ego, seq, drive = stages
        seg.max_batches, depth.max_batches = LITE_SEG_BATCHES, LITE_DEPTH_BATCHES
        seg.lr, seg.schedule, ego.schedule = LITE_SEG_LR, "cosine", "cosine"
        seq.window, seq.lr = frames, LITE_SEQ_LR
        ego.hold_p = seq.hold_p = LITE_HOLD
        drive.lr, drive.interpolate = LITE_SEQ_LR, LITE_DRIVE_INTERPOLATE
        episodes = EpisodeData(
            clips=LITE_EPISODE_CLIPS,
            drives=LITE_DRIVES,
            approach=LITE_APPROACH,
            follow=LITE_FOLLOW,
            drive_frames=LITE_DRIVE_FRAMES,
        )
        stages = drive_stages(stages, episodes.drive_frames, bptt=LITE_DRIVE_BPTT)
        return TrainConfig(preset="lite", size=(128, 256), clips=16, frames=frames, episodes=episodes, stages=stages)
    raise ValueError(f"unknown preset {preset!r}; known: full, lite")
