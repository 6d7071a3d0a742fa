"""Evaluation in the environment's regime: long drives, the recurrent state carried through each.

The clip tables of `evaluation` score short clips recorded while moving. The environment instead
carries the state through whole episodes (hundreds of steps, standing at red lights and behind
vehicles, starting and turning). This scores both modes (`evaluation.MODES`) on long drives, read
and predicted chunk by chunk so a drive never sits in memory whole:

- per block of `block` frames: mIoU, pixel accuracy and the mIoU of the driving classes for each
  mode from the block's confusion matrix over all drives, and the temporal model's mIoU lead with a
  95% interval from a paired bootstrap over drives (`perception.metrics.paired_bootstrap`);
- overall: the same over whole drives;
- the driving classes (`DRIVING_CLASSES`) IoU on their own, per mode;
- the road users' (`DISTANCE_CLASSES`) recall per band of true distance (`DISTANCE_BANDS_M`), per mode:
  whether a vehicle is seen when it is close, where a miss becomes a collision; and their precision per band
  (of the pixels predicted as the class, by the surface's true distance, the share that are it): a road user
  painted on the empty road just ahead, where a false one holds the car; and their depth AbsRel per band (on
  their true pixels): whether a road user close ahead is placed where it stands or at the road's depth behind it;
- ego-motion error per motion state of the frame pair (`motion_states`: standing, starting, moving),
  per mode, beside the median predicted and true motion per step, and per drive (its pairs in each state and
  their summed temporal error: whether a state's misses are spread over the drives or sit in a few).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from perception.conventions import CLASS_NAMES
from perception.data import Clip
from perception.metrics import (
    abs_rel_by_distance_sums,
    confusion_matrix,
    iou_from_confusion,
    miou_and_accuracy,
    paired_bootstrap,
    pose_errors,
    recall_by_distance_counts,
)
from perception.metrics.ego_motion import as_matrices
from perception.models import PerceptionPipeline
from perception.portable_paths import portable_path

from .evaluation import CHUNK, MODES, _clean, predict_chunks

DRIVING_CLASSES = ("Vehicles", "Pedestrian", "Road", "RoadLine", "TrafficLight", "TrafficSign")
DISTANCE_CLASSES = ("Vehicles", "Pedestrian")
DISTANCE_BANDS_M = (0.0, 5.0, 10.0, 20.0, 40.0, float("inf"))
MOTION_STATES = ("standing", "starting", "moving")
STANDING, STARTING, MOVING = range(3)
# A bootstrap resample of n drives is one drive n times with probability n**-n for each drive: above 2.5%
# for n <= 3, where the "95%" interval's ends are about the worst and best drive's own lead. Below 5 drives the
# table says so; the evaluation's default is 10.
FEW_DRIVES = 5
FEW_DRIVES_NOTE = f"(fewer than {FEW_DRIVES} drives: the interval is about the range of the drives' own leads)"


@dataclass(frozen=True)
class LongDriveConfig:
    """How many long drives to score and how: drive length, block size, recording seed, motion-state thresholds.

    `drives` 0 turns the evaluation off. `standing_m`: a frame pair whose camera moved less than this
    (metres) is standing; `starting_frames`: how many moving pairs after standing still count as starting.
    """

    drives: int = field(default=10, metadata={"help": "long drives on the test town (0: off)"})
    frames: int = field(default=1000, metadata={"help": "frames per long test drive"})
    block: int = field(default=100, metadata={"help": "frames per scored block of the long drives"})
    seed: int = field(default=7, metadata={"help": "recording seed of the long test drives"})
    standing_m: float = field(
        default=0.01, metadata={"help": "a frame pair whose camera moved less than this (metres) counts as standing"}
    )
    starting_frames: int = field(
        default=10, metadata={"help": "moving frame pairs after standing that still count as starting"}
    )

    def __post_init__(self) -> None:
        checks = {
            "drives": self.drives >= 0,
            "frames": self.frames >= 2,
            "block": 1 <= self.block,
            "standing_m": self.standing_m > 0,
            "starting_frames": self.starting_frames >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"long-drive option {bad[0]} has a bad value {getattr(self, bad[0])!r} "
                "(drives >= 0, frames >= 2, block >= 1, standing_m > 0, starting_frames >= 1)"
            )
        if self.block > self.frames:
            raise ValueError(f"long-drive block of {self.block} frames is longer than the {self.frames}-frame drives")


def blocks(num_frames: int, block: int) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of consecutive blocks of `block` frames; the last one may be shorter."""
    if num_frames < 0 or block < 1:
        raise ValueError(f"need num_frames >= 0 and block >= 1, got {num_frames} and {block}")
    return [(s, min(s + block, num_frames)) for s in range(0, num_frames, block)]


def band_label(low: float, high: float) -> str:
    """A distance band's name: "5-10 m", or "40+ m" for the open last one."""
    return f"{low:g}+ m" if high == float("inf") else f"{low:g}-{high:g} m"


def motion_states(
    poses: np.ndarray, standing_m: float = 0.01, starting_frames: int = 10, starts_at_rest: bool = False
) -> np.ndarray:
    """The motion state of each frame pair (t-1, t) of a clip from its (T, 4, 4) camera poses: (T-1,) codes
    STANDING (the camera moved less than `standing_m`), STARTING (moving, and among the first `starting_frames`
    moving pairs after a standing one, or after the clip's start when `starts_at_rest`) or MOVING."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (T, 4, 4) camera-to-world matrices, got shape {poses.shape}")
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    states = np.full(step.shape, MOVING, dtype=np.int64)
    run = 0 if starts_at_rest else starting_frames  # moving pairs since the ego last stood
    for i, d in enumerate(step):
        if d < standing_m:
            states[i], run = STANDING, 0
        else:
            run += 1
            if run <= starting_frames:
                states[i] = STARTING
    return states


def read_chunks(clip: Clip, size: int = CHUNK) -> Iterator[dict[str, Any]]:
    """A clip's frames in chunks: rgb (t, 3, H, W) in [0, 1], semantic (t, H, W) class ids, depth (t, H, W) metres."""
    for start in range(0, len(clip), size):
        frames = [clip.frame(i) for i in range(start, min(start + size, len(clip)))]
        rgb = torch.from_numpy(np.stack([f["rgb"] for f in frames])).permute(0, 3, 1, 2).float() / 255.0
        yield {
            "rgb": rgb,
            "semantic": np.stack([f["semantic"] for f in frames]),
            "depth": np.stack([f["depth"] for f in frames]),
        }


def _split_chunks(chunks: Iterator[dict[str, Any]], truths: deque) -> Iterator[torch.Tensor]:
    """The rgb of each chunk; its labels and depth go to `truths`."""
    for chunk in chunks:
        truths.append((chunk["semantic"], chunk["depth"]))
        yield chunk["rgb"]


def _driving_miou(cm: np.ndarray, ids: list[int]) -> float:
    """Mean IoU over the driving classes with ground-truth pixels (NaN: none)."""
    iou = iou_from_confusion(cm)
    present = [c for c in ids if cm[c].sum() > 0]
    return float(np.mean(iou[present])) if present else float("nan")


def _scores(cm: np.ndarray, ids: list[int]) -> dict[str, float]:
    miou, accuracy = miou_and_accuracy(cm)
    return {"miou": float(miou), "pixel_accuracy": float(accuracy), "driving_miou": _driving_miou(cm, ids)}


def _ego_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Errors of pose6 predictions `pred` (N, 6) against true relative motions `gt` (N, 4, 4)."""
    if not len(gt):
        return {
            "translation_error_m": float("nan"),
            "translation_error_median_m": float("nan"),
            "rotation_error_deg": float("nan"),
            "rotation_error_median_deg": float("nan"),
            "predicted_translation_median_m": float("nan"),
        }
    t, r = pose_errors(pred, gt)
    moved = np.linalg.norm(as_matrices(pred)[:, :3, 3], axis=1)
    return {
        "translation_error_m": float(t.mean()),
        "translation_error_median_m": float(np.median(t)),
        "rotation_error_deg": float(r.mean()),
        "rotation_error_median_deg": float(np.median(r)),
        "predicted_translation_median_m": float(np.median(moved)),
    }


def _score_drive(
    model: PerceptionPipeline, clip: Clip, block: int, device: torch.device, c: int, road_users: list[int]
) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One drive in both modes: per mode, the confusion matrix of each `block`-frame block, the predicted pose6
    of every frame, the `road_users` classes' counts by distance: hits, true and predicted pixels stacked
    (`recall_by_distance_counts`), and their depth AbsRel by distance, summed and counted
    (`abs_rel_by_distance_sums`). Each chunk of frames is read once and fed to both modes."""
    truths: deque[tuple[np.ndarray, np.ndarray]] = deque()  # of the chunks read, until both modes predicted them
    feeds = itertools.tee(_split_chunks(read_chunks(clip), truths), len(MODES))
    drive = {m: [np.zeros((c, c), np.int64) for _ in blocks(len(clip), block)] for m in MODES}
    drive_pose6: dict[str, list[torch.Tensor]] = {m: [] for m in MODES}
    counts = {m: np.zeros((3, len(road_users), len(DISTANCE_BANDS_M) - 1), np.int64) for m in MODES}
    abs_rel = {m: np.zeros((2, len(road_users), len(DISTANCE_BANDS_M) - 1)) for m in MODES}  # sums, counts
    start = 0
    for preds in zip(*(predict_chunks(model, f, m, device) for f, m in zip(feeds, MODES, strict=False)), strict=False):
        sem, depth = truths.popleft()
        for m, p in zip(MODES, preds, strict=False):
            drive_pose6[m].append(p["pose6"])
            hits, labelled = recall_by_distance_counts(p["labels"], sem, depth, road_users, DISTANCE_BANDS_M)
            _, predicted = recall_by_distance_counts(sem, p["labels"], depth, road_users, DISTANCE_BANDS_M)
            counts[m] += np.stack([hits, labelled, predicted])
            abs_rel[m] += np.stack(abs_rel_by_distance_sums(p["depth"], sem, depth, road_users, DISTANCE_BANDS_M))
            for i in range(len(sem)):
                drive[m][(start + i) // block] += confusion_matrix(p["labels"][i], sem[i], c)
        start += len(sem)
    return drive, {m: torch.cat(drive_pose6[m]).numpy() for m in MODES}, counts, abs_rel


@torch.no_grad()
def evaluate_long_drives(
    model: PerceptionPipeline,
    clips: list[Clip],
    *,
    block: int = 100,
    device: str | torch.device = "cpu",
    seed: int = 0,
    standing_m: float = 0.01,
    starting_frames: int = 10,
    starts_at_rest: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both modes on long drives (`clips`), per block of `block` frames and overall (see the module docstring).

    `starts_at_rest`: the drives were recorded from the first tick after a reset (the ego at rest), so their
    first moving pairs are starting ones. `seed` seeds the bootstrap. Returns a JSON-safe dict (NaN -> None).
    """
    if not clips:
        raise ValueError("no long drives to evaluate")
    device = torch.device(device)
    model.eval()
    c = model.num_classes
    names = list(CLASS_NAMES) if c == len(CLASS_NAMES) else [str(i) for i in range(c)]
    ids = [names.index(n) for n in DRIVING_CLASSES if n in names]
    road_users = [names.index(n) for n in DISTANCE_CLASSES if n in names]
    counts = {m: np.zeros((3, len(road_users), len(DISTANCE_BANDS_M) - 1), np.int64) for m in MODES}
    abs_rel = {m: np.zeros((2, len(road_users), len(DISTANCE_BANDS_M) - 1)) for m in MODES}  # sums, counts
    longest = max(len(clip) for clip in clips)
    spans = blocks(longest, block)
    # per block: the per-drive confusions of each mode (drives shorter than the block's start have none)
    confusions: dict[str, list[list[np.ndarray]]] = {m: [[] for _ in spans] for m in MODES}
    totals: dict[str, list[np.ndarray]] = {m: [] for m in MODES}  # per drive
    pose6: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    gt_rel, states = [], []
    for d, clip in enumerate(clips):
        drive, drive_pose6, drive_counts, drive_abs_rel = _score_drive(model, clip, block, device, c, road_users)
        for m in MODES:
            counts[m] += drive_counts[m]
            abs_rel[m] += drive_abs_rel[m]
            for b, cm in enumerate(drive[m]):
                confusions[m][b].append(cm)
            totals[m].append(np.sum(drive[m], axis=0))
            pose6[m].append(drive_pose6[m])
        poses = clip.poses
        gt_rel.append(np.linalg.inv(poses[:-1]) @ poses[1:])
        states.append(motion_states(poses, standing_m, starting_frames, starts_at_rest))
        if progress is not None:
            progress(f"long drive {d + 1}/{len(clips)}: {clip.path}")

    block_rows = []
    for b, (s, e) in enumerate(spans):
        per_drive = {m: np.stack(confusions[m][b]) for m in MODES}
        row: dict[str, Any] = {"frames": [s, e], "drives": len(per_drive[MODES[0]])}
        row.update({m: _scores(per_drive[m].sum(0), ids) for m in MODES})
        row["temporal_vs_per_frame"] = paired_bootstrap(per_drive["per_frame"], per_drive["temporal"], seed=seed)
        block_rows.append(row)
    overall: dict[str, Any] = {m: _scores(np.sum(totals[m], axis=0), ids) for m in MODES}
    overall["temporal_vs_per_frame"] = paired_bootstrap(
        np.stack(totals["per_frame"]), np.stack(totals["temporal"]), seed=seed
    )
    overall["temporal_ahead_blocks"] = sum(r["temporal_vs_per_frame"]["miou"] > 0 for r in block_rows)
    ious = {m: iou_from_confusion(np.sum(totals[m], axis=0)) for m in MODES}
    driving = {m: {names[i]: float(ious[m][i]) for i in ids} for m in MODES}
    driving["temporal_minus_per_frame"] = {names[i]: float(ious["temporal"][i] - ious["per_frame"][i]) for i in ids}
    bands = [band_label(lo, hi) for lo, hi in itertools.pairwise(DISTANCE_BANDS_M)]
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN: no true (predicted) pixel of the class in a band
        by_distance: dict[str, Any] = {
            "bands": bands,
            "pixels": {names[k]: counts[MODES[0]][1, j].tolist() for j, k in enumerate(road_users)},
            **{
                m: {names[k]: (counts[m][0, j] / counts[m][1, j]).tolist() for j, k in enumerate(road_users)}
                for m in MODES
            },
        }
        precision: dict[str, Any] = {
            "bands": bands,
            "predicted_pixels": {
                m: {names[k]: counts[m][2, j].tolist() for j, k in enumerate(road_users)} for m in MODES
            },
            **{
                m: {names[k]: (counts[m][0, j] / counts[m][2, j]).tolist() for j, k in enumerate(road_users)}
                for m in MODES
            },
        }
        depth_by_distance: dict[str, Any] = {
            "bands": bands,
            **{
                m: {names[k]: (abs_rel[m][0, j] / abs_rel[m][1, j]).tolist() for j, k in enumerate(road_users)}
                for m in MODES
            },
        }

    all_states, all_gt = np.concatenate(states), np.concatenate(gt_rel)
    temporal_errors = [pose_errors(p, g)[0] for p, g in zip(pose6["temporal"], gt_rel, strict=True)]
    ego: dict[str, Any] = {}
    for code, state in enumerate(MOTION_STATES):
        sel = all_states == code
        true_moved = np.linalg.norm(all_gt[sel, :3, 3], axis=1)
        ego[state] = {
            "pairs": int(sel.sum()),
            "true_translation_median_m": float(np.median(true_moved)) if sel.any() else float("nan"),
            **{m: _ego_scores(np.concatenate(pose6[m])[sel], all_gt[sel]) for m in MODES},
            # where the errors fall: each drive's pairs in this state and their summed temporal error
            "per_drive": {
                "pairs": [int((st == code).sum()) for st in states],
                "temporal_translation_error_sum_m": [
                    float(e[st == code].sum()) for e, st in zip(temporal_errors, states, strict=True)
                ],
            },
        }
    return _clean(
        {
            "drives": len(clips),
            "frames": [len(clip) for clip in clips],
            "block": block,
            "clips": [portable_path(clip.path) for clip in clips],
            "motion_state_thresholds": {"standing_m": standing_m, "starting_frames": starting_frames},
            "blocks": block_rows,
            "overall": overall,
            "driving_classes": driving,
            "recall_by_distance": by_distance,
            "precision_by_distance": precision,
            "depth_abs_rel_by_distance": depth_by_distance,
            "ego_motion": ego,
        }
    )


def long_drive_table(section: dict[str, Any]) -> str:
    """A short text table of `evaluate_long_drives`' result: per block and overall mIoU of both modes, the
    temporal lead with its interval, driving-class IoU, the road users' recall, precision and depth AbsRel by
    true distance, and ego-motion error by motion state."""

    def f(v: float | None, p: int = 3) -> str:
        return "   n/a" if v is None else f"{v:.{p}f}"

    def lead(d: dict[str, Any]) -> str:
        return f"{d['miou']:+.3f} [{d['miou_ci95'][0]:+.3f}, {d['miou_ci95'][1]:+.3f}]"

    lines = [
        (
            f"long drives: {section['drives']} drive(s) of {max(section['frames'])} frames or fewer, "
            f"blocks of {section['block']}; temporal minus per-frame mIoU, 95% interval over drives"
        ),
        f"{'frames':<12}{'per-frame':>10}{'temporal':>10}{'drv pf':>8}{'drv tmp':>8}   lead",
    ]
    if section["drives"] < FEW_DRIVES:
        lines.insert(1, FEW_DRIVES_NOTE)
    rows = [(f"{r['frames'][0]}-{r['frames'][1]}", r) for r in section["blocks"]] + [("all", section["overall"])]
    for label, r in rows:
        lines.append(
            f"{label:<12}{f(r['per_frame']['miou']):>10}{f(r['temporal']['miou']):>10}"
            f"{f(r['per_frame']['driving_miou']):>8}{f(r['temporal']['driving_miou']):>8}   "
            f"{lead(r['temporal_vs_per_frame'])}"
        )
    ahead = section["overall"]["temporal_ahead_blocks"]
    lines.append(f"temporal ahead in {ahead} of {len(section['blocks'])} blocks")
    classes = section["driving_classes"]
    lines.append(
        "driving-class IoU  "
        + "  ".join(f"{n} {f(classes['per_frame'][n])}/{f(classes['temporal'][n])}" for n in classes["per_frame"])
        + "  (per-frame/temporal)"
    )
    by_distance: dict[str, Any] = section.get("recall_by_distance") or {}  # absent from older reports
    for name in by_distance.get("pixels", {}):
        lines.append(
            f"{name} recall by true distance ({', '.join(by_distance['bands'])}): "
            + "; ".join(f"{m} " + " ".join(f(r, 2) for r in by_distance[m][name]) for m in MODES)
        )
    precision: dict[str, Any] = section.get("precision_by_distance") or {}
    for name in precision.get("per_frame", {}):
        lines.append(
            f"{name} precision by true distance: "
            + "; ".join(f"{m} " + " ".join(f(r, 2) for r in precision[m][name]) for m in MODES)
        )
    depth: dict[str, Any] = section.get("depth_abs_rel_by_distance") or {}
    for name in depth.get("per_frame", {}):
        lines.append(
            f"{name} depth AbsRel by true distance: "
            + "; ".join(f"{m} " + " ".join(f(r, 2) for r in depth[m][name]) for m in MODES)
        )
    lines.append(
        f"{'ego motion':<12}{'pairs':>7}{'true m':>8}{'pred m pf':>11}{'pred m tmp':>11}"
        f"{'t_err pf':>10}{'t_err tmp':>10}{'r_err pf':>10}{'r_err tmp':>10}"
    )
    for state, e in section["ego_motion"].items():
        pf, tp = e["per_frame"], e["temporal"]
        lines.append(
            f"{state:<12}{e['pairs']:>7}{f(e['true_translation_median_m']):>8}"
            f"{f(pf['predicted_translation_median_m']):>11}{f(tp['predicted_translation_median_m']):>11}"
            f"{f(pf['translation_error_m']):>10}{f(tp['translation_error_m']):>10}"
            f"{f(pf['rotation_error_deg']):>10}{f(tp['rotation_error_deg']):>10}"
        )
    return "\n".join(lines)
