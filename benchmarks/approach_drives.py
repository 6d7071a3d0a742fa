"""Perception weights on drives that close in on traffic vs drives that keep their distance.

The autopilot keeps a comfortable distance to the road users ahead, so the episode-style drives that
perception is trained and judged on rarely show a vehicle close up while the ego closes in on it; a
learning policy brakes later and sees exactly that before a collision. This records the same number of
episode drives (`collect --drive episode`), approach drives (`collect --drive approach`: the
autopilot brakes late for road users), follow drives (`collect --drive follow`: approach drives behind a
vehicle placed on the route ahead) and crossing drives (`collect --drive crossing`: approach drives towards a
pedestrian who steps out ahead) on a split's towns, cached like the other long drives, and prints
for each weights folder both modes' mIoU, the driving classes' IoU and Vehicles and Pedestrian recall
by true distance on each kind of drive (`perception.training.long_drives`). Use the validation town to
choose between weights; the test town only to report. Where a split's drives meet no road user on their route
(the validation town's, at the default seed), the late-braking approach drives drive exactly as the episode
drives do; `--kinds` leaves kinds out.

    python benchmarks/approach_drives.py                                   # bundled weights, val town
    python benchmarks/approach_drives.py --weights carla_gym/weights/lite runs/perception/weights --json out.json
    python benchmarks/approach_drives.py --kinds episode crossing         # only those kinds of drive
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

from carla_gym.datasets import FROM_FIRST_TICK
from carla_gym.env.perception_source import BUNDLED_WEIGHTS
from carla_gym.training_data import record_drives
from perception.provenance import command_line
from perception.training.long_drives import LongDriveConfig, evaluate_long_drives, long_drive_table
from perception.weights import load_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights", type=Path, nargs="+", default=[BUNDLED_WEIGHTS], help="weights folders (default: bundled)"
    )
    p.add_argument("--split", choices=("train", "val", "test"), default="val", help="towns to drive (default val)")
    p.add_argument("--drives", type=int, default=3, help="drives of each kind per town (default 3)")
    p.add_argument("--frames", type=int, default=300, help="frames per drive (default 300)")
    p.add_argument("--block", type=int, default=100, help="frames per scored block (default 100)")
    p.add_argument("--seed", type=int, default=7, help="recording seed (other than the training data's 0)")
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=FROM_FIRST_TICK,
        default=list(FROM_FIRST_TICK),
        help=f"kinds of drive to record and score (default all: {' '.join(FROM_FIRST_TICK)})",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if args.drives < 1:
        p.error(f"--drives {args.drives}: record at least 1")
    try:
        config = LongDriveConfig(drives=args.drives, frames=args.frames, block=args.block, seed=args.seed)
    except ValueError as e:
        p.error(str(e))
    missing = [str(w) for w in args.weights if not (w / "config.json").is_file()]
    if missing:
        p.error(f"not a weights folder (no config.json): {', '.join(missing)}")

    models = {str(w): load_weights(w).eval() for w in args.weights}
    sizes = {tuple(m.weights_config.get("input_size") or m.config.input_size) for m in models.values()}
    if len(sizes) > 1:
        p.error(f"the weights take different input sizes {sorted(sizes)}; compare weights of one size")
    size = cast(tuple[int, int], sizes.pop())
    clips = {kind: record_drives(config, size, split=args.split, drive=kind) for kind in dict.fromkeys(args.kinds)}
    results: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        results[name] = {}
        for kind, drives in clips.items():
            section = evaluate_long_drives(model, drives, block=args.block, seed=args.seed)
            results[name][kind] = section
            print(f"\nweights {name}, {kind} drives on the {args.split} split")
            print(long_drive_table(section), flush=True)
    if args.json:
        summary = {
            "command": command_line(),
            "split": args.split,
            "drives": args.drives,
            "frames": args.frames,
            "seed": args.seed,
            "weights": results,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
