"""Record clips from a simulator backend with the ego on autopilot.

    python -m carla_gym.collect --split train --clips 4 --frames 20 --camera-size 128 256
    python -m carla_gym.collect --towns grid_suburb,ring_boulevard --clips 2 --out /data/clips
    python -m carla_gym.collect --towns 1003,1004 --split train --clips 4   # random towns (seeds) as training data
    python -m carla_gym.collect --split test --drive episode --clips 3 --frames 1000   # long drives as episodes run

--drive warmup (default) starts recording after --warmup autopilot steps, the ego already moving.
--drive episode records the way the environment runs an episode: from the first tick after reset (the
ego at rest), the autopilot following the episode's route through junctions, stopping at red lights and
behind vehicles and starting again; the route is long enough that the drive never reaches its end.
Its clips are named episode_NNNN (--name sets the prefix) and draw other seeds than clip_NNNN.
--drive approach (embedded backend) is an episode drive whose autopilot brakes late for road users
ahead, as a learning policy does: it keeps its speed until a full brake only just stops it 0.5 to 3 m
short of them, so vehicles are seen close up while the ego closes in (clips approach_NNNN); it meets a
vehicle only where the drawn traffic puts one on the route. --drive follow (embedded backend) is an
approach drive behind a vehicle moved onto the route 15 to 40 m ahead at reset (clips follow_NNNN).
--drive crossing (embedded backend) is an approach drive in which a pedestrian steps out to cross the road
10 to 40 m along the route (clips crossing_NNNN); --drive close_crossing 4 to 10 m along it, so the pedestrian
crosses a few metres in front of the car as it starts (clips close_crossing_NNNN). --placed-m LOW HIGH moves a
follow or crossing drive's road user to another range.

Clips go to ROOT/<town>/<clip>/ (default ROOT: ~/.cache/carla_gym/clips, or $CARLA_GYM_CACHE/clips).
Each clip is written to a temporary folder and renamed when complete, so an interrupted run can
simply be started again: complete clips are skipped. A clip already in --out that was recorded with
other settings (backend, world version, size, frames, fov, fixed delta, seed, split, every, warmup, drive,
route length) stops
the run before anything is recorded, naming the clip and each difference; nothing on disk is changed.
At the end a table shows the share of each class's pixels per town.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import HelpFormatter, add_camera_size, deprecated_alias, non_negative_int, positive_int
from .datasets import (
    DRIVES,
    PLACED,
    WARMUP_STEPS,
    RecordingConfig,
    RecordingError,
    default_root,
    record_clips,
    size_argument,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m carla_gym.collect",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--backend", default="embedded", help="simulator backend (default: embedded)")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="record every town of a split; with --towns, the split the clips are labelled with",
    )
    p.add_argument("--towns", help="comma-separated town names (embedded: also integer seeds)")
    p.add_argument("--clips", type=positive_int, default=4, help="clips per town (default 4)")
    p.add_argument("--frames", type=positive_int, default=20, help="frames per clip (default 20)")
    p.add_argument("--every", type=positive_int, default=1, help="simulation steps between recorded frames (default 1)")
    p.add_argument(
        "--drive",
        choices=DRIVES,
        default="warmup",
        help="warmup: record after --warmup autopilot steps; episode: from the first tick, as the env runs; "
        "approach: an episode drive that brakes late for road users ahead; "
        "follow: an approach drive behind a vehicle placed on the route ahead; "
        "crossing: an approach drive towards a pedestrian who steps out to cross the route ahead; "
        "close_crossing: a crossing drive whose pedestrian steps out a few metres ahead",
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        default=None,
        help=f"autopilot steps before recording (--drive warmup; default {WARMUP_STEPS})",
    )
    p.add_argument(
        "--name", default=None, help="clip folder prefix (default: clip, or the --drive name for the other drives)"
    )
    p.add_argument(
        "--placed-m",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="follow and crossing drives: metres along the route the vehicle or pedestrian is placed within "
        "(default: " + ", ".join(f"{low:g} {high:g} for {drive}" for drive, (_, (low, high)) in PLACED.items()) + ")",
    )
    add_camera_size(p, (256, 512), "camera image height and width in pixels")
    deprecated_alias(p, "--size", "--camera-size H W", "camera_size", size_argument, metavar="HxW")
    p.add_argument("--fov", type=float, default=90.0, help="camera horizontal field of view in degrees")
    p.add_argument("--fixed-delta", type=float, default=0.1, help="seconds per simulation step")
    p.add_argument("--out", type=Path, default=None, help=f"output root (default {default_root()})")
    p.add_argument("--seed", type=int, default=0, help="run seed; clip seeds derive from it, town and index")
    p.add_argument("--host", default=None, help="CARLA server host (carla backend; default localhost)")
    p.add_argument("--port", type=int, default=None, help="CARLA server port (carla backend; default 2000)")
    return p


def config_from_args(args: argparse.Namespace) -> RecordingConfig:
    """The recording the command line asks for (ValueError names a bad option)."""
    towns = tuple(args.towns.split(",")) if args.towns else None
    return RecordingConfig(
        backend=args.backend,
        split=args.split,
        towns=towns,
        clips=args.clips,
        frames=args.frames,
        every=args.every,
        drive=args.drive,
        warmup=args.warmup,
        name=args.name,
        placed_m=tuple(args.placed_m) if args.placed_m else None,
        size=args.camera_size,
        fov=args.fov,
        fixed_delta=args.fixed_delta,
        out=args.out,
        seed=args.seed,
        host=args.host,
        port=args.port,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = record_clips(config_from_args(args))
    except (ValueError, RecordingError) as err:  # bad options, clips in the way, a simulator failure
        raise SystemExit(f"error: {err}") from None
    print(f"{summary.written} clip(s) written to {summary.out}")
    print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
