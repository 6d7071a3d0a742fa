"""The recorded data of perception training and its report, cached by recipe.

`record` records (or reuses) the train, val and test clips of a `TrainConfig` (the backend's towns, plus
random embedded towns as training data, plus optional episode-style recordings, `EpisodeData`) into a cache
folder named after everything that decides which clips it holds (`training_data_root`). `record_drives`
records (or reuses) long episode-style drives on the test town for the report's long-drive section, in a
cache folder of their own (`drives_root`). Both record with `datasets.record_clips`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from perception.data import Clip, ClipStore
from perception.training import TrainConfig
from perception.training.long_drives import LongDriveConfig

from .datasets import RecordingConfig, cache_root, clip_name, default_root, record_clips
from .sim import backend_class
from .sim.embedded.towns import training_seeds

DRIVE_PREFIX = "drive"  # clip folder prefix of long episode-style drives


@dataclass(frozen=True)
class EpisodeData:
    """Episode-style training recordings per named train and val town (`collect --drive episode`): `clips`
    clips of the preset's clip length and `drives` long drives of `drive_frames` frames. They hold what the
    environment shows and warm-up clips lack: the first ticks after a reset, standing and starting."""

    clips: int = 0
    drives: int = 0
    drive_frames: int = 200

    def __post_init__(self) -> None:
        if self.clips < 0 or self.drives < 0 or self.drive_frames < 2:
            raise ValueError(f"episode data needs clips >= 0, drives >= 0 and drive_frames >= 2, got {self}")

    @property
    def key(self) -> str:
        """The part of the recording cache's name that these recordings decide ('' when there are none)."""
        return (f"-ep{self.clips}" if self.clips else "") + (
            f"-{self.drives}x{self.drive_frames}drive" if self.drives else ""
        )


def default_episode_data(profile: str) -> EpisodeData:
    """The episode-style recordings of a profile: none yet, so the default command stays the recipe of the
    bundled weights; `--episode-clips`, `--train-drives` and `--train-drive-frames` add them."""
    return EpisodeData()


def training_data_root(cfg: TrainConfig, backend: str = "embedded", episodes: EpisodeData | None = None) -> Path:
    """The cache folder of the training clips of `cfg` recorded from `backend`. Training reads every clip under
    it, so its name holds everything that decides which clips it has: backend, world version, size, clip
    length, clip counts (named towns, random towns, episode data) and seed."""
    h, w = cfg.size
    version = backend_class(backend).WORLD_VERSION
    extra = cfg.extra_towns if backend == "embedded" else 0
    episodes = default_episode_data(cfg.profile) if episodes is None else episodes
    recipe = f"{cfg.clips}clips" + (f"-{extra}x{cfg.extra_town_clips}extra" if extra else "") + episodes.key
    return default_root() / f"{backend}-v{version}-{h}x{w}-{cfg.frames}f-{recipe}-seed{cfg.seed}"


def drives_root(config: LongDriveConfig, size: tuple[int, int], backend: str = "embedded") -> Path:
    """The cache folder of long test-town drives, named after everything that decides a drive (backend, world
    version, size, length, seed), so later runs reuse them and asking for more adds to them."""
    h, w = size
    version = backend_class(backend).WORLD_VERSION
    return cache_root() / "drives" / f"{backend}-v{version}-{h}x{w}-{config.frames}f-seed{config.seed}"


def _record(config: RecordingConfig, log: Callable[[str], None] | None) -> None:
    summary = record_clips(config)
    if log is not None:
        log(f"{summary.written} clip(s) written to {summary.out}")
        log(summary.table())


def record(
    cfg: TrainConfig,
    backend: str = "embedded",
    episodes: EpisodeData | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Record (or reuse) the train, val and test clips of `cfg` from `backend`; returns the clip root.

    `episodes` adds episode-style recordings of the train and val towns (default: the profile's); `host` and
    `port` reach a CARLA server (None: the backend's defaults). `log` gets each recording's summary. Bad
    settings raise ValueError (clips in the way: `recording.ClipMismatchError`); a simulator failure raises
    `datasets.RecordingError`; clips completed before either stay on disk.
    """
    episodes = default_episode_data(cfg.profile) if episodes is None else episodes
    root = training_data_root(cfg, backend, episodes)
    common: dict[str, Any] = {
        "backend": backend,
        "size": tuple(cfg.size),
        "out": root,
        "seed": cfg.seed,
        "host": host,
        "port": port,
    }
    for split in ("train", "val", "test"):
        _record(RecordingConfig(**common, frames=cfg.frames, split=split, clips=cfg.clips), log)
    for split in ("train", "val"):
        if episodes.clips:
            _record(
                RecordingConfig(**common, frames=cfg.frames, split=split, clips=episodes.clips, drive="episode"), log
            )
        if episodes.drives:
            _record(
                RecordingConfig(
                    **common,
                    frames=episodes.drive_frames,
                    split=split,
                    clips=episodes.drives,
                    drive="episode",
                    name=DRIVE_PREFIX,
                ),
                log,
            )
    extra = cfg.extra_towns if backend == "embedded" else 0
    if extra:
        _record(
            RecordingConfig(
                **common,
                frames=cfg.frames,
                towns=tuple(str(s) for s in training_seeds(extra)),
                split="train",
                clips=cfg.extra_town_clips,
            ),
            log,
        )
    return root


def record_drives(
    config: LongDriveConfig,
    size: tuple[int, int],
    backend: str = "embedded",
    *,
    host: str | None = None,
    port: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Clip]:
    """The first `config.drives` long episode-style drives on the backend's test town(s), recorded (or reused)
    in `drives_root`. `host`, `port`, `log` and the errors are those of `record`."""
    recording = RecordingConfig(
        backend=backend,
        split="test",
        drive="episode",
        name=DRIVE_PREFIX,
        clips=config.drives,
        frames=config.frames,
        size=cast(tuple[int, int], tuple(size)),
        out=drives_root(config, size, backend),
        seed=config.seed,
        host=host,
        port=port,
    )
    _record(recording, log)
    wanted = {clip_name(i, DRIVE_PREFIX) for i in range(config.drives)}
    return [c for c in ClipStore(cast(Path, recording.out)).clips(split="test") if c.path.name in wanted]


def data_description(store: ClipStore, root: Path, backend: str | None) -> dict[str, Any]:
    """What the weights were trained on, for config.json."""
    splits = {s: sorted({c.meta.town for c in store.clips(split=s)}) for s in ("train", "val", "test")}
    return {
        "root": str(root),
        "backend": backend or store.clips()[0].meta.backend,
        "towns": splits,
        "clips": {s: len(store.clips(split=s)) for s in splits},
        "frames": sum(len(c) for c in store.clips(split="train")),
    }
