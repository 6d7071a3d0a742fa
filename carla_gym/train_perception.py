"""Train the perception pipeline through its curriculum of stages and evaluate it on the test town.

    python -m carla_gym.train_perception                          # lite preset, records its data first
    python -m carla_gym.train_perception --profile smoke --out /tmp/smoke
    python -m carla_gym.train_perception --data ~/clips --preset full --stages seq --epochs seq=5
    python -m carla_gym.train_perception --config runs/perception/weights --seed 1 --out runs/seed1  # a run again
    torchrun --nproc_per_node 2 -m carla_gym.train_perception --data ~/clips

Every field of the training, stage, episode and long-drive configs is a flag (`--help` lists them in groups);
per-stage flags take one value per stage (`--epochs 7,11,4,4,2`), stage=value pairs (`--bptt drive=20`) or one value.

Without --data, clips are recorded with `carla_gym.collect` (train, val and test towns of the
backend, plus --extra-towns random embedded towns as training data) into a cache folder named after
the backend, its world version, size, clip length, clip counts and seed, and reused next time. The
train and val towns also get episode-style recordings (`collect --drive episode`: from the first tick,
stopping at red lights and behind vehicles, starting again): --episode-clips short clips and
--train-drives long drives of --train-drive-frames frames per town; these are part of the folder's name.
The per-frame stages read the warm-up clips; the ego stage reads everything; the seq stage trains the
memory on the 20-frame clips and the drive stage through whole long drives.
The report adds long drives on the test town (--eval-drives of --drive-frames frames, scored per
--drive-block frames; `perception.training.long_drives`), cached in the `drives` folder beside the clips.
Outputs in --out: weights/ (model.safetensors + config.json), report.json, pictures/, tb/
(TensorBoard), checkpoints/ (per epoch; --resume continues from the last one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from perception.data import ClipFormatError, ClipStore
from perception.models import build_model
from perception.provenance import command_line
from perception.training import (
    SCHEDULES,
    STAGE_NAMES,
    EpisodeData,
    StageConfig,
    TrainConfig,
    TrainingError,
    default_config,
    earlier_stages,
    train,
)
from perception.training.checkpoint import run_seconds
from perception.training.long_drives import LongDriveConfig
from perception.training.report import report_text, write_report
from perception.weights import save_weights, weights_lineage

from .cli import HelpFormatter, deprecated_alias
from .config_cli import ConfigFlags, PerStageFlags, field_help, from_dict
from .datasets import RecordingError, size_argument
from .training_data import data_description, record, record_drives


def default_long_drives(profile: str) -> LongDriveConfig:
    """The report's long drives on the test town: tiny for the smoke profile, 10 x 300 frames otherwise."""
    if profile == "smoke":
        return LongDriveConfig(drives=1, frames=12, block=6)
    return LongDriveConfig(frames=300)


LITE = default_config("lite")
PRESET_DEFAULT = "the preset's; lite"
TRAIN_FLAGS = ConfigFlags(
    TrainConfig,
    rename={"size": "--camera-size"},
    skip=("preset", "architecture", "profile", "stages", "episodes"),
    metavars={"size": ("H", "W"), "crop": ("H", "W"), "zoom": "MAX"},
    defaults=LITE,
    default_label=PRESET_DEFAULT,
)
EPISODE_FLAGS = ConfigFlags(
    EpisodeData,
    prefix="train-",
    rename={"clips": "--episode-clips"},
    defaults=LITE.episodes,
    default_label=PRESET_DEFAULT,
)
STAGE_FLAGS = PerStageFlags(
    StageConfig,
    STAGE_NAMES,
    rename={"clutter_p": "--clutter", "hold_p": "--hold"},
    skip=("name",),
    single={"window": "the multi-frame stages (ego, seq, drive)", "bptt": "the memory stages (seq, drive)"},
    defaults=LITE.stages,
    default_label=PRESET_DEFAULT,
)
DRIVE_FLAGS = ConfigFlags(
    LongDriveConfig,
    prefix="drive-",
    rename={"drives": "--eval-drives"},
    defaults=default_long_drives("default"),
    default_label="the profile's; default profile",
)
DATA_FIELDS = ("size", "clips", "extra_towns", "extra_town_clips", "frames")
REPORT_FIELDS = ("eval_corruptions",)
# Limits beyond "not negative" (which every number on the command line must be): value -> ok, and why not.
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "zoom": (lambda v: v >= 1.0, "the largest zoom must be at least 1 (1: off)"),
    "close_pedestrian_weight": (lambda v: v > 0.0, "a loss weight must be above 0 (1: off)"),
    "close_road_user_depth_weight": (lambda v: v > 0.0, "a loss weight must be above 0 (1: off)"),
    "size": (lambda v: min(v) >= 1, "an image needs at least 1 pixel each way"),
    "crop": (lambda v: v is None or min(v) >= 1, "a crop needs at least 1 pixel each way"),
    "depth_loss": (lambda v: v in ("silog", "l1"), "known depth losses: silog, l1"),
    "batch_size": (lambda v: v >= 1, "a batch needs at least 1 item"),
    "window": (lambda v: v >= 1, "a window needs at least 1 frame"),
    "stride": (lambda v: v >= 1, "window starts need at least 1 frame between them"),
    "clutter_p": (lambda v: v <= 1.0, "probabilities must be at most 1"),
    "hold_p": (lambda v: v <= 1.0, "probabilities must be at most 1"),
    "schedule": (lambda v: v in SCHEDULES, f"known schedules: {', '.join(SCHEDULES)}"),
    "interpolate": (lambda v: 0.0 < v <= 1.0, "the fraction must be above 0 and at most 1"),
    "bptt": (lambda v: v is None or v >= 2, "a chunk needs at least 2 frames"),
    "max_batches": (lambda v: v is None or v >= 1, "a cap needs at least 1 batch (none: no cap)"),
    "val_batches": (lambda v: v is None or v >= 1, "a cap needs at least 1 batch (none: no cap)"),
}


def value_problem(field: str, value: Any) -> str | None:
    """Why `value` is no good for `field` (a negative number, or outside the field's `CHECKS`), or None."""
    numbers = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, int | float) and not isinstance(v, bool) and v < 0 for v in numbers):
        return "must not be negative"
    ok, why = CHECKS.get(field, (lambda _: True, ""))
    return None if ok(value) else why


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m carla_gym.train_perception",
        usage="%(prog)s [options]",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    data = p.add_argument_group("data", "what to train on; recorded and cached when --data is absent")
    data.add_argument("--data", type=Path, help="folder of recorded clips; recorded when absent")
    data.add_argument("--backend", default="embedded", help="backend to record from when --data is absent")
    data.add_argument("--host", default=None, help="CARLA server host when recording with --backend carla")
    data.add_argument("--port", type=int, default=None, help="CARLA server port when recording with --backend carla")
    TRAIN_FLAGS.add_to(data, only=DATA_FIELDS)
    deprecated_alias(data, "--size", "--camera-size H W", "camera_size", size_argument, metavar="HxW")
    EPISODE_FLAGS.add_to(data)
    stages = p.add_argument_group(
        "stages",
        f"per-stage settings: one value per stage ({','.join(STAGE_NAMES)}), e.g. --epochs 7,11,4,4,2; "
        "stage=value pairs, e.g. --bptt drive=20 --lr ego=1e-4,seq=3e-5; or a single value for every stage "
        "(--window: the multi-frame stages; --bptt: the memory stages)",
    )
    stages.add_argument(
        "--stages", help=f"comma-separated stages to run (default: all of them, {','.join(STAGE_NAMES)})"
    )
    STAGE_FLAGS.add_to(stages)
    training = p.add_argument_group("training")
    training.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="start from a saved run's settings instead of a preset: a weights folder or its config.json "
        "(extra.train_config), or a TrainConfig JSON; the other flags override it",
    )
    training.add_argument("--preset", choices=("lite", "full"), help="model size and its defaults (default: lite)")
    training.add_argument(
        "--profile", choices=("default", "smoke"), help="smoke: every stage for seconds on tiny data (tests, CI)"
    )
    TRAIN_FLAGS.add_to(
        training, only=[f.field for f in TRAIN_FLAGS.flags if f.field not in DATA_FIELDS + REPORT_FIELDS]
    )
    training.add_argument(
        "--arch",
        nargs="+",
        metavar="FIELD=VALUE",
        help=field_help(TrainConfig, "architecture") + "; added to --config's, later ones win",
    )
    training.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    training.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    training.add_argument(
        "--init-from",
        type=Path,
        metavar="WEIGHTS",
        help="start the first stage from a weights folder (e.g. carla_gym/weights/lite) instead of untrained "
        "weights or OUT's checkpoints: fine-tune later stages with other data or settings",
    )
    training.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)  # tests: a kill
    report = p.add_argument_group(
        "report",
        "the evaluation on the test town after training (the smoke profile's long drives: 1 of 12 frames, "
        "in blocks of 6)",
    )
    report.add_argument("--no-eval", action="store_true", help="skip the test-town evaluation and pictures")
    TRAIN_FLAGS.add_to(report, only=REPORT_FIELDS)
    DRIVE_FLAGS.add_to(report)
    output = p.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("runs/perception"), help="output folder")
    return p


def load_train_config(path: Path) -> TrainConfig:
    """The `TrainConfig` saved in `path`: a weights folder or its config.json (under extra.train_config), or a
    `TrainConfig.to_dict()` JSON file. Settings the file holds that no longer exist are named on stderr and left
    out; settings it lacks (added since) keep their defaults. ValueError names the file and the bad setting."""
    file = path.expanduser() / "config.json" if path.expanduser().is_dir() else path.expanduser()
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the config file {file}: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("extra"), dict) and "train_config" in data["extra"]:
        data = data["extra"]["train_config"]
    elif isinstance(data, dict) and "train_config" in data:
        data = data["train_config"]
    unknown: list[str] = []
    cfg = from_dict(TrainConfig, data, f"{file}: train_config", unknown)
    for name in unknown:
        print(f"note: {name} is not a setting any more; left out", file=sys.stderr)
    return cfg


def base_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The config the flags override: the saved one of --config, or the preset's (profile's) defaults."""
    if args.config is None:
        return default_config(args.preset or "lite", args.profile or "default")
    given = [flag for flag, value in (("--preset", args.preset), ("--profile", args.profile)) if value is not None]
    if given:
        parser.exit(2, f"error: {given[0]} with --config: the config file decides the preset and profile\n")
    try:
        cfg = load_train_config(args.config)
        if not cfg.stages:
            raise ValueError(f"{args.config}: the saved config has no stages")
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    return cfg


def apply_stage_flags(cfg: TrainConfig, args: argparse.Namespace, parser: argparse.ArgumentParser) -> set[tuple]:
    """Set the stage fields the command line gives; returns the (stage, field) pairs it set."""
    changed = set()
    for field, given in STAGE_FLAGS.given(args).items():
        for stage in cfg.stages:
            takes_single = {"window": stage.window > 1, "bptt": stage.memory}.get(field, True)
            sets, value = given.value_for(stage.name, takes_single)
            if not sets:
                continue
            problem = value_problem(field, value)
            if problem is None and field == "window" and stage.window > 1 and value < 2:
                problem = "a window needs at least 2 frames"
            if problem:
                parser.exit(2, f"error: {STAGE_FLAGS.option(field)} {given.text}: {problem}\n")
            setattr(stage, field, value)
            changed.add((stage.name, field))
    return changed


def checked(flags: ConfigFlags, args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The fields `flags` gives on the command line; exits naming the flag and value when one is out of range."""
    given = flags.given(args)
    for field, value in given.items():
        problem = value_problem(field, value)
        if problem:
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
            parser.exit(2, f"error: {flags.option(field)} {shown}: {problem}\n")
    return given


def make_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The preset's (or smoke profile's, or --config's) settings with the command line's overrides."""
    cfg = base_config(args, parser)
    known = [s.name for s in cfg.stages]
    names = [s.strip() for s in (args.stages or ",".join(known)).split(",") if s.strip()]
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        where = "" if args.config is None else f" in {args.config}"
        parser.exit(
            2, f"error: unknown stage {unknown[0] if unknown else args.stages!r}{where}; known: {', '.join(known)}\n"
        )
    changed = apply_stage_flags(cfg, args, parser)
    cfg.stages = [s for s in cfg.stages if s.name in names]
    for field, value in checked(TRAIN_FLAGS, args, parser).items():
        setattr(cfg, field, value)
    episodes = checked(EPISODE_FLAGS, args, parser)
    try:
        cfg.episodes = dataclasses.replace(cfg.episodes, **episodes)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    drive = next((s for s in cfg.stages if s.name == "drive"), None)
    if (
        drive is not None
        and "drive_frames" in episodes
        and ("drive", "window") not in changed
        and drive.long_recordings
    ):
        drive.window = episodes["drive_frames"]
        if ("drive", "stride") not in changed:
            drive.stride = drive.window
    if args.arch:
        cfg.architecture = [*cfg.architecture, *args.arch]
    try:
        build_model(cfg.network(), device="meta")
    except (ValueError, TypeError) as e:
        parser.exit(2, f"error: --arch {' '.join(cfg.architecture)}: {e}\n")
    problems = cfg.window_problems()
    if problems:
        parser.exit(
            2,
            "error: "
            + "; ".join(problems)
            + " (see --camera-size, --crop, --frames, --train-drive-frames, --window)\n",
        )
    return cfg


def long_drive_config(args: argparse.Namespace, parser: argparse.ArgumentParser, profile: str) -> LongDriveConfig:
    """The profile's report long drives with the command line's overrides."""
    try:
        return dataclasses.replace(default_long_drives(profile), **checked(DRIVE_FLAGS, args, parser))
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")


def data_folder(args: argparse.Namespace, cfg: TrainConfig, parser: argparse.ArgumentParser) -> Path:
    """The clips to train on: --data, or the recipe's recording (made or reused in the cache)."""
    if args.data is not None:
        data = args.data.expanduser()
        if not data.is_dir():
            parser.exit(2, f"error: data folder {data} does not exist\n")
        return data
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.exit(2, "error: pass --data under torchrun (record the clips first, e.g. with a single-process run)\n")
    try:
        return record(cfg, args.backend, host=args.host, port=args.port, log=print)
    except (ValueError, RecordingError) as e:  # bad settings, clips in the way, a simulator failure
        parser.exit(2, f"error: {e}\n")


def log_line(message: str) -> None:
    """A log line under the progress bars, flushed at once (a run's log in a file stays current)."""
    tqdm.write(message)
    sys.stdout.flush()


def recipe_record(cfg: TrainConfig, args: argparse.Namespace, argv: list[str] | None, seconds: float) -> dict[str, Any]:
    """What the weights' `config.json` keeps of how they were made (`extra`): the training config, seconds and
    command, and the weights (`--init-from`) or the earlier stages' checkpoint (`--stages` after seg) they
    started from, so a folder names its whole recipe."""
    extra: dict[str, Any] = {
        "train_config": cfg.to_dict(),
        "train_seconds": round(seconds, 1),
        "command": command_line(argv, module="carla_gym.train_perception"),
    }
    if args.init_from is not None:
        extra["init_from"] = weights_lineage(args.init_from)
    elif (before := earlier_stages(cfg, args.out / "checkpoints")) is not None:
        extra["started_from"] = before
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = make_config(args, parser)
    drives = long_drive_config(args, parser, cfg.profile)
    rank = int(os.environ.get("RANK", "0"))
    t0 = time.time()
    data = data_folder(args, cfg, parser)
    try:
        store = ClipStore(data)
        if not len(store):
            raise ClipFormatError(f"{data}: no recorded clips")
        model = train(
            cfg,
            data,
            args.out,
            device=args.device,
            resume=args.resume,
            init_from=args.init_from,
            stop_after_epochs=args.stop_after_epochs,
            log=log_line if rank == 0 else (lambda _: None),
            started=t0,
        )
    except (ClipFormatError, TrainingError, ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the finished epochs are checkpointed in {args.out / 'checkpoints'}; "
            "the same command with --resume goes on from the last one",
            file=sys.stderr,
        )
        return 130
    if rank != 0:
        return 0
    total = run_seconds(args.out / "checkpoints")  # over every call of a resumed run
    train_s = time.time() - t0 if total is None else total
    description = data_description(store, data, args.backend if args.data is None else None)
    extra = recipe_record(cfg, args, argv, train_s)
    meta = store.clips()[0].meta
    size = (meta.height, meta.width)
    weights_dir = save_weights(model, args.out / "weights", training_data=description, extra=extra, input_size=size)
    print(f"weights written to {weights_dir} ({train_s:.0f}s)")
    if args.stop_after_epochs is not None or args.no_eval:
        return 0
    test = store.clips(split="test")
    if not test:
        print(f"no test clips in {data}: skipping the evaluation")
        return 0
    device = next(model.parameters()).device
    long_drives = None
    if drives.drives:
        try:
            long_drives = record_drives(drives, size, args.backend, host=args.host, port=args.port, log=print)
        except (ClipFormatError, ValueError, RecordingError) as e:
            parser.exit(2, f"error: {e}\n")
    report = write_report(
        model,
        test,
        args.out,
        device,
        seed=cfg.seed,
        corruptions=None if cfg.eval_corruptions else (),
        long_drives=long_drives,
        drive_config=drives,
    )
    print(report_text(report))
    save_weights(
        model,
        args.out / "weights",
        training_data=description,
        extra=extra,
        input_size=size,
        metrics={"test": report["results"]["clean"]},
    )
    print(f"report: {args.out / 'report.json'} (total {time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
