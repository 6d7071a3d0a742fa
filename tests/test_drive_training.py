"""Training on long episode drives: which recordings each stage reads, the seq stage's memory-only training,
window checks, and the recipe's settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from perception import build_model
from perception.data import ClipStore, ClipWindows
from perception.training import EpisodeData, StageConfig, default_config, train
from perception.training.stages import trainable_parts


@pytest.mark.parametrize(
    "pose_weight, depth_weight, ego_trains, depth_trains",
    [(1.0, 1.0, True, True), (0.0, 1.0, False, True), (0.0, 0.0, False, False)],
)
def test_a_part_whose_loss_is_off_stays_frozen(
    pose_weight: float, depth_weight: float, ego_trains: bool, depth_trains: bool
) -> None:
    stage = StageConfig("seq", 1, 1, window=6, pose_weight=pose_weight, depth_weight=depth_weight)
    parts = trainable_parts(stage)
    assert ("ego_motion_filter" in parts) is ego_trains
    assert ("geometry_filter.depth_decoder" in parts) is depth_trains
    assert "geometry_filter.convgru" in parts  # the memory always trains in the seq stage
    assert trainable_parts("seq") == trainable_parts(StageConfig("seq", 1, 1, depth_weight=1, pose_weight=1))


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


def test_window_problems_name_the_stage_and_lengths() -> None:
    cfg = default_config("lite", "smoke")
    assert cfg.window_problems() == []
    cfg.episodes = EpisodeData(drives=0)
    assert cfg.window_problems() == ["stage 'seq': its 10-frame window is longer than its recordings (7 frames)"]
    cfg.stage("seq").epochs = 0  # a stage that does not run is not checked
    assert cfg.window_problems() == []


@pytest.mark.parametrize("preset, profile", [("lite", "default"), ("lite", "smoke")])
def test_recipes_train_the_memory_through_whole_drives(preset: str, profile: str) -> None:
    cfg = default_config(preset, profile)
    seq = cfg.stage("seq")
    assert cfg.episodes.drives > 0 and seq.window == seq.stride == cfg.episodes.drive_frames
    assert seq.bptt is not None and seq.bptt < seq.window and seq.pose_weight == 0
    assert [s.long_recordings for s in cfg.stages] == [False, False, True, True]
    assert cfg.window_problems() == []


def test_seq_stage_without_pose_loss_keeps_the_ego_filter(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    cfg = default_config("lite", "smoke")
    cfg.stages = [dataclasses.replace(cfg.stage("seq"), max_batches=1)]
    torch.manual_seed(cfg.seed)  # `train` builds its model after seeding the same way
    before = build_model(cfg.preset).state_dict()
    after = train(cfg, smoke_data, tmp_path / "run", device="cpu", log=lambda _: None).state_dict()
    ego = [k for k in before if k.startswith("ego_motion_filter.")]
    memory = [k for k in before if k.startswith("geometry_filter.convgru.") and before[k].is_floating_point()]
    assert ego and all(torch.equal(before[k], after[k]) for k in ego)
    assert any(not torch.equal(before[k], after[k]) for k in memory)


def test_init_from_starts_the_first_stage_from_a_weights_folder(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    from perception.weights import save_weights

    cfg = default_config("lite", "smoke")
    cfg.stages = [dataclasses.replace(cfg.stage("seq"), max_batches=1)]
    torch.manual_seed(123)  # other weights than the run's own seeded initialisation
    start = build_model(cfg.preset)
    save_weights(start, tmp_path / "start", input_size=cfg.size)
    lines: list[str] = []
    after = train(cfg, smoke_data, tmp_path / "run", device="cpu", init_from=tmp_path / "start", log=lines.append)
    ego = [k for k in start.state_dict() if k.startswith("ego_motion_filter.")]
    assert all(torch.equal(start.state_dict()[k], after.state_dict()[k]) for k in ego)  # loaded, then kept frozen
    assert any("starting from the weights in" in line for line in lines)
