"""`python -m carla_gym.collect`: writes readable clips, resumes, summarises classes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from carla_gym import collect
from perception.conventions import CLASS_IDS
from perception.data.clips import ClipStore


def test_collect_writes_readable_clips_and_resumes(tmp_path, capsys):
    argv = ["--towns", "grid_suburb,harbour_district", "--clips", "2", "--frames", "3", "--size", "32x64",
            "--out", str(tmp_path), "--seed", "5", "--warmup", "2"]
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
    assert collect.parse_size("128x256") == (128, 256)
    assert collect.default_root().name == "clips"
    assert collect.main(["--split", "val", "--clips", "1", "--frames", "1", "--size", "16x32", "--out", str(tmp_path),
                         "--warmup", "0"]) == 0
    assert [c.meta.town for c in ClipStore(tmp_path).clips()] == ["market_crossroads"]
    # random towns can be labelled as training data; a named town keeps its own split
    assert collect.main(["--towns", "1003", "--split", "train", "--clips", "1", "--frames", "1", "--size", "16x32",
                         "--out", str(tmp_path), "--warmup", "0"]) == 0
    assert [c.meta.split for c in ClipStore(tmp_path).clips(towns=["seed_1003"])] == ["train"]
    with pytest.raises(SystemExit, match="'harbour_district' belongs to the 'test' split"):
        collect.main(["--towns", "harbour_district", "--split", "train", "--out", str(tmp_path)])
