"""One class's IoU broken down by true distance and by recording: which objects decide a dataset figure.

A class that covers a fraction of a percent of the pixels (Vehicles, Pedestrian) gets its dataset IoU
from a handful of objects, so two datasets of one town can disagree widely: one where the ego queues
close behind vehicles, one that sees them far ahead. This scores the weights as the env runs them
(temporal mode, the recurrent state carried through each recording) and splits the class's true
positives, false positives and misses by the true depth at each pixel, and by recording, with what the
class's false positives truly are.

    python benchmarks/class_breakdown.py --data ~/.cache/carla_gym/clips/FOLDER --drives ~/.cache/carla_gym/drives/FOLDER
"""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from carla_gym.env.perception_source import BUNDLED_WEIGHTS
from perception.conventions import CLASS_NAMES
from perception.data import Clip, ClipFormatError, ClipStore
from perception.metrics.segmentation import recall_by_distance_counts
from perception.models.preprocess import normalize
from perception.provenance import command_line
from perception.training.long_drives import band_label, read_chunks
from perception.weights import WeightsError, load_weights, weights_record

EDGES_M = (0.0, 10.0, 20.0, 40.0, 80.0, float("inf"))


def band_counts(
    pred: np.ndarray, label: np.ndarray, depth: np.ndarray, cls: int, edges_m: tuple[float, ...]
) -> np.ndarray:
    """True positives, false positives and misses of class `cls` (rows) per band of true depth (columns; band b holds
    `edges_m[b] <= depth < edges_m[b + 1]`), from the report's recall counts: a pixel predicted as the class is
    counted where it truly is."""
    (hits,), (labelled,) = recall_by_distance_counts(pred, label, depth, [cls], edges_m)
    _, (predicted,) = recall_by_distance_counts(label, pred, depth, [cls], edges_m)
    return np.stack([hits, predicted - hits, labelled - hits])


def scores(counts: np.ndarray) -> dict:
    """IoU, precision, recall and labelled pixels from one column of `band_counts` (tp, fp, fn); None where undefined."""
    tp, fp, fn = (int(x) for x in counts)

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "pixels": tp + fn,
    }


def shares(counts: np.ndarray, top: int = 3) -> dict[str, float]:
    """The `top` classes of a per-class pixel count, each with its share of the total (the largest first)."""
    total = int(counts.sum())
    return {
        CLASS_NAMES[k]: round(int(counts[k]) / total, 3) for k in np.argsort(-counts, kind="stable")[:top] if counts[k]
    }


@torch.no_grad()
def recording_breakdown(model: torch.nn.Module, clip: Clip, cls: int, edges_m: tuple[float, ...]) -> dict:
    """Band counts of one recording (state carried through it), what its false positives truly are (`false_as`) and
    what its missed pixels were predicted as (`missed_as`), per class, and the median true depth of its labelled pixels
    (None: none)."""
    state, counts = None, np.zeros((3, len(edges_m) - 1), np.int64)
    false_as, missed_as = np.zeros((2, len(CLASS_NAMES)), np.int64)
    depths = []
    for chunk in read_chunks(clip):
        out = model(normalize(chunk["rgb"])[None], state)
        state = out["state"]
        pred, label, depth = out["seg_logits"][0].argmax(1).numpy(), chunk["semantic"], chunk["depth"]
        counts += band_counts(pred, label, depth, cls, edges_m)
        false_as += np.bincount(label[(pred == cls) & (label != cls)], minlength=len(CLASS_NAMES))
        missed_as += np.bincount(pred[(pred != cls) & (label == cls)], minlength=len(CLASS_NAMES))
        depths.append(depth[label == cls])
    labelled = np.concatenate(depths)
    return {
        "counts": counts,
        "false_as": false_as,
        "missed_as": missed_as,
        "median_depth": float(np.median(labelled)) if labelled.size else None,
    }


def dataset_breakdown(model: torch.nn.Module, clips: list[Clip], cls: int, edges_m: tuple[float, ...]) -> dict:
    """The class's scores over all recordings, per depth band and per recording, with what its false positives
    truly are and what its misses were predicted as."""
    per = [recording_breakdown(model, clip, cls, edges_m) for clip in clips]
    counts = sum(r["counts"] for r in per)
    names = [band_label(lo, hi) for lo, hi in pairwise(edges_m)]
    return {
        "overall": scores(counts.sum(1)),
        "by_depth_m": {name: scores(counts[:, i]) for i, name in enumerate(names)},
        "false_positives_are": shares(sum(r["false_as"] for r in per), top=5),
        "misses_predicted_as": shares(sum(r["missed_as"] for r in per), top=5),
        "recordings": [
            {
                "recording": f"{clip.meta.town}/{clip.path.name}",
                "pixels": int(r["counts"][0].sum() + r["counts"][2].sum()),
                "true_positives": int(r["counts"][0].sum()),
                "false_positives": int(r["counts"][1].sum()),
                "median_depth_m": r["median_depth"],
                "false_positives_are": shares(r["false_as"]),
                "misses_predicted_as": shares(r["missed_as"]),
            }
            for clip, r in zip(clips, per, strict=True)
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, help="weights folder (default: bundled)")
    p.add_argument("--data", type=Path, required=True, help="recordings folder (e.g. the training cache)")
    p.add_argument("--split", default="test", help="which split of --data and --drives to score (default test)")
    p.add_argument("--drives", type=Path, default=None, help="long drives to score too (optional)")
    p.add_argument("--class", dest="cls", default="Vehicles", choices=CLASS_NAMES, help="class (default Vehicles)")
    p.add_argument(
        "--edges",
        type=float,
        nargs="+",
        default=list(EDGES_M[1:-1]),
        help="inner depth band edges in metres, the bands running from 0 to infinity (default 10 20 40 80)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    edges_m = (0.0, *args.edges, float("inf"))
    if any(b <= a for a, b in pairwise(edges_m)):
        p.error(f"--edges must be positive and increasing, got {' '.join(map(str, args.edges))}")
    torch.set_grad_enabled(False)
    try:
        model = load_weights(args.weights).eval()
        sets = {"clips": ClipStore(args.data.expanduser()).clips(split=args.split)}
        if args.drives is not None:
            sets["drives"] = ClipStore(args.drives.expanduser()).clips(split=args.split)
    except (WeightsError, ClipFormatError, FileNotFoundError) as e:
        p.error(str(e))
    for name, clips in sets.items():
        if not clips:
            p.error(f"{args.drives if name == 'drives' else args.data}: no recordings of the {args.split!r} split")
    cls = CLASS_NAMES.index(args.cls)
    result = {
        "command": command_line(),
        **weights_record(args.weights),
        "class": args.cls,
        **{name: dataset_breakdown(model, clips, cls, edges_m) for name, clips in sets.items()},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
