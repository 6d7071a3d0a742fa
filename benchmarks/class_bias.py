"""Per-class logit offsets chosen on the validation town: what they buy on the test town.

The segmentation head is trained with class-weighted cross-entropy, which sets how eagerly each class
is predicted once, for the training towns. Adding one offset per class to the logits ("logit
adjustment", Menon et al., ICLR 2021) moves that trade between precision and recall after training;
an offset on the head's last layer is the same as a change of its bias, so weights could carry it at
no cost per frame. This fits the offsets on the validation town's recordings (temporal mode, the
state carried through each recording, as the env runs the model) by coordinate ascent on the dataset
mIoU, then scores the test town's clips and long drives with and without them. The test town only
reports: nothing is chosen on it.

    python benchmarks/class_bias.py --data ~/.cache/carla_gym/clips/FOLDER --drives ~/.cache/carla_gym/drives/FOLDER
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from carla_gym.env.perception_source import BUNDLED_WEIGHTS
from perception.conventions import CLASS_NAMES
from perception.data import Clip, ClipFormatError, ClipStore
from perception.metrics.segmentation import confusion_matrix, iou_from_confusion
from perception.models.preprocess import normalize
from perception.provenance import command_line
from perception.training.long_drives import DRIVING_CLASSES, read_chunks
from perception.weights import WeightsError, load_weights, weights_record


@torch.no_grad()
def recording_logits(model: torch.nn.Module, clip: Clip) -> tuple[torch.Tensor, np.ndarray]:
    """Temporal-mode logits (T, C, H, W) of one recording, the state carried through it, and its labels (T, H, W)."""
    state, logits, labels = None, [], []
    for chunk in read_chunks(clip):
        out = model(normalize(chunk["rgb"])[None], state)
        state = out["state"]
        logits.append(out["seg_logits"][0])
        labels.append(chunk["semantic"])
    return torch.cat(logits), np.concatenate(labels)


def sample(
    clips: list[Clip], model: torch.nn.Module, frame_step: int, pixel_step: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Logits (N, C) and labels (N,) of every `frame_step`-th frame and `pixel_step`-th pixel of each recording."""
    xs, ys = [], []
    for clip in clips:
        logits, labels = recording_logits(model, clip)
        logits = logits[::frame_step, :, ::pixel_step, ::pixel_step].half()  # half the memory
        xs.append(logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]))
        ys.append(labels[::frame_step, ::pixel_step, ::pixel_step].reshape(-1))
    return torch.cat(xs), np.concatenate(ys)


def miou(cm: np.ndarray) -> float:
    """Mean IoU over the classes with ground-truth pixels, as the perception report computes it."""
    return float(np.nanmean(iou_from_confusion(cm)[cm.sum(1) > 0]))


def fit_offsets(logits: torch.Tensor, labels: np.ndarray, grid: np.ndarray, sweeps: int) -> tuple[np.ndarray, list]:
    """Coordinate ascent: each class's offset in turn set to the value of `grid` with the best mIoU, `sweeps` times."""
    c = logits.shape[1]
    offsets = np.zeros(c, dtype=np.float32)
    logits32 = logits.float()

    def score(b: np.ndarray) -> float:
        pred = (logits32 + torch.from_numpy(b)).argmax(1).numpy()
        return miou(confusion_matrix(pred, labels, c))

    best, history = score(offsets), []
    present = [k for k in range(c) if (labels == k).any()]
    for sweep in range(sweeps):
        for k in present:
            for value in grid:
                trial = offsets.copy()
                trial[k] = value
                s = score(trial)
                if s > best + 1e-6:
                    best, offsets = s, trial
        history.append(best)
        print(f"sweep {sweep + 1}: validation mIoU {best:.4f}", flush=True)
    return offsets, history


def scores(model: torch.nn.Module, clips: list[Clip], offsets: np.ndarray) -> dict:
    """Dataset mIoU, the driving classes' IoU and Vehicles' precision and recall, without and with the offsets."""
    c = len(offsets)
    cms = {"without": np.zeros((c, c), np.int64), "with": np.zeros((c, c), np.int64)}
    b = torch.from_numpy(offsets)[None, :, None, None]
    for clip in clips:
        logits, labels = recording_logits(model, clip)
        cms["without"] += confusion_matrix(logits.argmax(1).numpy(), labels, c)
        cms["with"] += confusion_matrix((logits + b).argmax(1).numpy(), labels, c)
    out = {}
    vehicles = CLASS_NAMES.index("Vehicles")
    for name, cm in cms.items():
        iou = iou_from_confusion(cm)
        out[name] = {
            "miou": miou(cm),
            "iou": {n: float(iou[CLASS_NAMES.index(n)]) for n in DRIVING_CLASSES},
            "vehicles_precision": float(cm[vehicles, vehicles] / max(cm[:, vehicles].sum(), 1)),
            "vehicles_recall": float(cm[vehicles, vehicles] / max(cm[vehicles].sum(), 1)),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, help="weights folder (default: bundled)")
    p.add_argument("--data", type=Path, required=True, help="recordings with val and test splits (the training cache)")
    p.add_argument("--drives", type=Path, default=None, help="long test-town drives to score too (optional)")
    p.add_argument("--frame-step", type=int, default=2, help="fit on every N-th validation frame (default 2)")
    p.add_argument("--pixel-step", type=int, default=2, help="and every N-th pixel each way (default 2)")
    p.add_argument("--sweeps", type=int, default=2, help="coordinate-ascent sweeps over the classes (default 2)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if min(args.frame_step, args.pixel_step, args.sweeps) < 1:
        p.error("--frame-step, --pixel-step and --sweeps must be at least 1")
    torch.set_grad_enabled(False)
    try:
        model = load_weights(args.weights).eval()
        store = ClipStore(args.data.expanduser())
    except (WeightsError, ClipFormatError, FileNotFoundError) as e:
        p.error(str(e))
    val, test = store.clips(split="val"), store.clips(split="test")
    if not val or not test:
        p.error(f"{args.data}: needs recordings of both the val and the test split")
    logits, labels = sample(val, model, args.frame_step, args.pixel_step)
    print(f"fitting on {len(labels):,} pixels of {len(val)} validation recordings", flush=True)
    before = miou(confusion_matrix(logits.float().argmax(1).numpy(), labels, logits.shape[1]))
    offsets, history = fit_offsets(logits, labels, np.arange(-2.0, 2.01, 0.25), args.sweeps)
    result = {
        "command": command_line(),
        **weights_record(args.weights),
        "offsets": {CLASS_NAMES[k]: float(v) for k, v in enumerate(offsets) if v},
        "validation_miou_sampled": {"without": before, "after_each_sweep": history},
        "test_clips": scores(model, test, offsets),
    }
    if args.drives is not None:
        result["test_drives"] = scores(model, ClipStore(args.drives.expanduser()).clips(split="test"), offsets)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
