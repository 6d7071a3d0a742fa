"""`python -m carla_gym.evaluate_perception`: the report on any clip folder, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from carla_gym import evaluate_perception
from perception import build_model, save_weights
from perception.data import ClipStore
from perception.training.evaluation import load_clip, predict_clip


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_weights(build_model("lite"), tmp_path_factory.mktemp("w") / "weights", input_size=(64, 128))


def test_report_on_clip_folder(smoke_data: Path, weights: Path, tmp_path: Path, one_thread) -> None:
    out = tmp_path / "eval"
    assert (
        evaluate_perception.main([str(weights), "--data", str(smoke_data), "--out", str(out), "--device", "cpu"]) == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["weights_config"]["preset"] == "lite"
    assert set(report["results"]) == {"clean", "noise", "lighting_drift", "clutter"}
    clean = report["results"]["clean"]
    assert clean["temporal"]["ego_motion"]["clips"] == 1
    assert 0.0 <= clean["per_frame"]["temporal"]["tc_ceiling"] <= 1.0
    for condition, lead in report["temporal_vs_per_frame"].items():  # the lead is the two modes' mIoU difference
        modes = report["results"][condition]
        assert lead["miou"] == pytest.approx(modes["temporal"]["miou"] - modes["per_frame"]["miou"])
        assert lead["clips"] == 1 and lead["miou_ci95"] == pytest.approx([lead["miou"]] * 2)  # one clip: no spread
    assert (out / "pictures" / "segmentation_per_frame_vs_temporal.gif").is_file()
    ply = (out / "pictures" / "point_cloud.ply").read_text().splitlines()
    assert ply[0] == "ply" and int(ply[2].split()[-1]) == len(ply) - ply.index("end_header") - 1


def test_baseline_resets_state_temporal_carries_it(smoke_data: Path, weights: Path, one_thread) -> None:
    """Same weights, two modes: the first frame agrees, later frames differ once the state is carried."""
    from perception import load_weights

    model = load_weights(weights)
    item = load_clip(ClipStore(smoke_data).clips(split="test")[0])
    x = item["rgb"].float() / 255.0
    a = predict_clip(model, x, "per_frame", torch.device("cpu"))
    b = predict_clip(model, x, "temporal", torch.device("cpu"))
    torch.testing.assert_close(a["depth"][0], b["depth"][0])
    # the tiny model's depth barely moves with its state, so any change counts (reset every frame, the same
    # computation would give the same numbers bit for bit)
    assert not torch.equal(a["depth"][1:], b["depth"][1:])
    assert a["pose6"].shape == b["pose6"].shape == (x.shape[0] - 1, 6)


def test_errors_are_one_line(smoke_data: Path, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, needle in [
        ([str(tmp_path / "nope"), "--data", str(smoke_data)], "nope"),
        ([str(weights), "--data", str(tmp_path / "nodata")], "nodata"),
        ([str(weights), "--data", str(smoke_data), "--split", "holdout"], "holdout"),
    ]:
        with pytest.raises(SystemExit) as e:
            evaluate_perception.main([*argv, "--out", str(tmp_path / "o")])
        assert e.value.code == 2
        assert needle in capsys.readouterr().err


def test_long_drives_section(
    smoke_data: Path,
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    one_thread,
) -> None:
    """--long-drives records episode-style test-town drives at the weights' size and adds their section and table."""
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    argv = [
        str(weights),
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-corruptions",
        "--long-drives",
        "2",
        "--drive-frames",
        "12",
        "--drive-block",
        "5",
    ]
    assert evaluate_perception.main(argv) == 0
    assert "temporal ahead in" in capsys.readouterr().out
    section = json.loads((out / "report.json").read_text())["long_drives"]
    assert section["drives"] == 2 and section["frames"] == [12, 12]
    assert [r["frames"] for r in section["blocks"]] == [[0, 5], [5, 10], [10, 12]]
    assert set(section["ego_motion"]) == {"standing", "starting", "moving"}
    assert section["ego_motion"]["starting"]["pairs"] >= 2  # each drive starts from rest
    drives = sorted((tmp_path / "cache" / "drives").glob("*/harbour_district/drive_*"))
    assert [d.name for d in drives] == ["drive_0000", "drive_0001"]
    assert json.loads((drives[0] / "meta.json").read_text())["height"] == 64


@pytest.mark.parametrize("option, needle", [(["--drive-block", "0"], "block"), (["--drive-frames", "1"], "frames")])
def test_bad_long_drive_options(
    smoke_data: Path, weights: Path, tmp_path: Path, option: list, needle: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as e:
        evaluate_perception.main(
            [str(weights), "--data", str(smoke_data), "--out", str(tmp_path), "--long-drives", "1", *option]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and not (tmp_path / "report.json").exists()
