"""Train the perception pipeline with the four-stage curriculum and evaluate it on the test town.

    python -m carla_gym.train_perception                          # lite preset, records its data first
    python -m carla_gym.train_perception --profile smoke --out /tmp/smoke
    python -m carla_gym.train_perception --data ~/clips --preset full --stages seq --epochs 0,0,0,5
    torchrun --nproc_per_node 2 -m carla_gym.train_perception --data ~/clips

Without --data, clips are recorded with `carla_gym.collect` (train, val and test towns of the
backend, plus --extra-towns random embedded towns as training data) into a cache folder named after
the backend, its world version, size, clip length, clip counts and seed, and reused next time. The
train and val towns can also get episode-style recordings (`collect --drive episode`: from the first
tick, stopping at red lights and behind vehicles, starting again): --episode-clips short clips and
--train-drives long drives of --train-drive-frames frames per town (none by default); these are part of
the folder's name.
The report adds long drives on the test town (--eval-drives of --drive-frames frames, scored per
--drive-block frames; `perception.training.long_drives`), cached in the `drives` folder beside the clips.
Outputs in --out: weights/ (model.safetensors + config.json), report.json, pictures/, tb/
(TensorBoard), checkpoints/ (per epoch; --resume continues from the last one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from perception.data import ClipFormatError, ClipStore
from perception.training import (
    STAGE_NAMES,
    TrainConfig,
    TrainingError,
    default_config,
    train,
)
from perception.training.long_drives import LongDriveConfig
from perception.training.report import report_text, write_report
from perception.weights import save_weights

from .cli import HelpFormatter, add_camera_size, deprecated_alias
from .datasets import RecordingError, size_argument
from .training_data import (
    EpisodeData,
    data_description,
    default_episode_data,
    record,
    record_drives,
)


def default_long_drives(profile: str) -> LongDriveConfig:
    """The report's long drives on the test town: tiny for the smoke profile, 3 x 300 frames otherwise."""
    if profile == "smoke":
        return LongDriveConfig(drives=1, frames=12, block=6)
    return LongDriveConfig(drives=3, frames=300, block=100)


def _per_stage(text: str, what: str, kind: type = int) -> list:
    """Four comma-separated non-negative numbers, one per stage (seg,depth,ego,seq)."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} must be {len(STAGE_NAMES)} comma-separated numbers, got {text!r}"
        ) from None
    if len(values) != len(STAGE_NAMES) or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"{what} must be {len(STAGE_NAMES)} non-negative numbers (seg,depth,ego,seq), got {text!r}"
        )
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m carla_gym.train_perception",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--data", type=Path, help="folder of recorded clips; recorded when absent")
    p.add_argument("--backend", default="embedded", help="backend to record from when --data is absent")
    p.add_argument("--host", default=None, help="CARLA server host when recording with --backend carla")
    p.add_argument("--port", type=int, default=None, help="CARLA server port when recording with --backend carla")
    p.add_argument("--clips", type=int, help="clips per town to record (default: the preset's)")
    p.add_argument(
        "--extra-towns",
        type=int,
        help="random embedded towns recorded as extra training data "
        "(default: the preset's; 0: the named train towns only)",
    )
    p.add_argument("--frames", type=int, help="frames per recorded clip (default: the preset's)")
    add_camera_size(p, None, "camera image height and width of the recording (default: the preset's input size)")
    deprecated_alias(p, "--size", "--camera-size H W", "camera_size", size_argument, metavar="HxW")
    p.add_argument("--episode-clips", type=int, help="episode-style clips per train and val town (default 0)")
    p.add_argument("--train-drives", type=int, help="episode-style long drives per train and val town (default 0)")
    p.add_argument("--train-drive-frames", type=int, help="frames per long training drive (default 200)")
    p.add_argument(
        "--eval-drives", type=int, help="long drives on the test town in the report (default 3; smoke 1; 0: off)"
    )
    p.add_argument("--drive-frames", type=int, help="frames per long test drive (default 300; smoke 12)")
    p.add_argument("--drive-block", type=int, help="frames per scored block of the long drives (default 100; smoke 6)")
    p.add_argument("--preset", choices=("lite", "full"), default="lite")
    p.add_argument("--stages", default=",".join(STAGE_NAMES), help="comma-separated stages (default: all, in order)")
    p.add_argument("--epochs", type=lambda t: _per_stage(t, "--epochs"), help="epochs per stage, e.g. 30,20,15,15")
    p.add_argument(
        "--batch-size", type=lambda t: _per_stage(t, "--batch-size"), help="batch size per stage, e.g. 8,8,4,2"
    )
    p.add_argument(
        "--lr",
        type=lambda t: _per_stage(t, "--lr", float),
        help="Adam learning rate per stage, e.g. 3e-4,3e-4,3e-4,3e-5",
    )
    p.add_argument(
        "--clutter",
        type=lambda t: _per_stage(t, "--clutter", float),
        metavar="P,P,P,P",
        help="probability per stage that a training window gets occluding clutter (default 0.25 each)",
    )
    p.add_argument("--window", type=int, help="frames per training window of the ego and seq stages (default 6)")
    p.add_argument(
        "--bptt",
        type=int,
        metavar="N",
        help="seq stage: truncated back-propagation through each window "
        "in chunks of N frames, the state carried between them (default: the whole window)",
    )
    p.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirror training frames left to right at random in the seg and depth stages (default: on)",
    )
    p.add_argument(
        "--zoom",
        type=float,
        default=None,
        metavar="MAX",
        help="zoom half the training frames of the seg stage in by up to MAX (default 1.5; 1: off)",
    )
    p.add_argument(
        "--profile",
        choices=("default", "smoke"),
        default="default",
        help="smoke: every stage for seconds on tiny data (tests, CI)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/perception"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-eval", action="store_true", help="skip the test-town evaluation and pictures")
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    return p


def make_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The preset's (or smoke profile's) defaults with the command line's overrides."""
    cfg = default_config(args.preset, args.profile)
    names = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGE_NAMES]
    if unknown or not names:
        parser.exit(
            2, f"error: unknown stage {unknown[0] if unknown else args.stages!r}; known: {', '.join(STAGE_NAMES)}\n"
        )
    if args.clutter and max(args.clutter) > 1.0:
        parser.exit(2, f"error: --clutter {','.join(map(str, args.clutter))}: probabilities must be at most 1\n")
    for i, stage in enumerate(cfg.stages):
        if args.epochs:
            stage.epochs = args.epochs[i]
        if args.batch_size:
            stage.batch_size = max(1, args.batch_size[i])
        if args.lr:
            stage.lr = args.lr[i]
        if args.clutter:
            stage.clutter_p = args.clutter[i]
        if args.window is not None and stage.window > 1:
            if args.window < 2:
                parser.exit(2, f"error: --window {args.window}: a window needs at least 2 frames\n")
            stage.window = args.window
    if args.bptt is not None:
        if args.bptt < 2:
            parser.exit(2, f"error: --bptt {args.bptt}: a chunk needs at least 2 frames\n")
        cfg.stage("seq").bptt = args.bptt
    cfg.stages = [s for s in cfg.stages if s.name in names]
    cfg.seed, cfg.workers = args.seed, args.workers
    if args.mirror is not None:
        cfg.mirror = args.mirror
    if args.zoom is not None:
        if args.zoom < 1.0:
            parser.exit(2, f"error: --zoom {args.zoom}: the largest zoom must be at least 1 (1: off)\n")
        cfg.zoom = args.zoom
    if args.clips is not None:
        cfg.clips = args.clips
    if args.extra_towns is not None:
        cfg.extra_towns = max(0, args.extra_towns)
    if args.frames is not None:
        cfg.frames = args.frames
    if args.camera_size is not None:
        cfg.size = args.camera_size
    window = max(s.window for s in cfg.stages)
    if cfg.frames < window:
        parser.exit(2, f"error: --frames {cfg.frames} is shorter than the {window}-frame training window\n")
    return cfg


def episode_data(args: argparse.Namespace, profile: str) -> EpisodeData:
    """The profile's episode-style recordings with the command line's overrides."""
    base = default_episode_data(profile)
    return EpisodeData(
        clips=base.clips if args.episode_clips is None else args.episode_clips,
        drives=base.drives if args.train_drives is None else args.train_drives,
        drive_frames=base.drive_frames if args.train_drive_frames is None else args.train_drive_frames,
    )


def long_drive_config(args: argparse.Namespace, profile: str) -> LongDriveConfig:
    """The profile's report long drives with the command line's overrides."""
    base = default_long_drives(profile)
    overrides = {"drives": args.eval_drives, "frames": args.drive_frames, "block": args.drive_block}
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = make_config(args, parser)
    try:
        episodes, drives = episode_data(args, cfg.profile), long_drive_config(args, cfg.profile)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    rank = int(os.environ.get("RANK", "0"))
    t0 = time.time()
    if args.data is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            parser.exit(
                2, "error: pass --data under torchrun (record the clips first, e.g. with a single-process run)\n"
            )
        try:
            data = record(cfg, args.backend, episodes, host=args.host, port=args.port, log=print)
        except (ValueError, RecordingError) as e:  # bad settings, clips in the way, a simulator failure
            parser.exit(2, f"error: {e}\n")
    else:
        data = args.data.expanduser()
        if not data.is_dir():
            parser.exit(2, f"error: data folder {data} does not exist\n")
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
            stop_after_epochs=args.stop_after_epochs,
            log=tqdm.write if rank == 0 else (lambda _: None),
        )
    except (ClipFormatError, TrainingError, ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    if rank != 0:
        return 0
    train_s = time.time() - t0
    description = data_description(store, data, args.backend if args.data is None else None)
    extra = {
        "train_config": cfg.to_dict(),
        "train_seconds": round(train_s, 1),
        "command": "python -m carla_gym.train_perception " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
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
