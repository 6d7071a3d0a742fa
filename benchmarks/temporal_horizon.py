"""Temporal model vs per-frame baseline on clips longer than any training window, stretch by stretch.

The evaluation report scores 20-frame clips; the environment carries the recurrent state through
whole episodes. This records long test-town clips (cached like `train_perception`'s) and prints
mIoU and pixel accuracy of both modes for each `--stretch` frames of the clips, so a state that
drifts past its training horizon shows up as the temporal rows falling behind late in the clips,
and the temporal model's mIoU lead per stretch with a 95% interval from a paired bootstrap over clips.

    python benchmarks/temporal_horizon.py                                   # bundled weights, 6 x 80 frames
    python benchmarks/temporal_horizon.py --weights runs/perception/weights --clips 4 --frames 120
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from carla_gym import collect
from perception.data import ClipStore
from perception.metrics import confusion_matrix, miou_and_accuracy, paired_bootstrap
from perception.training.evaluation import MODES, load_clip, predict_clip
from perception.weights import load_weights

BUNDLED = Path(__file__).resolve().parents[1] / "carla_gym" / "weights" / "lite"


def record_long_clips(clips: int, frames: int, size: tuple[int, int], seed: int) -> Path:
    """Test-town clips of `frames` frames (recorded once, then reused from the cache)."""
    root = collect.default_root() / f"horizon-{size[0]}x{size[1]}-{frames}f-{clips}clips-seed{seed}"
    collect.main(["--split", "test", "--clips", str(clips), "--frames", str(frames), "--size", f"{size[0]}x{size[1]}",
                  "--out", str(root), "--seed", str(seed)])
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=BUNDLED)
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--stretch", type=int, default=20, help="frames per scored stretch")
    p.add_argument("--seed", type=int, default=7, help="recording seed (other than the training data's 0)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()

    model = load_weights(args.weights).eval()
    root = record_long_clips(args.clips, args.frames, tuple(model.config.input_size), args.seed)
    clips = ClipStore(root).clips(split="test")
    starts = list(range(0, args.frames, args.stretch))
    confusions: dict[tuple[str, int], list[np.ndarray]] = {(m, s): [] for m in MODES for s in starts}  # per clip
    for clip in clips:
        item = load_clip(clip)
        for mode in MODES:
            labels = predict_clip(model, item["rgb"].float() / 255.0, mode, torch.device("cpu"))["labels"]
            for s in starts:
                confusions[(mode, s)].append(confusion_matrix(labels[s:s + args.stretch], item["semantic"][s:s + args.stretch],
                                                              model.num_classes))
    results: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in MODES}
    for (mode, s), cms in confusions.items():
        miou, accuracy = miou_and_accuracy(np.sum(cms, axis=0))
        results[mode][f"{s}-{s + args.stretch}"] = {"miou": float(miou), "pixel_accuracy": float(accuracy)}
    results["temporal_vs_per_frame"] = {f"{s}-{s + args.stretch}": paired_bootstrap(
        np.stack(confusions[("per_frame", s)]), np.stack(confusions[("temporal", s)])) for s in starts}
    print(f"{len(clips)} test clips of {args.frames} frames, weights {args.weights}")
    print(f"{'frames':<10}" + "".join(f"{m + ' mIoU':>18}{m + ' acc':>17}" for m in MODES) + "   temporal lead (95% interval)")
    for s in starts:
        key = f"{s}-{s + args.stretch}"
        lead = results["temporal_vs_per_frame"][key]
        print(f"{key:<10}" + "".join(f"{results[m][key]['miou']:>18.3f}{results[m][key]['pixel_accuracy']:>17.3f}" for m in MODES)
              + f"   {lead['miou']:+.3f} [{lead['miou_ci95'][0]:+.3f}, {lead['miou_ci95'][1]:+.3f}]")
    if args.json:
        args.json.write_text(json.dumps({"weights": str(args.weights), "clips": len(clips), "results": results}, indent=2))


if __name__ == "__main__":
    main()
