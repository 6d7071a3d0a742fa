"""Long-drive evaluation: blocks, motion states, the per-block lead, streaming, the report section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from carla_gym import train_perception, training_data
from carla_gym.recording import ClipWriter
from carla_gym.sim import Frame, Route, backend_class
from perception import build_model
from perception.conventions import CLASS_NAMES, intrinsics, pose6_to_matrix
from perception.data import ClipStore
from perception.metrics import confusion_matrix, miou_and_accuracy, recall_by_distance_counts
from perception.training.evaluation import (
    CHUNK,
    load_clip,
    predict_chunks,
    predict_clip,
)
from perception.training.long_drives import (
    DISTANCE_BANDS_M,
    DISTANCE_CLASSES,
    DRIVING_CLASSES,
    FEW_DRIVES,
    FEW_DRIVES_NOTE,
    MOVING,
    STANDING,
    STARTING,
    LongDriveConfig,
    blocks,
    evaluate_long_drives,
    long_drive_table,
    motion_states,
)
from perception.training.report import write_report

H, W = 32, 64


def poses_at(xs: list[float]) -> np.ndarray:
    """Camera poses moving along x to the given positions."""
    return np.stack([pose6_to_matrix(np.array([x, 0.0, 1.4, 0.0, 0.0, 0.0])) for x in xs])


@pytest.mark.parametrize(
    "frames, block, expected",
    [
        (25, 10, [(0, 10), (10, 20), (20, 25)]),
        (20, 10, [(0, 10), (10, 20)]),
        (3, 5, [(0, 3)]),
        (0, 5, []),
    ],
)
def test_blocks(frames: int, block: int, expected: list) -> None:
    assert blocks(frames, block) == expected


def test_motion_states_from_poses() -> None:
    # pairs: stand, stand, move x3 (the first two starting), stand, move (starting), move past 2 -> moving
    xs = [0.0, 0.0, 0.005, 1.0, 2.0, 3.0, 3.0, 3.5, 4.0, 4.5]
    got = motion_states(poses_at(xs), standing_m=0.01, starting_frames=2)
    assert got.tolist() == [STANDING, STANDING, STARTING, STARTING, MOVING, STANDING, STARTING, STARTING, MOVING]
    moving_from_start = poses_at([0.0, 1.0, 2.0, 3.0])
    assert motion_states(moving_from_start, starting_frames=2).tolist() == [MOVING] * 3  # warm-up clip: already moving
    assert motion_states(moving_from_start, starting_frames=2, starts_at_rest=True).tolist() == [
        STARTING,
        STARTING,
        MOVING,
    ]
    with pytest.raises(ValueError, match="shape"):
        motion_states(np.zeros((4, 3, 3)))


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"drives": -1}, "drives"),
        ({"frames": 1}, "frames"),
        ({"block": 0}, "block"),
        ({"standing_m": 0.0}, "standing_m"),
        ({"frames": 10, "block": 20}, "longer than"),
    ],
)
def test_long_drive_config_names_the_bad_option(options: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        LongDriveConfig(**options)


def write_drive(root: Path, name: str, xs: list[float], seed: int) -> None:
    """A synthetic drive: random images and labels (Road-heavy), the camera at the given x positions."""
    rng = np.random.default_rng(seed)
    with ClipWriter(
        root, "harbour_district", name, backend="embedded", fov=90.0, fixed_delta_seconds=0.1, split="test", seed=seed
    ) as writer:
        for i, x in enumerate(xs):
            pose = poses_at([x])[0]
            labels = np.where(rng.random((H, W)) < 0.5, 7, rng.integers(0, 22, (H, W))).astype(np.uint8)
            depth = rng.uniform(1.0, 50.0, (H, W)).astype(np.float32)
            depth[rng.random((H, W)) < 0.02] = 0.0  # pixels without a true depth, which have no AbsRel
            writer.write(
                Frame(
                    rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                    semantic=labels,
                    depth=depth,
                    camera_to_world=pose,
                    intrinsics=intrinsics(W, H, 90.0),
                    frame=i,
                    timestamp=0.1 * i,
                    speed=0.0,
                    transform=pose,
                    route=Route(waypoints=np.zeros((5, 2), np.float32), distance_left=1.0, length=1.0),
                )
            )


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("drives")
    lengths = (25, 25, 17)  # the last drive ends inside the second block
    for d, n in enumerate(lengths):
        xs = np.concatenate([np.zeros(4), np.cumsum(np.full(n - 4, 0.5))]).tolist()  # stands 4 frames, then drives
        write_drive(root, f"drive_{d:04d}", xs, seed=d)
    return ClipStore(root).clips()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("lite").eval()


def test_streamed_predictions_equal_whole_clip(drives: list, model: torch.nn.Module, one_thread) -> None:
    x = load_clip(drives[0])["rgb"].float() / 255.0
    for mode in ("per_frame", "temporal"):
        whole = predict_clip(model, x, mode, torch.device("cpu"))
        parts = list(predict_chunks(model, x.split(7), mode, torch.device("cpu")))  # other chunks than CHUNK
        assert [len(p["pose6"]) for p in parts] == [6, 7, 7, 4]  # pairs ending in each chunk
        torch.testing.assert_close(torch.cat([p["pose6"] for p in parts]), whole["pose6"], rtol=1e-4, atol=1e-5)
        same = (torch.cat([p["labels"] for p in parts]) == whole["labels"]).float().mean()
        assert same > 0.999  # chunking changes nothing but float rounding
    assert CHUNK != 7


def test_long_drive_scores(drives: list, model: torch.nn.Module, one_thread) -> None:
    section = evaluate_long_drives(model, drives, block=10, starting_frames=3)
    assert section["drives"] == 3 and section["frames"] == [25, 25, 17] and section["block"] == 10
    assert [r["frames"] for r in section["blocks"]] == [[0, 10], [10, 20], [20, 25]]
    assert [r["drives"] for r in section["blocks"]] == [3, 3, 2]  # the short drive has no third block
    # the block scores are those of the whole-clip predictions, and the lead is their difference
    predictions = {
        m: [predict_clip(model, load_clip(c)["rgb"].float() / 255.0, m, torch.device("cpu")) for c in drives]
        for m in ("per_frame", "temporal")
    }
    labels = {m: [p["labels"] for p in predictions[m]] for m in predictions}
    for row in section["blocks"]:
        s, e = row["frames"]
        for m in ("per_frame", "temporal"):
            cm = sum(
                confusion_matrix(lab[s:e], load_clip(c)["semantic"][s:e], 22)
                for lab, c in zip(labels[m], drives, strict=False)
            )
            assert row[m]["miou"] == pytest.approx(float(miou_and_accuracy(cm)[0]))
        lead = row["temporal_vs_per_frame"]
        assert lead["miou"] == pytest.approx(row["temporal"]["miou"] - row["per_frame"]["miou"])
        assert lead["clips"] == row["drives"] and lead["miou_ci95"][0] <= lead["miou_ci95"][1]
    overall = section["overall"]
    assert overall["temporal_vs_per_frame"]["miou"] == pytest.approx(
        overall["temporal"]["miou"] - overall["per_frame"]["miou"]
    )
    assert overall["temporal_ahead_blocks"] == sum(r["temporal_vs_per_frame"]["miou"] > 0 for r in section["blocks"])
    assert set(section["driving_classes"]["temporal"]) == set(DRIVING_CLASSES)
    by_distance = section["recall_by_distance"]
    assert by_distance["bands"] == ["0-5 m", "5-10 m", "10-20 m", "20-40 m", "40+ m"]
    road_users = [CLASS_NAMES.index(n) for n in DISTANCE_CLASSES]
    truth = [load_clip(c) for c in drives]
    for m in ("per_frame", "temporal"):
        counts = [
            recall_by_distance_counts(lab, t["semantic"], t["depth"], road_users, DISTANCE_BANDS_M)
            for lab, t in zip(labels[m], truth, strict=True)
        ]
        hits, totals = sum(h for h, _ in counts), sum(n for _, n in counts)
        assert by_distance["pixels"]["Vehicles"] == totals[0].tolist()
        assert by_distance[m]["Pedestrian"] == pytest.approx((hits[1] / totals[1]).tolist(), nan_ok=True)
        # precision: of the pixels predicted as the class, banded by their true depth, the share that are it
        lab, sem = np.concatenate(labels[m]).ravel(), np.concatenate([t["semantic"] for t in truth]).ravel()
        band = np.digitize(np.concatenate([t["depth"] for t in truth]).ravel(), DISTANCE_BANDS_M) - 1
        vehicles = CLASS_NAMES.index("Vehicles")
        predicted = np.bincount(band[lab == vehicles], minlength=5)[:5]
        right = np.bincount(band[(lab == vehicles) & (sem == vehicles)], minlength=5)[:5]
        precision = section["precision_by_distance"]
        assert precision["predicted_pixels"][m]["Vehicles"] == predicted.tolist()
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = [None if np.isnan(x) else pytest.approx(x) for x in right / predicted]  # the JSON's null
        assert precision[m]["Vehicles"] == expected
        # depth AbsRel on the class's true pixels, banded by their true depth
        pred_depth = np.concatenate([p["depth"].numpy() for p in predictions[m]]).ravel()
        true_depth = np.concatenate([t["depth"] for t in truth]).ravel()
        mine = (sem == vehicles) & (true_depth > 0)  # a pixel without a true depth has no AbsRel
        with np.errstate(invalid="ignore", divide="ignore"):
            abs_rel = np.abs(pred_depth - true_depth) / true_depth
            sums = np.bincount(band[mine], weights=abs_rel[mine], minlength=5)[:5]
            pixels = np.bincount(band[mine], minlength=5)[:5]
            expected = [None if np.isnan(x) else pytest.approx(x, rel=1e-4) for x in sums / pixels]
        assert section["depth_abs_rel_by_distance"][m]["Vehicles"] == expected
    ego = section["ego_motion"]
    # each drive: 3 standing pairs, then 3 starting pairs (at rest before), the rest moving
    assert {k: v["pairs"] for k, v in ego.items()} == {"standing": 9, "starting": 9, "moving": 24 + 24 + 16 - 9 - 9}
    assert ego["standing"]["true_translation_median_m"] == pytest.approx(0.0)
    assert ego["moving"]["true_translation_median_m"] == pytest.approx(0.5)
    for state in ego.values():
        assert state["per_frame"]["translation_error_m"] >= 0 and state["temporal"]["rotation_error_deg"] >= 0
    assert ego["standing"]["per_drive"]["pairs"] == [3, 3, 3]
    for state in ego.values():  # the drives' sums add up to the mean over all pairs in the state
        sums = state["per_drive"]["temporal_translation_error_sum_m"]
        assert sum(sums) / state["pairs"] == pytest.approx(state["temporal"]["translation_error_m"])
    table = long_drive_table(section)
    assert FEW_DRIVES_NOTE in table and FEW_DRIVES_NOTE not in long_drive_table({**section, "drives": FEW_DRIVES})
    assert "0-10" in table and "20-25" in table and "standing" in table and "Vehicles" in table
    assert "Pedestrian recall by true distance (0-5 m, 5-10 m, 10-20 m, 20-40 m, 40+ m)" in table
    assert "Vehicles precision by true distance: per_frame" in table
    assert "Pedestrian depth AbsRel by true distance: per_frame" in table


def test_report_has_long_drive_section(drives: list, model: torch.nn.Module, tmp_path: Path, one_thread) -> None:
    report = write_report(
        model,
        drives[:1],
        tmp_path,
        torch.device("cpu"),
        corruptions=(),
        long_drives=drives,
        drive_config=LongDriveConfig(drives=3, frames=25, block=10),
    )
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["long_drives"]["drives"] == 3 and len(on_disk["long_drives"]["blocks"]) == 3
    assert set(on_disk["results"]) == {"clean"} and report["long_drives"] == on_disk["long_drives"]


def test_training_records_episode_data_under_its_own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Episode-style clips and drives join the train and val towns, and the recipe names the cache folder."""
    from carla_gym.sim import backend_class
    from perception.training import EpisodeData, default_config

    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    monkeypatch.setattr(
        backend_class("embedded"),
        "SPLITS",  # one town per split keeps the test short
        {"train": ("grid_suburb",), "val": ("market_crossroads",), "test": ("harbour_district",)},
    )
    cfg = default_config("lite", "smoke")
    cfg.size, cfg.frames = (16, 32), 3
    assert EpisodeData().key == ""  # no episode data: the cache folder is named as before it existed
    cfg.episodes = EpisodeData(clips=1, drives=1, drive_frames=9)
    root = training_data.record(cfg, "embedded")
    assert root.name.endswith("-3f-1clips-ep1-1x9drive-seed0")
    store = ClipStore(root)
    for split in ("train", "val"):
        for town in {c.meta.town for c in store.clips(split=split)}:
            names = {c.path.name: c for c in store.clips(towns=[town])}
            assert set(names) == {"clip_0000", "episode_0000", "drive_0000"}
            assert len(names["drive_0000"]) == 9 and len(names["episode_0000"]) == cfg.frames
            assert names["drive_0000"].meta.extra["drive"] == names["episode_0000"].meta.extra["drive"] == "episode"
    assert {c.path.name for c in store.clips(split="test")} == {"clip_0000"}  # the clip tables stay comparable
    with pytest.raises(ValueError, match="drive_frames"):
        EpisodeData(drives=1, drive_frames=1)


@pytest.mark.parametrize(
    "option, needle",
    [
        (["--drive-block", "0"], "block"),
        (["--train-drive-frames", "1"], "drive_frames"),
        (["--eval-drives", "-1"], "drives"),
    ],
)
def test_training_rejects_bad_drive_options(
    option: list, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as e:
        train_perception.main(["--profile", "smoke", "--out", str(tmp_path / "run"), *option])
    assert e.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # stopped before recording or training


def test_approach_drives_benchmark_scores_each_weights_on_each_kind_of_drive(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    weights = root / "carla_gym" / "weights" / "lite"
    out = tmp_path / "probe.json"
    env = {**os.environ, "CARLA_GYM_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def benchmark(*argv: str) -> subprocess.CompletedProcess[str]:
        script = str(root / "benchmarks" / "approach_drives.py")
        return subprocess.run([sys.executable, script, *argv], env=env, capture_output=True, text=True, cwd=root)

    run = benchmark("--weights", str(weights), "--drives", "1", "--frames", "4", "--block", "2", "--json", str(out))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["split"] == "val" and result["command"].startswith("python benchmarks/approach_drives.py --weights")
    for kind in ("episode", "approach", "follow", "crossing", "close_crossing"):
        section = result["weights"][str(weights)][kind]
        assert section["drives"] == 1 and section["frames"] == [4] and len(section["blocks"]) == 2
        assert set(section["recall_by_distance"]["temporal"]) == {"Vehicles", "Pedestrian"}
    version = backend_class("embedded").WORLD_VERSION
    assert sorted(p.name for p in (tmp_path / "cache" / "drives").iterdir()) == [
        f"embedded-v{version}-128x256-4f-seed7-val",  # the report's validation drives: the same cache
        f"embedded-v{version}-approach-128x256-4f-seed7-val",
        f"embedded-v{version}-close_crossing-128x256-4f-seed7-val",
        f"embedded-v{version}-crossing-128x256-4f-seed7-val",
        f"embedded-v{version}-follow-128x256-4f-seed7-val",
    ]
    out.unlink()
    run = benchmark("--drives", "1", "--frames", "4", "--block", "2", "--kinds", "crossing", "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert list(json.loads(out.read_text())["weights"][str(weights)]) == ["crossing"]  # the bundled weights by default
    bad = benchmark("--weights", str(tmp_path))
    assert bad.returncode == 2 and f"not a weights folder (no config.json): {tmp_path}" in bad.stderr
    bad = benchmark("--kinds", "warmup")
    assert bad.returncode == 2 and "--kinds: invalid choice: 'warmup'" in bad.stderr
