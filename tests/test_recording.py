import json
import os

import numpy as np
import pytest
from conftest import make_frame

from carla_gym.recording import ClipWriter, clip_is_complete
from perception.conventions import relative_pose
from perception.data import ClipFormatError, ClipStore, ClipWindows

STEP_M = 1000.0 / (256**3 - 1)


def record(root, frames, town="town_a", clip="clip_000", split="train"):
    with ClipWriter(root, town, clip, backend="test", fov=90.0, fixed_delta_seconds=0.1, split=split, seed=3) as w:
        for f in frames:
            w.write(f)
    return root / town / clip


def test_written_clip_reads_back_exactly(tmp_path, frames):
    path = record(tmp_path, frames)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["num_frames"] == 5 and (meta["height"], meta["width"]) == (8, 16) and len(meta["classes"]) == 22
    clip = ClipStore(tmp_path).clips(split="train")[0]
    for i, f in enumerate(frames):
        got = clip.frame(i)
        assert np.array_equal(got["rgb"], f.rgb)
        assert np.array_equal(got["semantic"], f.semantic)
        assert np.abs(got["depth"] - f.depth).max() <= STEP_M
        assert np.array_equal(got["pose"], f.camera_to_world)


def test_interrupted_write_leaves_no_clip_and_resume_finishes_it(tmp_path, frames):
    with pytest.raises(RuntimeError, match="simulator died"):
        with ClipWriter(tmp_path, "town_a", "clip_000", backend="test", fov=90.0, fixed_delta_seconds=0.1) as w:
            w.write(frames[0])
            w.write(frames[1])
            raise RuntimeError("simulator died")
    assert not clip_is_complete(tmp_path, "town_a", "clip_000")
    assert os.listdir(tmp_path / "town_a") == []
    assert len(ClipStore(tmp_path)) == 0
    record(tmp_path, frames)  # the resumed run
    assert clip_is_complete(tmp_path, "town_a", "clip_000")
    assert len(ClipStore(tmp_path).clips()[0]) == 5


def test_killed_write_leftovers_are_ignored_and_replaced(tmp_path, frames):
    stale = tmp_path / "town_a" / ".clip_000.partial" / "rgb"
    stale.mkdir(parents=True)
    (stale.parent / "meta.json").write_text("{}")  # a killed process left this behind
    assert len(ClipStore(tmp_path)) == 0
    record(tmp_path, frames)
    assert not stale.parent.exists() and len(ClipStore(tmp_path)) == 1


def test_writer_refuses_to_overwrite_and_mixed_sizes(tmp_path, frames):
    record(tmp_path, frames)
    with pytest.raises(FileExistsError, match="clip_000"):
        ClipWriter(tmp_path, "town_a", "clip_000", backend="test", fov=90.0, fixed_delta_seconds=0.1)
    with pytest.raises(ValueError, match=r"frame 1 is \(4, 4\)"):
        record(tmp_path, [frames[0], make_frame(1, 4, 4)], clip="clip_001")
    assert not clip_is_complete(tmp_path, "town_a", "clip_001")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "meta.json").unlink(), None),  # no meta.json: not a clip, simply not listed
        (lambda p: (p / "meta.json").write_text("{not json"), "unreadable meta.json"),
        (lambda p: (p / "meta.json").write_text('{"backend": "x"}'), "lacks field"),
        (lambda p: (p / "depth" / "000003.png").unlink(), r"depth/000003.png: missing frame 3"),
        (lambda p: (p / "poses.npy").unlink(), "missing poses.npy"),
        (lambda p: np.save(p / "poses.npy", np.zeros((4, 4, 4))), r"shape \(4, 4, 4\), expected \(5, 4, 4\)"),
    ],
)
def test_broken_clip_store_names_clip_and_file(tmp_path, frames, damage, message):
    path = record(tmp_path, frames)
    damage(path)
    if message is None:
        assert len(ClipStore(tmp_path)) == 0
        return
    with pytest.raises(ClipFormatError, match=message) as err:
        ClipStore(tmp_path)
    assert "town_a/clip_000" in str(err.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "rgb" / "000002.png").write_bytes(b"not a png"), r"rgb/000002.png: missing or unreadable"),
        (
            lambda p: (p / "semantic" / "000002.png").write_bytes((p / "rgb" / "000000.png").read_bytes()),
            "single-channel",
        ),
    ],
)
def test_corrupt_frame_is_named_when_read(tmp_path, frames, damage, message):
    damage(record(tmp_path, frames))
    clip = ClipStore(tmp_path).clips()[0]
    clip.frame(1)
    with pytest.raises(ClipFormatError, match=message):
        clip.frame(2)


def test_windows_serve_pairs_and_windows_split_by_town(tmp_path, frames):
    record(tmp_path, frames, town="town_a", split="train")
    record(tmp_path, [make_frame(i, seed=9) for i in range(3)], town="town_b", split="test")
    train = ClipWindows(tmp_path, window=3, split="train")
    assert len(train) == 3  # starts 0, 1, 2 in a 5-frame clip
    item = train[1]
    assert item["rgb"].shape == (3, 3, 8, 16) and item["rgb"].dtype.is_floating_point is False
    assert item["semantic"].shape == (3, 8, 16) and item["depth"].shape == (3, 8, 16)
    assert np.allclose(item["rel_pose"][0].numpy(), np.eye(4))
    expected = relative_pose(frames[1].camera_to_world, frames[2].camera_to_world)
    assert np.allclose(item["rel_pose"][1].numpy(), expected, atol=1e-6)
    assert np.array_equal(item["rgb"][0].permute(1, 2, 0).numpy(), frames[1].rgb)
    pairs = ClipWindows(tmp_path, window=2, towns=["town_b"])
    assert len(pairs) == 2
    with pytest.raises(ValueError, match="no recorded clips for split='val'"):
        ClipWindows(tmp_path, split="val")
    with pytest.raises(ValueError, match="shorter than the window"):
        ClipWindows(tmp_path, window=6, towns=["town_b"])


def test_missing_root_is_named(tmp_path):
    with pytest.raises(ClipFormatError, match="no such clip folder"):
        ClipStore(tmp_path / "nowhere")


def test_meta_with_a_bad_value_is_named(tmp_path, frames):
    path = record(tmp_path, frames)
    meta = json.loads((path / "meta.json").read_text())
    meta["num_frames"] = "five"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ClipFormatError, match="clip_000/meta.json: bad value"):
        ClipStore(tmp_path)
