"""Evaluate perception weights on a folder of recorded clips: the report of `train_perception` (SPEC 8).

    python -m carla_gym.evaluate_perception runs/perception/weights --data ~/clips
    python -m carla_gym.evaluate_perception WEIGHTS --data DIR --split all --out /tmp/eval --no-corruptions

Writes OUT/report.json (per-frame baseline vs temporal model, clean and under each corruption) and
OUT/pictures/ (segmentation GIF, depth PNG and point cloud of the first clip).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception.data import ClipFormatError, ClipStore
from perception.training.loop import resolve_device
from perception.weights import WeightsError, load_weights

from .train_perception import write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m carla_gym.evaluate_perception", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("weights", type=Path, help="weights folder (model.safetensors + config.json)")
    p.add_argument("--data", type=Path, required=True, help="folder of recorded clips (SPEC 5)")
    p.add_argument("--split", default="test", help="train | val | test | all (default test)")
    p.add_argument("--out", type=Path, help="output folder (default: WEIGHTS/../eval-SPLIT)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    p.add_argument("--no-corruptions", action="store_true", help="clean clips only")
    p.add_argument("--max-clips", type=int, default=None, help="evaluate only the first N clips")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.data.expanduser().is_dir():
        parser.exit(2, f"error: data folder {args.data} does not exist\n")
    try:
        model = load_weights(args.weights, device=resolve_device(args.device))
        store = ClipStore(args.data.expanduser())
    except (ClipFormatError, WeightsError, FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    clips = store.clips(split=None if args.split == "all" else args.split)
    if args.max_clips is not None:
        clips = clips[:args.max_clips]
    if not clips:
        parser.exit(2, f"error: no clips of split {args.split!r} in {args.data}\n")
    out = args.out or args.weights.resolve().parent / f"eval-{args.split}"
    try:
        write_report(model, clips, out, next(model.parameters()).device, seed=args.seed,
                     corruptions=() if args.no_corruptions else None, weights_config=model.weights_config)
    except ClipFormatError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
