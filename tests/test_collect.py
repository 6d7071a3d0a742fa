"""`python -m carla_gym.collect`: writes readable clips, resumes, summarises classes."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from carla_gym import collect, datasets
from carla_gym.sim.contract import CROSSING_M
from perception.conventions import CLASS_IDS
from perception.data.clips import ClipStore


def test_collect_writes_readable_clips_and_resumes(tmp_path, capsys):
    argv = [
        "--towns",
        "grid_suburb,harbour_district",
        "--clips",
        "2",
        "--frames",
        "3",
        "--size",
        "32x64",
        "--out",
        str(tmp_path),
        "--seed",
        "5",
        "--warmup",
        "2",
    ]
    assert collect.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 clip(s) written" in out and "Road" in out and "harbour_district" in out

    store = ClipStore(tmp_path)
    clips = store.clips()
    assert len(clips) == 4
    assert {c.meta.split for c in clips} == {"train", "test"}
    clip = store.clips(towns=["harbour_district"])[0]
    assert clip.meta.backend == "embedded" and (clip.meta.height, clip.meta.width) == (32, 64) and len(clip) == 3
    frame = clip.frame(2)
    assert frame["rgb"].shape == (32, 64, 3) and frame["semantic"].max() < 22
    assert (frame["semantic"] == CLASS_IDS["Road"]).any()
    sky = frame["semantic"] == CLASS_IDS["Sky"]
    np.testing.assert_allclose(frame["depth"][sky], 1000.0, rtol=1e-6)
    poses = [clip.frame(i)["pose"] for i in range(3)]
    assert np.linalg.norm(poses[2][:3, 3] - poses[0][:3, 3]) > 0.1  # the ego drives during the clip

    # Resume: remove one clip, leave a half-written one; a re-run redoes exactly those.
    victim = tmp_path / "grid_suburb" / "clip_0001"
    before = (victim / "rgb" / "000001.png").read_bytes()
    for p in sorted(victim.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    victim.rmdir()
    (tmp_path / "grid_suburb" / ".clip_0000.partial").mkdir()
    mtime = os.path.getmtime(tmp_path / "harbour_district" / "clip_0000" / "meta.json")
    assert collect.main(argv) == 0
    out = capsys.readouterr().out
    assert "1 clip(s) written" in out
    assert (victim / "rgb" / "000001.png").read_bytes() == before  # same seed -> same clip
    assert os.path.getmtime(tmp_path / "harbour_district" / "clip_0000" / "meta.json") == mtime
    assert len(ClipStore(tmp_path).clips()) == 4


def test_collect_split_and_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        collect.main(["--size", "128by256"])
    assert datasets.parse_size("128x256") == (128, 256)
    assert datasets.default_root().name == "clips"
    assert (
        collect.main([*"--split val --clips 1 --frames 1 --size 16x32 --warmup 0".split(), "--out", str(tmp_path)]) == 0
    )
    assert [c.meta.town for c in ClipStore(tmp_path).clips()] == ["market_crossroads"]
    # random towns can be labelled as training data; a named town keeps its own split
    assert (
        collect.main(
            [*"--towns 1003 --split train --clips 1 --frames 1 --size 16x32 --warmup 0".split(), "--out", str(tmp_path)]
        )
        == 0
    )
    assert [c.meta.split for c in ClipStore(tmp_path).clips(towns=["seed_1003"])] == ["train"]
    with pytest.raises(SystemExit, match="'harbour_district' belongs to the 'test' split"):
        collect.main(["--towns", "harbour_district", "--split", "train", "--out", str(tmp_path)])


def test_episode_drive_records_from_the_first_tick(tmp_path, capsys):
    """--drive episode: frame 0 is the reset frame (ego at rest), the route outlasts the drive, and its
    meta says how it was driven; a warm-up clip of the same index drives elsewhere."""
    from carla_gym.sim import make_backend

    argv = [
        "--towns",
        "harbour_district",
        "--clips",
        "1",
        "--frames",
        "4",
        "--size",
        "16x32",
        "--out",
        str(tmp_path),
        "--seed",
        "3",
        "--drive",
        "episode",
    ]
    assert collect.main(argv) == 0
    clip = ClipStore(tmp_path).clips()[0]
    assert clip.path.name == "episode_0000" and len(clip) == 4
    assert clip.meta.extra["drive"] == "episode" and clip.meta.extra["warmup"] == 0
    assert clip.meta.extra["route_length"] == datasets.episode_route_length(4, 1, 0.1) == datasets.EPISODE_ROUTE_LENGTH
    seed = datasets.clip_seed(3, "harbour_district", 0, "episode")
    assert clip.meta.seed == seed != datasets.clip_seed(3, "harbour_district", 0)
    backend = make_backend("embedded", town="harbour_district", size=(16, 32))
    try:
        first = backend.reset(seed=seed, options={"route_length": clip.meta.extra["route_length"]})
    finally:
        backend.close()
    assert first.speed == 0.0
    np.testing.assert_allclose(clip.poses[0], first.camera_to_world)  # recorded from the reset frame
    np.testing.assert_array_equal(clip.frame(0)["semantic"], first.semantic)
    assert np.linalg.norm(clip.poses[1][:3, 3] - clip.poses[0][:3, 3]) < 0.05  # the first step starts from rest
    # a long drive gets a route it cannot finish at the autopilot's speeds
    assert datasets.episode_route_length(1000, 1, 0.1) >= datasets.ROUTE_SPEED_BOUND * 100.0

    # the same folder recorded again as warm-up clips named episode_: the difference is named, nothing changes
    with pytest.raises(SystemExit, match="drive: 'episode' on disk vs 'warmup' requested"):
        collect.main([*argv[:-2], "--name", "episode"])
    with pytest.raises(SystemExit, match="--drive episode records from the first tick"):
        collect.main([*argv, "--warmup", "5"])
    with pytest.raises(SystemExit, match="--name"):
        collect.main([*argv, "--name", "../x"])


@pytest.mark.parametrize(
    ("drive", "option", "metres"),
    [
        ("episode", None, None),
        ("approach", None, None),
        ("follow", "lead_m", (15.0, 40.0)),
        ("crossing", "crossing_m", (10.0, 40.0)),
        ("close_crossing", "crossing_m", (4.0, 10.0)),
    ],
)
def test_placed_actor_draws_its_distance_from_the_clip_seed(drive, option, metres):
    drawn = [datasets.placed_actor(drive, seed) for seed in range(20)]
    if option is None:
        assert drawn == [{}] * 20
        return
    values = [d[option] for d in drawn]
    assert all(list(d) == [option] for d in drawn) and all(metres[0] <= v <= metres[1] for v in values)
    assert len(set(values)) == 20 and datasets.placed_actor(drive, 3) == drawn[3]  # per clip, repeatable


def test_placed_m_narrows_where_the_road_user_is_placed(tmp_path):
    drawn = [datasets.placed_actor("crossing", seed, (4.0, 6.0))["crossing_m"] for seed in range(20)]
    assert all(4.0 <= v <= 6.0 for v in drawn) and len(set(drawn)) == 20
    argv = ["--towns", "harbour_district", "--clips", "1", "--frames", "2", "--camera-size", "16", "32"]
    assert collect.main([*argv, "--out", str(tmp_path), "--drive", "crossing", "--placed-m", "4", "6"]) == 0
    assert ClipStore(tmp_path).clips()[0].meta.extra["crossing_m"] == [4.0, 6.0]  # another range is a mismatch
    with pytest.raises(SystemExit, match=re.escape("extra.crossing_m: [4.0, 6.0] on disk vs [10.0, 40.0] requested")):
        collect.main([*argv, "--out", str(tmp_path), "--drive", "crossing"])


@pytest.mark.parametrize(
    ("drive", "placed_m", "needle"),
    [
        (
            "episode",
            (4.0, 6.0),
            "--placed-m: only follow, crossing, close_crossing drives place a road user, not episode",
        ),
        ("crossing", (6.0, 4.0), "--placed-m 6 4: need 0 < LOW <= HIGH metres"),
        ("follow", (0.0, 4.0), "--placed-m 0 4: need 0 < LOW <= HIGH metres"),
    ],
)
def test_bad_placed_m_is_named(drive, placed_m, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        datasets.RecordingConfig(drive=drive, placed_m=placed_m)


@pytest.mark.parametrize("drive", ["approach", "follow", "crossing", "close_crossing"])
def test_late_braking_drive_records_from_the_first_tick_and_needs_the_embedded_backend(tmp_path, drive):
    argv = ["--towns", "harbour_district", "--clips", "1", "--frames", "3", "--camera-size", "16", "32"]
    assert collect.main([*argv, "--out", str(tmp_path), "--drive", drive]) == 0
    clip = ClipStore(tmp_path).clips()[0]
    assert clip.path.name == f"{drive}_0000" and len(clip) == 3
    assert clip.meta.extra["drive"] == drive and clip.meta.extra["warmup"] == 0
    assert clip.meta.seed == datasets.clip_seed(0, "harbour_district", 0, drive)
    assert datasets.APPROACH_MARGIN_M[0] <= datasets.approach_margin(clip.meta.seed) <= datasets.APPROACH_MARGIN_M[1]
    # A follow or crossing drive's meta.json records where its actor is placed, so a change of the recipe is a
    # mismatch.
    placed = {
        "follow": {"lead_m": list(datasets.FOLLOW_LEAD_M)},
        "crossing": {"crossing_m": list(CROSSING_M)},
        "close_crossing": {"crossing_m": list(datasets.CLOSE_CROSSING_M)},
    }
    assert {k: v for k, v in clip.meta.extra.items() if k.endswith("_m")} == placed.get(drive, {})
    with pytest.raises(SystemExit, match=f"--drive {drive}: the carla backend"):
        collect.main([*argv, "--out", str(tmp_path / "carla"), "--backend", "carla", "--drive", drive])
    assert not (tmp_path / "carla").exists()
