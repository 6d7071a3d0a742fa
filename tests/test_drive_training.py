"""Training on episode-style recordings: which recordings each stage reads, the drive stage's memory-only training,
window checks, and the recipe's settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from perception import build_model
from perception.data import ClipStore, ClipWindows, EqualLengthBatches, mixed_windows
from perception.training import EpisodeData, StageConfig, default_config, train
from perception.training.loop import stage_clips
from perception.training.stages import trainable_parts


@pytest.mark.parametrize(
    "pose_weight, depth_weight, ego_trains, depth_trains",
    [(1.0, 1.0, True, True), (0.0, 1.0, False, True), (0.0, 0.0, False, False)],
)
def test_a_part_whose_loss_is_off_stays_frozen(
    pose_weight: float, depth_weight: float, ego_trains: bool, depth_trains: bool
) -> None:
    for name in ("seq", "drive"):
        stage = StageConfig(name, 1, 1, window=6, pose_weight=pose_weight, depth_weight=depth_weight)
        parts = trainable_parts(stage)
        assert ("ego_motion_filter" in parts) is ego_trains
        assert ("geometry_filter.depth_decoder" in parts) is depth_trains
        assert "geometry_filter.convgru" in parts  # the memory always trains in the memory stages
        assert trainable_parts(name) == trainable_parts(StageConfig(name, 1, 1, depth_weight=1, pose_weight=1))


def test_longest_keeps_the_short_clips_and_long_windows_come_from_drives(smoke_data: Path) -> None:
    cfg = default_config("lite", "smoke")
    store = ClipStore(smoke_data)
    train_clips = store.clips(split="train")
    short = [c for c in train_clips if len(c) <= cfg.frames]
    assert len(short) < len(train_clips)  # the smoke data has drives longer than its clips
    assert len(ClipWindows(store, window=1, split="train", longest=cfg.frames)) == sum(len(c) for c in short)
    drives = ClipWindows(store, window=cfg.episodes.drive_frames, stride=cfg.episodes.drive_frames, split="train")
    assert len(drives) == len(train_clips) - len(short)  # one window per drive, none from the short clips
    with pytest.raises(ValueError, match="of at most 3 frames"):
        ClipWindows(store, window=1, split="train", longest=3)


@pytest.mark.parametrize(
    "stage, episode_style, drives",
    [("seg", True, True), ("depth", True, True), ("ego", True, True), ("seq", True, False), ("drive", True, True)],
)
def test_stages_read_the_recordings_of_their_recipe(
    stage: str, episode_style: bool, drives: bool, smoke_data: Path
) -> None:
    """The seq stage reads the short clips of both kinds, every other stage everything."""
    cfg = default_config("lite", "smoke")
    s = cfg.stage(stage)
    clips = stage_clips(ClipStore(smoke_data), s, "train", None if s.long_recordings else cfg.frames)
    kinds = {(c.meta.extra.get("drive") == "episode", len(c) > cfg.frames) for c in clips}
    assert (False, False) in kinds  # the warm-up clips, always
    assert ((True, False) in kinds) is episode_style
    assert ((True, True) in kinds) is drives


def test_mixed_windows_cut_short_windows_from_the_short_clips(smoke_data: Path) -> None:
    cfg = default_config("lite", "smoke")
    store = ClipStore(smoke_data)
    drive_frames, frames = cfg.episodes.drive_frames, cfg.frames
    windows, lengths = mixed_windows(store, drive_frames, drive_frames, 5, split="train")
    n_drives = sum(len(c) >= drive_frames for c in store.clips(split="train"))
    n_short = sum(len(c) < drive_frames for c in store.clips(split="train"))
    assert frames // 5 == 1  # one 5-frame window per 7-frame clip (every 5 frames)
    assert sorted(lengths) == [5] * n_short + [drive_frames] * n_drives
    assert all(windows[i]["rgb"].shape[0] == n for i, n in enumerate(lengths))
    with pytest.raises(ValueError, match="no recorded clips of at least 50 frames"):
        mixed_windows(store, 60, 60, 50, split="train")


@pytest.mark.parametrize("world", [1, 2])
def test_equal_length_batches_hold_one_length_and_cover_the_data(world: int) -> None:
    lengths = [20] * 7 + [300] * 4
    ranks = [EqualLengthBatches(lengths, batch_size=2, seed=3, rank=r, world=world) for r in range(world)]
    batches = [b for sampler in ranks for b in sampler]
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    assert len({len(list(sampler)) for sampler in ranks}) == 1  # every rank the same number of batches
    seen = sorted(i for b in batches for i in b)
    # 4 batches of 20-frame windows (2+2+2+1) and 2 of 300: 6 batches, even over 1 or 2 ranks
    assert seen == list(range(len(lengths)))
    again = EqualLengthBatches(lengths, batch_size=2, seed=3, rank=0, world=world)
    assert list(again) == list(ranks[0])  # the same seed and epoch, the same batches
    again.set_epoch(1)
    assert list(again) != list(ranks[0])


def test_window_problems_name_the_stage_and_lengths() -> None:
    cfg = default_config("lite", "smoke")
    assert cfg.window_problems() == []
    cfg.episodes = EpisodeData(drives=0)
    assert cfg.window_problems() == ["stage 'drive': its 10-frame window is longer than its recordings (7 frames)"]
    cfg.stage("drive").epochs = 0  # a stage that does not run is not checked
    assert cfg.window_problems() == []
    cfg = default_config("lite", "smoke")
    cfg.stage("drive").short_window = 10
    assert cfg.window_problems() == [
        "stage 'drive': its short window (10 frames) must be at least 1 and shorter than its window (10 frames)"
    ]


@pytest.mark.parametrize("preset, profile", [("lite", "default"), ("lite", "smoke")])
def test_recipes_train_the_memory_on_clips_then_through_whole_drives(preset: str, profile: str) -> None:
    cfg = default_config(preset, profile)
    seq, drive = cfg.stage("seq"), cfg.stage("drive")
    assert seq.window <= cfg.frames and seq.pose_weight > 0 and seq.bptt is None
    assert cfg.episodes.drives > 0 and drive.window == drive.stride == cfg.episodes.drive_frames
    assert drive.bptt is not None and drive.bptt < drive.window and drive.pose_weight == 0
    assert [s.long_recordings for s in cfg.stages] == [True, True, True, False, True]
    assert all(s.episode_recordings for s in cfg.stages)
    # The per-frame stages sample a capped number of batches from the drives' near-duplicate frames.
    assert all(s.max_batches is not None for s in cfg.stages if s.window == 1)
    assert cfg.window_problems() == []


@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_lite_recipe_ends_only_its_drive_stage_between_start_and_training(profile: str) -> None:
    stages = default_config("lite", profile).stages
    assert [s.interpolate < 1 for s in stages] == [False, False, False, False, True]
    assert 0 < stages[-1].interpolate


def test_drive_stage_without_pose_loss_keeps_the_ego_filter(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    cfg = default_config("lite", "smoke")
    cfg.stages = [dataclasses.replace(cfg.stage("drive"), max_batches=1)]
    torch.manual_seed(cfg.seed)  # `train` builds its model after seeding the same way
    before = build_model(cfg.preset).state_dict()
    after = train(cfg, smoke_data, tmp_path / "run", device="cpu", log=lambda _: None).state_dict()
    ego = [k for k in before if k.startswith("ego_motion_filter.")]
    memory = [k for k in before if k.startswith("geometry_filter.convgru.") and before[k].is_floating_point()]
    assert ego and all(torch.equal(before[k], after[k]) for k in ego)
    assert any(not torch.equal(before[k], after[k]) for k in memory)


def test_drive_stage_trains_on_drives_and_short_clips(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    cfg = default_config("lite", "smoke")
    drive = dataclasses.replace(cfg.stage("drive"), short_window=cfg.frames, max_batches=None, val_batches=None)
    drive.batch_size = 1
    cfg.stages = [drive]
    lines: list[str] = []
    train(cfg, smoke_data, tmp_path / "run", device="cpu", log=lines.append)
    store = ClipStore(smoke_data)
    # every training recording is one window (the drive whole, each clip whole) and one batch of 1
    n_train = len(store.clips(split="train"))
    chunks = sum(len(range(0, len(c), drive.bptt or len(c))) for c in store.clips(split="train"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    assert len(events.Scalars("drive/train_total")) == chunks > n_train  # one step per bptt chunk, drives included


def test_init_from_starts_the_first_stage_from_a_weights_folder(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    from perception.weights import save_weights

    cfg = default_config("lite", "smoke")
    cfg.stages = [dataclasses.replace(cfg.stage("drive"), max_batches=1)]
    torch.manual_seed(123)  # other weights than the run's own seeded initialisation
    start = build_model(cfg.preset)
    save_weights(start, tmp_path / "start", input_size=cfg.size)
    lines: list[str] = []
    after = train(cfg, smoke_data, tmp_path / "run", device="cpu", init_from=tmp_path / "start", log=lines.append)
    ego = [k for k in start.state_dict() if k.startswith("ego_motion_filter.")]
    assert all(torch.equal(start.state_dict()[k], after.state_dict()[k]) for k in ego)  # loaded, then kept frozen
    assert any("starting from the weights in" in line for line in lines)


@pytest.mark.parametrize("drive", ["approach", "follow", "crossing", "close_crossing"])
def test_late_braking_drives_are_recorded_per_town_and_read_as_episode_style(
    tmp_path: Path, monkeypatch, drive: str
) -> None:
    from carla_gym import training_data

    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    cfg = default_config("lite", "smoke")
    cfg.size, cfg.frames, cfg.episodes = (16, 32), 2, EpisodeData(drive_frames=3, **{drive: 1})
    assert cfg.episodes.long_frames == 3
    root = training_data.record(cfg, "embedded")
    assert root.name.endswith(f"-1x3{drive}-seed0")
    store = ClipStore(root)
    for split in ("train", "val"):
        drives = [c for c in store.clips(split=split) if c.path.name.startswith(f"{drive}_")]
        assert sorted(c.meta.town for c in drives) == sorted({c.meta.town for c in store.clips(split=split)})
        assert all(len(c) == 3 and c.meta.extra["drive"] == drive for c in drives)
    assert not any(c.path.name.startswith(f"{drive}_") for c in store.clips(split="test"))
    seg = cfg.stage("seg")
    assert any(c.meta.extra["drive"] == drive for c in stage_clips(store, seg, "train", None))
    warmup_only = dataclasses.replace(seg, episode_recordings=False)
    assert not any(c.meta.extra["drive"] == drive for c in stage_clips(store, warmup_only, "train", None))
