"""The recorded data of perception training and its report, cached by recipe.

`record` records (or reuses) the train, val and test clips of a `TrainConfig` (the backend's towns, plus
random embedded towns as training data, plus the episode-style, approach, follow and crossing recordings of
`TrainConfig.episodes`) into a cache folder named after everything that decides which clips it holds
(`training_data_root`). `record_drives` records (or reuses) long drives from the first tick on the test town
for the report's long-drive section (or on the validation town, to compare recipes), in a cache folder of
their own (`drives_root`). Both record with `datasets.record_clips`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from perception.data import Clip, ClipStore
from perception.portable_paths import portable_path
from perception.training import TrainConfig
from perception.training.long_drives import LongDriveConfig

from .datasets import LATE_BRAKING, RecordingConfig, cache_root, clip_name, default_root, record_clips
from .sim import backend_class
from .sim.embedded.towns import training_seeds

DRIVE_PREFIX = "drive"  # clip folder prefix of long episode-style drives


def training_data_root(cfg: TrainConfig, backend: str = "embedded") -> Path:
    """The cache folder of the training clips of `cfg` recorded from `backend`. Training reads every clip under
    it, so its name holds everything that decides which clips it has: backend, world version, size, clip
    length, clip counts (named towns, random towns, episode data) and seed."""
    h, w = cfg.size
    version = backend_class(backend).WORLD_VERSION
    extra = cfg.extra_towns if backend == "embedded" else 0
    recipe = f"{cfg.clips}clips" + (f"-{extra}x{cfg.extra_town_clips}extra" if extra else "") + cfg.episodes.key
    return default_root() / f"{backend}-v{version}-{h}x{w}-{cfg.frames}f-{recipe}-seed{cfg.seed}"


def drives_root(
    config: LongDriveConfig,
    size: tuple[int, int],
    backend: str = "embedded",
    split: str = "test",
    drive: str = "episode",
) -> Path:
    """The cache folder of long drives on a split's town(s) (the test town's for the report), named after everything
    that decides a drive (backend, world version, size, length, seed, split, and the drive when it is not an
    episode's), so later runs reuse them and asking for more adds to them."""
    h, w = size
    version = backend_class(backend).WORLD_VERSION
    kind = "" if drive == "episode" else f"-{drive}"
    suffix = "" if split == "test" else f"-{split}"
    return cache_root() / "drives" / f"{backend}-v{version}{kind}-{h}x{w}-{config.frames}f-seed{config.seed}{suffix}"


def _record(config: RecordingConfig, log: Callable[[str], None] | None) -> None:
    summary = record_clips(config)
    if log is not None:
        log(f"{summary.written} clip(s) written to {summary.out}")
        log(summary.table())


def record(
    cfg: TrainConfig,
    backend: str = "embedded",
    *,
    host: str | None = None,
    port: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Record (or reuse) the train, val and test clips of `cfg` from `backend`; returns the clip root.

    `cfg.episodes` adds episode-style recordings of the train and val towns; `host` and `port` reach a CARLA
    server (None: the backend's defaults). `log` gets each recording's summary. Bad settings raise ValueError
    (clips in the way: `recording.ClipMismatchError`); a simulator failure raises `datasets.RecordingError`;
    clips completed before either stay on disk.
    """
    episodes = cfg.episodes
    root = training_data_root(cfg, backend)
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
        for drive in LATE_BRAKING:  # EpisodeData counts each late-braking drive in a field of its name
            if getattr(episodes, drive):
                _record(
                    RecordingConfig(
                        **common, frames=episodes.drive_frames, split=split, clips=getattr(episodes, drive), drive=drive
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
    split: str = "test",
    drive: str = "episode",
) -> list[Clip]:
    """The first `config.drives` long drives on the backend's town(s) of `split` (the test town's for the report;
    the validation town's for choosing between recipes), recorded (or reused) in `drives_root`. `drive` is an
    episode's (the default) or another drive from the first tick (`datasets.FROM_FIRST_TICK`: "approach" brakes
    late for road users). `host`, `port`, `log` and the errors are those of `record`."""
    recording = RecordingConfig(
        backend=backend,
        split=split,
        drive=drive,
        name=DRIVE_PREFIX,
        clips=config.drives,
        frames=config.frames,
        size=cast(tuple[int, int], tuple(size)),
        out=drives_root(config, size, backend, split, drive),
        seed=config.seed,
        host=host,
        port=port,
    )
    _record(recording, log)
    wanted = {clip_name(i, DRIVE_PREFIX) for i in range(config.drives)}
    return [c for c in ClipStore(cast(Path, recording.out)).clips(split=split) if c.path.name in wanted]


def data_description(store: ClipStore, root: Path, backend: str | None) -> dict[str, Any]:
    """What the weights were trained on, for config.json."""
    splits = {s: sorted({c.meta.town for c in store.clips(split=s)}) for s in ("train", "val", "test")}
    return {
        "root": portable_path(root),
        "backend": backend or store.clips()[0].meta.backend,
        "towns": splits,
        "clips": {s: len(store.clips(split=s)) for s in splits},
        "frames": sum(len(c) for c in store.clips(split="train")),
    }
