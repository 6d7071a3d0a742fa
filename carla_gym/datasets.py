"""Recording clips from a simulator backend with the ego on autopilot: `RecordingConfig` -> `record_clips`.

A warm-up drive (`drive="warmup"`) starts recording after `warmup` autopilot steps, the ego already
moving. An episode drive (`drive="episode"`) records the way the environment runs an episode: from the
first tick after reset (the ego at rest), the autopilot following the episode's route through junctions,
stopping at red lights and behind vehicles and starting again; the route is long enough that the drive
never reaches its end. Its clips are named episode_NNNN (`name` sets the prefix) and draw other seeds
than clip_NNNN. An approach drive (`drive="approach"`, embedded backend) is an episode drive whose
autopilot brakes late for road users ahead, as a learning policy does: it keeps its speed until a full
brake only just stops it 0.5 to 3 m short of them (drawn per clip), so the clips show vehicles close up
while the ego closes in on them, which comfortable distance keeping never records. Its clips are named
approach_NNNN. Approach drives meet a vehicle ahead only where the drawn traffic puts one on the route;
a follow drive (`drive="follow"`, embedded backend) is an approach drive that starts with one of the drawn
vehicles moved onto the route 15 to 40 m ahead (drawn per clip), so the ego closes in on it, stands
behind it at lights and starts after it. Its clips are named follow_NNNN. A crossing drive
(`drive="crossing"`, embedded backend) is an approach drive in which one of the drawn pedestrians steps out to
cross the road 10 to 40 m along the route (drawn per clip), so the ego brakes late for a pedestrian in its
lane. Its clips are named crossing_NNNN. A close crossing drive (`drive="close_crossing"`) is a crossing drive whose
pedestrian steps out 4 to 10 m along the route, so it crosses a few metres in front of the car as it starts: the
pedestrian a metre or two ahead, filling the frame, that crossing drives hardly record. Its clips are named
close_crossing_NNNN.

Clips go to OUT/<town>/<clip>/ (`clip_path`). Each is written atomically (`recording.ClipWriter`), so an
interrupted recording can simply be run again: complete clips are skipped. A clip already in OUT that was
recorded with other settings stops the recording before anything is recorded (`ClipMismatchError`,
naming the clip and each difference); nothing on disk is changed.

The config's fields carry the names of `python -m carla_gym.collect`'s options, and its errors name them so.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

from perception.conventions import CLASS_NAMES, NUM_CLASSES

from .recording import ClipWriter, clip_matches
from .sim import Control, SimulatorBackend, SimulatorError, backend_class, make_backend
from .sim.contract import CROSSING_M, DEFAULT_ROUTE_LENGTH

WARMUP_STEPS = 10  # autopilot steps before the first recorded frame (the ego starts at rest)
DRIVES = ("warmup", "episode", "approach", "follow", "crossing", "close_crossing")
# drives recorded from the reset frame on an episode's route
FROM_FIRST_TICK = ("episode", "approach", "follow", "crossing", "close_crossing")
LATE_BRAKING = ("approach", "follow", "crossing", "close_crossing")  # drives whose autopilot brakes late for road users
APPROACH_MARGIN_M = (0.5, 3.0)  # a late-braking drive's full-brake margin to road users ahead, drawn per clip
FOLLOW_LEAD_M = (15.0, 40.0)  # where a follow drive's vehicle starts on the route ahead, drawn per clip
CLOSE_CROSSING_M = (4.0, 10.0)  # where a close crossing drive's pedestrian steps out along the route, drawn per clip
# Drives that move an actor onto the route: the embedded reset option that does it and its range in metres.
PLACED = {
    "follow": ("lead_m", FOLLOW_LEAD_M),
    "crossing": ("crossing_m", CROSSING_M),
    "close_crossing": ("crossing_m", CLOSE_CROSSING_M),
}
SPLITS = ("train", "val", "test")
EPISODE_ROUTE_LENGTH = DEFAULT_ROUTE_LENGTH  # metres: the environment's default route per episode
# Metres of route for warmup recordings. The route decides the traffic drawn after it, so this is part of what a
# warmup clip is: it stays fixed when the backends' default route changes.
WARMUP_ROUTE_LENGTH = 500.0
ROUTE_SPEED_BOUND = 20.0  # m/s: faster than the autopilot drives, so an episode drive's route outlasts the drive


def cache_root() -> Path:
    """The user cache folder of carla_gym ($CARLA_GYM_CACHE, else $XDG_CACHE_HOME/carla_gym or ~/.cache/carla_gym)."""
    base = os.environ.get("CARLA_GYM_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "carla_gym")
    return Path(base).expanduser()


def default_root() -> Path:
    """The user cache folder for recorded clips."""
    return cache_root() / "clips"


def parse_size(text: str) -> tuple[int, int]:
    """'128x256' -> (128, 256) as (height, width); anything else raises ValueError."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HEIGHTxWIDTH, e.g. 128x256; got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return h, w


def size_argument(text: str) -> tuple[int, int]:
    """`parse_size` as an argparse type: its message becomes the usage error."""
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def clip_name(index: int, prefix: str = "clip") -> str:
    """The folder name of clip `index`: PREFIX_NNNN."""
    return f"{prefix}_{index:04d}"


def clip_seed(seed: int, town: str, index: int, prefix: str = "clip") -> int:
    """The episode seed of one clip: fixed by (run seed, town, clip name prefix, clip index), so a resumed run
    records the same clips and clips of another prefix (episode_0000 beside clip_0000) drive elsewhere."""
    key = town if prefix == "clip" else f"{town}/{prefix}"
    digest = np.frombuffer(key.encode(), dtype=np.uint8).astype(np.int64)
    return int(np.random.SeedSequence([seed, index, *digest.tolist()]).generate_state(1)[0] & 0x7FFFFFFF)


def autopilot(backend: Any, late_brake: float | None = None) -> Control:
    """The backend's autopilot control (embedded: `autopilot_control(late_brake)`; CARLA's traffic manager
    drives the ego itself when built with autopilot=True, and ignores the control)."""
    if hasattr(backend, "autopilot_control"):
        return backend.autopilot_control(late_brake)
    return Control()


def approach_margin(clip_seed: int) -> float:
    """The full-brake margin (m) of a late-braking drive's clip, drawn from its seed."""
    return float(np.random.default_rng(clip_seed).uniform(*APPROACH_MARGIN_M))


def placed_actor(drive: str, clip_seed: int, metres: tuple[float, float] | None = None) -> dict[str, float]:
    """The reset option that places a follow or crossing drive's actor (`PLACED`), its distance drawn from the
    clip's seed within `metres` (default: the drive's own range); {} for the other drives."""
    if drive not in PLACED:
        return {}
    option, default = PLACED[drive]
    return {option: float(np.random.default_rng([clip_seed, 1]).uniform(*(metres or default)))}


def episode_route_length(frames: int, every: int, fixed_delta: float) -> float:
    """Metres of route for an episode-style drive of `frames` recorded frames: the environment's route, or
    longer where the drive could reach its end (the ego would then stand at the end, which no episode does)."""
    return max(EPISODE_ROUTE_LENGTH, ROUTE_SPEED_BOUND * fixed_delta * every * frames)


class RecordingError(RuntimeError):
    """The simulator failed during a recording; the clips completed before it stay on disk."""


@dataclass(frozen=True)
class RecordingConfig:
    """One recording: which towns, how many clips of how many frames, how the ego drives, where they go.

    `towns` names the towns (embedded: also integer seeds, recorded as random towns in folders seed_N); when None,
    every town of `split` (default train) is recorded. With `towns`, `split` labels the clips of towns that
    belong to no split; a named town keeps its own split. `warmup` defaults to `WARMUP_STEPS` for
    `drive="warmup"` and must be 0 for the drives from the first tick (`FROM_FIRST_TICK`); `name` (the clip
    folder prefix) defaults to "clip", or the drive's name for those. `placed_m` (follow and crossing drives) is the
    range, in metres along the route, the placed vehicle or pedestrian is drawn from (None: the drive's own,
    `PLACED`). `out` defaults to `default_root()`. `host` and `port` reach the CARLA backend (None: its defaults).
    Bad values raise ValueError naming the option.
    """

    backend: str = "embedded"
    split: str | None = None
    towns: tuple[str, ...] | None = None
    clips: int = 4
    frames: int = 20
    every: int = 1
    drive: str = "warmup"
    warmup: int | None = None
    name: str | None = None
    placed_m: tuple[float, float] | None = None
    size: tuple[int, int] = (256, 512)
    fov: float = 90.0
    fixed_delta: float = 0.1
    out: Path | None = None
    seed: int = 0
    host: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        def set_(key: str, value: Any) -> None:  # frozen: the defaults are resolved once, here
            object.__setattr__(self, key, value)

        self._check_drive()
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"--split {self.split!r}: choose from {', '.join(SPLITS)}")
        warmup = (WARMUP_STEPS if self.drive == "warmup" else 0) if self.warmup is None else self.warmup
        name = self.name or ("clip" if self.drive == "warmup" else self.drive)
        set_("warmup", warmup)
        set_("name", name)
        if not name.replace("_", "").replace("-", "").isalnum() or name.startswith("-"):
            raise ValueError(f"--name {name!r}: use letters, digits, '-' and '_'")
        if self.clips < 1 or self.frames < 1 or self.every < 1 or warmup < 0:
            raise ValueError("--clips, --frames and --every must be >= 1 and --warmup >= 0")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ValueError(f"--camera-size {self.size}: height and width must be positive")
        set_("size", (int(self.size[0]), int(self.size[1])))
        set_("out", Path(self.out or default_root()).expanduser())
        if self.towns is not None:
            set_("towns", tuple(str(t).strip() for t in self.towns if str(t).strip()))
        cls = self.backend_class
        clash = [t for t in self.towns or () if cls.split_of(t) not in (None, self.split or cls.split_of(t))]
        if clash:  # a named town keeps its split: relabelling the test town as train would leak it
            raise ValueError(f"town {clash[0]!r} belongs to the {cls.split_of(clash[0])!r} split, not {self.split!r}")

    def _check_drive(self) -> None:
        if self.drive not in DRIVES:
            raise ValueError(f"--drive {self.drive!r}: choose from {', '.join(DRIVES)}")
        if self.drive in FROM_FIRST_TICK and self.warmup:
            raise ValueError(f"--warmup {self.warmup}: --drive {self.drive} records from the first tick")
        if self.drive in LATE_BRAKING and not hasattr(self.backend_class, "autopilot_control"):
            raise ValueError(
                f"--drive {self.drive}: the {self.backend} backend's ego is driven by the simulator's own autopilot, "
                f"which cannot brake late; record {self.drive} drives with --backend embedded"
            )
        if self.placed_m is not None:
            if self.drive not in PLACED:
                raise ValueError(f"--placed-m: only {', '.join(PLACED)} drives place a road user, not {self.drive}")
            low, high = self.placed_m
            if not 0.0 < low <= high:
                raise ValueError(f"--placed-m {low:g} {high:g}: need 0 < LOW <= HIGH metres")

    @property
    def placed_range(self) -> tuple[float, float] | None:
        """Metres along the route a follow or crossing drive's road user is placed within; None for other drives."""
        if self.drive not in PLACED:
            return None
        return self.placed_m or PLACED[self.drive][1]

    @property
    def backend_class(self) -> type[SimulatorBackend]:
        """The simulator backend's class (its towns, splits, world version and options)."""
        return backend_class(self.backend)

    def jobs(self) -> list[tuple[Any, str, str | None]]:
        """(argument for the backend, folder name, split label) per town to record."""
        cls = self.backend_class
        towns = tuple(cls.towns(self.split or "train")) if self.towns is None else self.towns
        jobs = []
        for town in towns:
            arg: int | str
            if self.backend == "embedded" and town.lstrip("-").isdigit():
                arg, folder = int(town), f"seed_{int(town)}"
            else:
                arg, folder = town, town
            jobs.append((arg, folder, cls.split_of(folder) or self.split))
        return jobs

    def drive_extra(self) -> dict[str, Any]:
        """How the clips of this recording are driven, for meta.json's `extra`."""
        extra: dict[str, Any] = {
            "every": self.every,
            "warmup": self.warmup,
            "drive": self.drive,
            "world_version": self.backend_class.WORLD_VERSION,
        }
        if self.drive in FROM_FIRST_TICK:
            extra["route_length"] = episode_route_length(self.frames, self.every, self.fixed_delta)
        if self.placed_range is not None:
            extra[PLACED[self.drive][0]] = list(self.placed_range)
        return extra

    def clip_settings(self, town: str, split: str | None, index: int) -> dict[str, Any]:
        """The meta.json values clip `index` of `town` gets (`extra.NAME`: inside meta.json's `extra`)."""
        return {
            "backend": self.backend,
            "town": town,
            "split": split,
            "num_frames": self.frames,
            "height": self.size[0],
            "width": self.size[1],
            "fov": float(self.fov),
            "fixed_delta_seconds": float(self.fixed_delta),
            "seed": clip_seed(self.seed, town, index, cast(str, self.name)),  # set by __post_init__
            **{f"extra.{k}": v for k, v in self.drive_extra().items()},
        }


@dataclass
class RecordingSummary:
    """What `record_clips` did: clips written, where, and the class pixel counts of the frames it recorded per town."""

    written: int
    out: Path
    class_pixels: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self) -> str:
        """A table of class pixel shares (%) per town, for the classes that occur."""
        per_town = self.class_pixels
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


def _record_town(
    config: RecordingConfig,
    town_arg: Any,
    town: str,
    split: str | None,
    counts: np.ndarray,
    bar: tqdm,
    summary: RecordingSummary,
) -> None:
    """Record the missing clips of one town (`town_arg` for the backend, `town` names the folder), counting
    each complete clip in `summary.written` as it is committed."""
    out, name, warmup = cast(Path, config.out), cast(str, config.name), cast(int, config.warmup)  # set by __post_init__
    todo = [
        i
        for i in range(config.clips)
        if not clip_matches(out, town, clip_name(i, name), config.clip_settings(town, split, i))
    ]
    bar.update((config.clips - len(todo)) * config.frames)
    if not todo:
        return
    fields = {f.name for f in dataclasses.fields(config.backend_class.Config)}
    options: dict[str, Any] = {
        "town": town_arg,
        "size": config.size,
        "fov": config.fov,
        "fixed_delta_seconds": config.fixed_delta,
        "seed": config.seed,
        "autopilot": True,  # CARLA: the traffic manager drives the ego
        "host": config.host,
        "port": config.port,
    }
    options = {k: v for k, v in options.items() if v is not None}
    backend = make_backend(config.backend, **{k: v for k, v in options.items() if k in fields})
    extra = config.drive_extra()
    reset_options = {"route_length": extra.get("route_length", WARMUP_ROUTE_LENGTH)}
    try:
        for i in todo:
            seed = clip_seed(config.seed, town, i, name)
            late_brake = approach_margin(seed) if config.drive in LATE_BRAKING else None
            frame = backend.reset(
                seed=seed, options=reset_options | placed_actor(config.drive, seed, config.placed_range)
            )
            for _ in range(warmup):
                frame = backend.step(autopilot(backend))
            with ClipWriter(
                out,
                town,
                clip_name(i, name),
                backend=config.backend,
                split=split,
                fov=config.fov,
                fixed_delta_seconds=backend.fixed_delta_seconds,
                seed=seed,
                extra=extra,
            ) as writer:
                for f in range(config.frames):
                    for _ in range(config.every if f else 0):
                        frame = backend.step(autopilot(backend, late_brake))
                    writer.write(frame)
                    counts += np.bincount(frame.semantic.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
                    bar.update(1)
            summary.written += 1
    finally:
        backend.close()


def record_clips(config: RecordingConfig, progress: bool = True) -> RecordingSummary:
    """Record the clips of `config` that `config.out` lacks (a progress bar on stderr unless `progress` is False).

    Every clip already in `config.out` must be one this recording would write, checked before anything is
    recorded: otherwise `ClipMismatchError` names it. A simulator failure raises `RecordingError` saying how
    many clips were completed (they stay on disk; recording again resumes).
    """
    out, name = cast(Path, config.out), cast(str, config.name)  # set by __post_init__
    jobs = config.jobs()
    for _, folder, split in jobs:
        for i in range(config.clips):
            clip_matches(out, folder, clip_name(i, name), config.clip_settings(folder, split, i))
    out.mkdir(parents=True, exist_ok=True)
    summary = RecordingSummary(written=0, out=out)
    with tqdm(
        total=len(jobs) * config.clips * config.frames,
        unit="frame",
        desc="recording",
        dynamic_ncols=True,
        disable=not progress,
    ) as bar:
        for town_arg, folder, split in jobs:
            bar.set_postfix_str(folder)
            counts = np.zeros(NUM_CLASSES, np.int64)
            try:
                _record_town(config, town_arg, folder, split, counts, bar, summary)
            except (ConnectionError, ImportError, SimulatorError) as err:  # complete clips stay on disk
                raise RecordingError(
                    f"{err}\n({summary.written} complete clip(s) are in {config.out}; re-run to resume)"
                ) from err
            summary.class_pixels[folder] = counts
    return summary
