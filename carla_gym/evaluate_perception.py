"""Evaluate perception weights on a folder of recorded clips: the report of `train_perception`.

    python -m carla_gym.evaluate_perception runs/perception/weights --data ~/clips
    python -m carla_gym.evaluate_perception WEIGHTS --data DIR --split all --out /tmp/eval --no-corruptions
    python -m carla_gym.evaluate_perception WEIGHTS --data DIR --long-drives 10   # env regime

Writes OUT/report.json (per-frame baseline vs temporal model, clean and under each corruption) and
OUT/pictures/ (segmentation GIF, depth PNG and point cloud of the first clip). OUT defaults to
./perception_eval/<weights name>-<split> under the current folder; it is never inside the installed package
(the bundled weights live there).

--long-drives N adds the environment's regime: N episode-style drives of --drive-frames frames on the test
town (recorded from the first tick at the weights' input size with `carla_gym.collect --drive episode`,
cached, seeds from --drive-seed), both modes scored per --drive-block frames with the temporal lead's 95%
interval over drives, the driving classes on their own and ego-motion error while standing, starting and
moving: the report's `long_drives` section and a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import perception
from perception.data import ClipFormatError, ClipStore
from perception.training.long_drives import LongDriveConfig
from perception.training.loop import resolve_device
from perception.training.report import report_text, write_report
from perception.weights import WeightsError, load_weights

from .cli import HelpFormatter, positive_int
from .config_cli import ConfigFlags
from .datasets import RecordingError
from .training_data import record_drives

NO_LONG_DRIVES = LongDriveConfig(drives=0)
DRIVE_FLAGS = ConfigFlags(
    LongDriveConfig,
    prefix="drive-",
    rename={"drives": "--long-drives"},
    help={
        "drives": "long test-town drives to add (0: none)",
        "frames": "frames per long drive",
        "block": "frames per scored block of the drives",
        "seed": "recording seed of the drives",
        "standing_m": "a frame pair whose camera moved less than this (metres) counts as standing",
        "starting_frames": "moving frame pairs after standing that still count as starting",
    },
    defaults=NO_LONG_DRIVES,
)
PACKAGES = (Path(__file__).resolve().parent, Path(perception.__file__).resolve().parent)  # carla_gym, perception


def default_out(weights: Path, split: str) -> Path:
    """./perception_eval/<name>-<split>, <name> being the weights folder's (its parent's when it is just 'weights')."""
    folder = weights.expanduser().resolve()
    name = folder.parent.name if folder.name == "weights" and folder.parent.name else folder.name
    return Path.cwd() / "perception_eval" / f"{name}-{split}"


def inside_package(path: Path) -> Path | None:
    """The installed package folder (carla_gym or perception) that `path` lies in, or None."""
    resolved = path.expanduser().resolve()
    return next((p for p in PACKAGES if resolved == p or p in resolved.parents), None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m carla_gym.evaluate_perception",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("weights", type=Path, help="weights folder (model.safetensors + config.json)")
    p.add_argument("--data", type=Path, required=True, help="folder of recorded clips")
    p.add_argument("--split", default="test", help="train | val | test | all (default test)")
    p.add_argument("--out", type=Path, help="output folder (default: ./perception_eval/<weights name>-SPLIT)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    p.add_argument("--no-corruptions", action="store_true", help="clean clips only")
    p.add_argument("--max-clips", type=positive_int, default=None, help="evaluate only the first N clips")
    drives = p.add_argument_group("long drives", "the environment's regime on the test town")
    DRIVE_FLAGS.add_to(drives)
    drives.add_argument(
        "--drive-backend", default="embedded", help="backend that records the drives (default embedded)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.data.expanduser().is_dir():
        parser.exit(2, f"error: data folder {args.data} does not exist\n")
    out = args.out.expanduser() if args.out else default_out(args.weights, args.split)
    try:
        drive_config = dataclasses.replace(NO_LONG_DRIVES, **DRIVE_FLAGS.given(args))
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    package = inside_package(out)
    if package is not None:
        parser.exit(
            2,
            f"error: output folder {out} is inside the installed package {package}; "
            "pass --out with a folder of your own\n",
        )
    try:
        model = load_weights(args.weights, device=resolve_device(args.device))
        store = ClipStore(args.data.expanduser())
    except (ClipFormatError, WeightsError, FileNotFoundError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    clips = store.clips(split=None if args.split == "all" else args.split)
    if args.max_clips is not None:
        clips = clips[: args.max_clips]
    if not clips:
        parser.exit(2, f"error: no clips of split {args.split!r} in {args.data}\n")
    drives = None
    if drive_config.drives:
        size = tuple(model.weights_config.get("input_size") or model.config.input_size)
        try:
            drives = record_drives(drive_config, size, args.drive_backend, log=print)
        except (
            ClipFormatError,
            ValueError,
            RecordingError,
        ) as e:  # bad settings, clips in the way, a simulator failure
            parser.exit(2, f"error: {e}\n")
    try:
        report = write_report(
            model,
            clips,
            out,
            next(model.parameters()).device,
            seed=args.seed,
            corruptions=() if args.no_corruptions else None,
            weights_config=model.weights_config,
            long_drives=drives,
            drive_config=drive_config,
        )
    except ClipFormatError as e:
        parser.exit(2, f"error: {e}\n")
    print(report_text(report))
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
