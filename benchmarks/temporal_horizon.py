"""Temporal model vs per-frame baseline on long drives in the environment's regime, block by block.

The evaluation report scores 20-frame clips recorded while moving; the environment carries the recurrent
state through whole episodes of up to 1000 steps, from the first tick, standing at red lights and behind
vehicles and starting again. This records such drives on the test town (`collect --drive episode`,
cached like `evaluate_perception --long-drives`) and prints, per `--block` frames, both modes' mIoU and
the temporal model's lead with a 95% interval from a paired bootstrap over drives, the driving classes'
IoU and the ego-motion error while standing, starting and moving (`perception.training.long_drives`).

    python benchmarks/temporal_horizon.py                                   # bundled weights, 10 x 1000 frames
    python benchmarks/temporal_horizon.py --weights runs/perception/weights --drives 5 --frames 600
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from carla_gym.config_cli import ConfigFlags
from carla_gym.env.perception_source import BUNDLED_WEIGHTS
from carla_gym.training_data import record_drives
from perception.provenance import command_line
from perception.training.long_drives import (
    LongDriveConfig,
    evaluate_long_drives,
    long_drive_table,
)
from perception.weights import load_weights, weights_record

FLAGS = ConfigFlags(LongDriveConfig, defaults=LongDriveConfig())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS)
    FLAGS.add_to(p)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    try:
        config = LongDriveConfig(**FLAGS.given(args))
    except ValueError as err:
        p.error(str(err))
    if not config.drives:
        p.error("--drives must be at least 1")

    model = load_weights(args.weights).eval()
    size = tuple(model.weights_config.get("input_size") or model.config.input_size)
    drives = record_drives(config, size, log=print)
    section = evaluate_long_drives(
        model,
        drives,
        block=config.block,
        seed=config.seed,
        standing_m=config.standing_m,
        starting_frames=config.starting_frames,
    )
    print(f"weights {args.weights}")
    print(long_drive_table(section))
    if args.json:
        command = command_line()
        result = {"command": command, **weights_record(args.weights), "long_drives": section}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
