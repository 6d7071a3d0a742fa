"""The evaluation report: per-frame baseline vs temporal model, clean and under each corruption.

The baseline is the same weights with the recurrent state reset every frame (and the ego-motion GRU
reset every pair); the temporal model carries its state through the clip. Corruptions are drawn per
clip from a fixed seed, identical for both models. Because both modes see the same clips, the report
also gives the temporal model's lead in mIoU and pixel accuracy per condition with a 95% interval from
a paired bootstrap over clips (`perception.metrics.paired_bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from perception.conventions import CLASS_NAMES
from perception.data import CORRUPTIONS, Clip, ClipWindows, corrupt
from perception.metrics import (
    DepthMetrics,
    EgoMotionMetrics,
    SegmentationMetrics,
    TemporalConsistency,
    paired_bootstrap,
)
from perception.models import PerceptionPipeline, PipelineState, normalize

MODES = ("per_frame", "temporal")
CHUNK = 10  # frames per forward pass; the temporal model carries its state across chunks


def load_clip(clip: Clip) -> dict[str, torch.Tensor]:
    """A whole clip as one window (T = its length)."""
    return ClipWindows([clip], window=len(clip))[0]


@torch.no_grad()
def predict_chunks(
    model: PerceptionPipeline, chunks: Iterable[torch.Tensor], mode: str, device: torch.device
) -> Iterator[dict[str, torch.Tensor]]:
    """Predictions of consecutive chunks of one clip, chunk by chunk, so a long drive never sits in memory whole.

    Each chunk is frames (t, 3, H, W) in [0, 1]; each result holds labels (t, H, W), depth (t, H, W) metres
    and pose6 of the frame pairs that end in the chunk (t - 1 for the first chunk, t after it). The temporal
    mode carries its recurrent state from chunk to chunk; the per-frame mode resets it every frame (and the
    ego-motion GRU every pair), carrying only the previous frame's embedding into the next chunk's first pair.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    state: PipelineState | None = None
    previous: torch.Tensor | None = None  # per-frame: embedding of the chunk before's last frame
    for chunk in chunks:
        x = normalize(chunk).to(device)
        if mode == "temporal":
            out = model(x[None], state)
            pose6 = out["pose6"][0] if state is not None else out["pose6"][0, 1:]  # the first frame has no pair
            state = out["state"]
            yield {
                "labels": out["seg_logits"][0].argmax(1).cpu(),
                "depth": out["depth"][0, :, 0].cpu(),
                "pose6": pose6.cpu(),
            }
        else:
            out = model.geometry_filter(x[:, None])  # every frame its own window: state reset
            e = out["embeddings"][:, 0]
            if previous is not None:
                e = torch.cat([previous, e])
            pose6 = model.ego_motion_filter.step(e[:-1], e[1:], None)["pose6"] if e.shape[0] > 1 else e.new_zeros(0, 6)
            previous = e[-1:]
            yield {
                "labels": out["seg_logits"][:, 0].argmax(1).cpu(),
                "depth": out["depth"][:, 0, 0].cpu(),
                "pose6": pose6.cpu(),
            }


def predict_clip(
    model: PerceptionPipeline, frames: torch.Tensor, mode: str, device: torch.device
) -> dict[str, torch.Tensor]:
    """Frames (T, 3, H, W) in [0, 1] -> labels (T, H, W), depth (T, H, W) metres and pose6 (T-1, 6) of pairs (t-1, t)."""
    parts = list(predict_chunks(model, frames.split(CHUNK), mode, device))
    return {k: torch.cat([p[k] for p in parts]) for k in ("labels", "depth", "pose6")}


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, NumPy -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


class _Scores:
    """All metrics of one (condition, mode)."""

    def __init__(self, num_classes: int) -> None:
        self.seg = SegmentationMetrics(num_classes)
        self.depth = DepthMetrics()
        self.ego = EgoMotionMetrics()
        self.tc = TemporalConsistency(num_classes)
        self.clip_confusions: list[np.ndarray] = []  # one per clip, for the paired bootstrap

    def update(self, pred: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> None:
        """Add one clip's predictions."""
        sem, depth, rel = item["semantic"], item["depth"], item["rel_pose"]
        self.clip_confusions.append(self.seg.update(pred["labels"], sem))
        self.depth.update(pred["depth"], depth)
        if sem.shape[0] > 1:
            self.ego.update_clip(pred["pose6"], rel[1:])
            self.tc.update(
                pred["labels"][:-1],
                pred["labels"][1:],
                sem[:-1],
                sem[1:],
                depth[1:],
                rel[1:],
                item["intrinsics"],
                depth[:-1],
            )

    def compute(self, class_names: list[str]) -> dict[str, Any]:
        seg = self.seg.compute()
        cm, present = seg["confusion"].astype(np.float64), np.flatnonzero(seg["present"])
        with np.errstate(divide="ignore", invalid="ignore"):
            recall, precision = np.diag(cm) / cm.sum(1), np.diag(cm) / cm.sum(0)  # NaN: never predicted
        return {
            "pixel_accuracy": seg["pixel_accuracy"],
            "miou": seg["miou"],
            "iou": {class_names[c]: float(seg["iou"][c]) for c in present},
            "recall": {class_names[c]: float(recall[c]) for c in present},
            "precision": {class_names[c]: float(precision[c]) for c in present},
            "pixel_share": {class_names[c]: float(cm[c].sum() / cm.sum()) for c in present},
            "depth": self.depth.compute(),
            "ego_motion": self.ego.compute(),
            "temporal": self.tc.compute(),
        }


def evaluate(
    model: PerceptionPipeline,
    clips: list[Clip],
    *,
    device: str | torch.device = "cpu",
    corruptions: tuple[str, ...] = CORRUPTIONS,
    seed: int = 0,
    on_clip: Callable[[int, dict[str, torch.Tensor], dict[str, dict]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Metrics of both modes on `clips`, clean and under each corruption.

    Returns {"results": {condition: {mode: metrics}}, "temporal_vs_per_frame": {condition: lead}}, the
    lead being `paired_bootstrap`'s temporal minus per-frame mIoU and pixel accuracy with 95% intervals.
    `on_clip(index, item, predictions)` sees each clean clip's predictions (pictures use it).
    """
    device = torch.device(device)
    model.eval()
    names = [str(n) for n in (CLASS_NAMES if model.num_classes == len(CLASS_NAMES) else range(model.num_classes))]
    conditions = ("clean", *corruptions)
    scores = {c: {m: _Scores(model.num_classes) for m in MODES} for c in conditions}
    for i, clip in enumerate(clips):
        item = load_clip(clip)
        frames = item["rgb"].float() / 255.0
        for c in conditions:
            x = frames if c == "clean" else corrupt(frames, c, torch.Generator().manual_seed(seed * 1_000_003 + i))
            preds = {m: predict_clip(model, x, m, device) for m in MODES}
            for m in MODES:
                scores[c][m].update(preds[m], item)
            if c == "clean" and on_clip is not None:
                on_clip(i, item, preds)
        if progress is not None:
            progress(f"evaluated clip {i + 1}/{len(clips)}: {clip.path}")
    results = {c: {m: scores[c][m].compute(names) for m in MODES} for c in conditions}
    lead = {
        c: paired_bootstrap(
            np.stack(scores[c]["per_frame"].clip_confusions), np.stack(scores[c]["temporal"].clip_confusions), seed=seed
        )
        for c in conditions
    }
    return _clean({"results": results, "temporal_vs_per_frame": lead})


def summary_table(results: dict[str, Any], lead: dict[str, Any] | None = None) -> str:
    """A short text table: mIoU, AbsRel, TC, flicker per condition and mode; with `lead` (evaluate's
    "temporal_vs_per_frame"), the temporal model's mIoU lead and its 95% interval per condition."""
    lines = [
        f"{'condition':<16}{'mode':<11}{'mIoU':>7}{'pixacc':>8}{'AbsRel':>8}{'TC':>7}{'ceil':>7}{'flicker':>9}{'t_err':>8}{'r_err':>8}"
    ]

    def f(v: float | None, p: int = 3) -> str:
        return "   n/a" if v is None else f"{v:.{p}f}"

    for c, modes in results.items():
        for m, r in modes.items():
            lines.append(
                f"{c:<16}{m:<11}{f(r['miou']):>7}{f(r['pixel_accuracy']):>8}{f(r['depth']['abs_rel']):>8}"
                f"{f(r['temporal']['tc']):>7}{f(r['temporal']['tc_ceiling']):>7}{f(r['temporal']['flicker'], 4):>9}"
                f"{f(r['ego_motion']['translation_error_m']):>8}{f(r['ego_motion']['rotation_error_deg']):>8}"
            )
    if lead:
        lines.append(f"temporal minus per-frame mIoU, 95% interval over {next(iter(lead.values()))['clips']} clips:")
        lines += [
            f"{c:<16}{d['miou']:+.3f}  [{d['miou_ci95'][0]:+.3f}, {d['miou_ci95'][1]:+.3f}]" for c, d in lead.items()
        ]
    return "\n".join(lines)
