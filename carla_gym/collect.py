"""Record clips (SPEC 5) from a simulator backend with the ego on autopilot.

    python -m carla_gym.collect --split train --clips 4 --frames 20 --size 128x256
    python -m carla_gym.collect --towns grid_suburb,ring_boulevard --clips 2 --out /data/clips
    python -m carla_gym.collect --towns 1003,1004 --split train --clips 4   # random towns (seeds) as training data

Clips go to ROOT/<town>/<clip>/ (default ROOT: ~/.cache/carla_gym/clips, or $CARLA_GYM_CACHE/clips).
Each clip is written to a temporary folder and renamed when complete, so an interrupted run can
simply be started again: complete clips are skipped. At the end a table shows the share of each
class's pixels per town.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from perception.conventions import CLASS_NAMES, NUM_CLASSES

from .recording import ClipWriter, clip_is_complete
from .sim import Control, SimulatorError, backend_class, make_backend

WARMUP_STEPS = 10  # autopilot steps before the first recorded frame (the ego starts at rest)


def default_root() -> Path:
    """The user cache folder for recorded clips."""
    base = os.environ.get("CARLA_GYM_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "carla_gym")
    return Path(base).expanduser() / "clips"


def parse_size(text: str) -> tuple[int, int]:
    """'128x256' -> (128, 256) as (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HEIGHTxWIDTH, e.g. 128x256; got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def clip_name(index: int) -> str:
    return f"clip_{index:04d}"


def clip_seed(seed: int, town: str, index: int) -> int:
    """The episode seed of one clip: fixed by (run seed, town, clip index), so a resumed run records the same clips."""
    digest = np.frombuffer(town.encode(), dtype=np.uint8).astype(np.int64)
    return int(np.random.SeedSequence([seed, index, *digest.tolist()]).generate_state(1)[0] & 0x7FFFFFFF)


def autopilot(backend: Any) -> Control:
    """The backend's autopilot control (embedded: `autopilot_control()`; CARLA's traffic manager
    drives the ego itself when built with autopilot=True, and ignores the control)."""
    if hasattr(backend, "autopilot_control"):
        return backend.autopilot_control()
    return Control()


def record_town(args: argparse.Namespace, town_arg: Any, town: str, split: str | None, counts: np.ndarray, bar: tqdm) -> int:
    """Record the missing clips of one town (`town_arg` for the backend, `town` names the folder); returns how many were written."""
    todo = [i for i in range(args.clips) if not clip_is_complete(args.out, town, clip_name(i))]
    bar.update((args.clips - len(todo)) * args.frames)
    if not todo:
        return 0
    fields = {f.name for f in dataclasses.fields(backend_class(args.backend).Config)}
    options: dict[str, Any] = {"town": town_arg, "size": args.size, "fov": args.fov, "fixed_delta_seconds": args.fixed_delta,
                               "seed": args.seed, "autopilot": True,  # CARLA: the traffic manager drives the ego
                               "host": args.host, "port": args.port}
    options = {k: v for k, v in options.items() if v is not None}
    backend = make_backend(args.backend, **{k: v for k, v in options.items() if k in fields})
    written = 0
    try:
        for i in todo:
            seed = clip_seed(args.seed, town, i)
            frame = backend.reset(seed=seed)
            for _ in range(args.warmup):
                frame = backend.step(autopilot(backend))
            with ClipWriter(args.out, town, clip_name(i), backend=args.backend, split=split, fov=args.fov,
                            fixed_delta_seconds=backend.fixed_delta_seconds, seed=seed,
                            extra={"every": args.every, "warmup": args.warmup}) as writer:
                for f in range(args.frames):
                    for _ in range(args.every if f else 0):
                        frame = backend.step(autopilot(backend))
                    writer.write(frame)
                    counts += np.bincount(frame.semantic.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
                    bar.update(1)
            written += 1
    finally:
        backend.close()
    return written


def summary(per_town: dict[str, np.ndarray]) -> str:
    """A table of class pixel shares (%) per town, for the classes that occur."""
    present = [c for c in range(NUM_CLASSES) if any(v[c] for v in per_town.values())]
    if not present:
        return "no new frames recorded (all clips were already complete)"
    towns = list(per_town)
    width = max(12, *(len(t) for t in towns))
    lines = [f"{'class':<13}" + "".join(f"{t:>{width + 1}}" for t in towns)]
    for c in present:
        cells = []
        for t in towns:
            total = per_town[t].sum()
            cells.append(f"{100.0 * per_town[t][c] / total:>{width}.2f}%" if total else f"{'-':>{width + 1}}")
        lines.append(f"{CLASS_NAMES[c]:<13}" + "".join(cells))
    return "class pixel share per town (frames recorded in this run):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m carla_gym.collect", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--backend", default="embedded", help="simulator backend (default: embedded)")
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="record every town of a split; with --towns, the split the clips are labelled with")
    p.add_argument("--towns", help="comma-separated town names (embedded: also integer seeds)")
    p.add_argument("--clips", type=int, default=4, help="clips per town (default 4)")
    p.add_argument("--frames", type=int, default=20, help="frames per clip (default 20)")
    p.add_argument("--every", type=int, default=1, help="simulation steps between recorded frames (default 1)")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="autopilot steps before recording")
    p.add_argument("--size", type=parse_size, default=(256, 512), help="camera HEIGHTxWIDTH (default 256x512)")
    p.add_argument("--fov", type=float, default=90.0)
    p.add_argument("--fixed-delta", type=float, default=0.1, help="seconds per simulation step")
    p.add_argument("--out", type=Path, default=None, help=f"output root (default {default_root()})")
    p.add_argument("--seed", type=int, default=0, help="run seed; clip seeds derive from it, town and index")
    p.add_argument("--host", default=None, help="CARLA server host (carla backend; default localhost)")
    p.add_argument("--port", type=int, default=None, help="CARLA server port (carla backend; default 2000)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.clips < 1 or args.frames < 1 or args.every < 1 or args.warmup < 0:
        raise SystemExit("--clips, --frames and --every must be >= 1 and --warmup >= 0")
    args.out = (args.out or default_root()).expanduser()
    cls = backend_class(args.backend)
    if args.towns:
        towns = [t.strip() for t in args.towns.split(",") if t.strip()]
        clash = [t for t in towns if cls.split_of(t) not in (None, args.split or cls.split_of(t))]
        if clash:  # a named town keeps its split: relabelling the test town as train would leak it
            raise SystemExit(f"error: town {clash[0]!r} belongs to the {cls.split_of(clash[0])!r} split, not {args.split!r}")
    else:
        towns = list(cls.towns(args.split or "train"))
    args.out.mkdir(parents=True, exist_ok=True)
    per_town: dict[str, np.ndarray] = {}
    written = 0
    with tqdm(total=len(towns) * args.clips * args.frames, unit="frame", desc="recording", dynamic_ncols=True) as bar:
        for town in towns:
            name = town
            if args.backend == "embedded" and town.lstrip("-").isdigit():
                town_arg: Any = int(town)
                name = f"seed_{int(town)}"
            else:
                town_arg = town
            bar.set_postfix_str(name)
            counts = np.zeros(NUM_CLASSES, np.int64)
            try:
                written += record_town(args, town_arg, name, cls.split_of(name) or args.split, counts, bar)
            except (ConnectionError, ImportError, SimulatorError) as err:  # complete clips stay on disk
                bar.close()
                raise SystemExit(f"error: {err}\n({written} complete clip(s) are in {args.out}; re-run to resume)") from None
            per_town[name] = counts
    print(f"{written} clip(s) written to {args.out}")
    print(summary(per_town))
    return 0


if __name__ == "__main__":
    sys.exit(main())
