"""Data on disk that is wrong in value, not only in form: non-finite weights and poses, meta.json fields of the
wrong type, clips recorded with other settings, damaged checkpoints and resumes with other settings, and where
the evaluation writes. Each must end with an error naming the file (and field) and change nothing on disk."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_frame
from safetensors.torch import load_file, save_file

from carla_gym import collect, evaluate_perception, train_perception
from carla_gym.recording import ClipWriter
from perception import WeightsError, build_model, load_weights, save_weights
from perception.data import ClipFormatError, ClipStore

pytestmark = pytest.mark.usefixtures("one_thread")


# --- weights: values, normalisation and preset ---------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_weights(build_model("lite"), tmp_path_factory.mktemp("w") / "mynet", input_size=(64, 128))


def _copy(src: Path, dst: Path, tensors: dict | None = None, config: dict | None = None) -> Path:
    dst.mkdir()
    if tensors is None:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    else:
        save_file(tensors, str(dst / "model.safetensors"))
    (dst / "config.json").write_text(json.dumps(config) if config is not None else (src / "config.json").read_text())
    return dst


@pytest.mark.parametrize(
    "value, name_end, message",
    [
        (float("nan"), ".weight", r"holds 1 NaN and 0 infinite"),
        (float("inf"), "bias", r"holds 0 NaN and 1 infinite"),
        (-1.0, "running_var", r"a variance\) has negative entries"),
    ],
)
def test_non_finite_tensor_is_named(weights: Path, tmp_path: Path, value: float, name_end: str, message: str) -> None:
    tensors = load_file(str(weights / "model.safetensors"))
    name = next(k for k, v in tensors.items() if k.endswith(name_end) and v.is_floating_point())
    tensors[name].view(-1)[0] = value
    folder = _copy(weights, tmp_path / "bad", tensors=tensors)
    with pytest.raises(WeightsError, match=message) as err:
        load_weights(folder)
    assert str(folder) in str(err.value) and repr(name) in str(err.value)


@pytest.mark.parametrize(
    "std, message",
    [
        ([0.229, 0.0, 0.225], "must be positive"),
        ([0.229, float("nan"), 0.225], "3 finite numbers"),
        ([0.229, 0.224], "3 finite numbers"),
        ("0.2", "3 finite numbers"),
    ],
)
def test_unusable_normalisation_is_named(weights: Path, tmp_path: Path, std, message: str) -> None:
    config = json.loads((weights / "config.json").read_text())
    config["normalization"]["std"] = std
    folder = _copy(weights, tmp_path / "bad", config=config)
    with pytest.raises(WeightsError, match=message) as err:
        load_weights(folder)
    assert "bad/config.json" in str(err.value) and "std" in str(err.value)


def test_preset_that_disagrees_with_the_tensors_is_said_so(weights: Path, tmp_path: Path) -> None:
    config = json.loads((weights / "config.json").read_text())
    with pytest.raises(WeightsError, match="'preset' is 'full' but 'architecture' describes 'lite'"):
        load_weights(_copy(weights, tmp_path / "a", config={**config, "preset": "full"}))
    config["architecture"]["embed_channels"] = 64  # a lite variant whose tensors have other shapes
    with pytest.raises(WeightsError, match="are not those of the network that config.json describes .preset 'lite'"):
        load_weights(_copy(weights, tmp_path / "b", config=config))


# --- clips: poses and meta.json values -----------------------------------------------------------------------


def _clip(root: Path) -> Path:
    with ClipWriter(
        root, "town_a", "clip_000", backend="test", fov=90.0, fixed_delta_seconds=0.1, split="train", seed=3
    ) as w:
        for i in range(3):
            w.write(make_frame(i))
    return root / "town_a" / "clip_000"


def _scaled(p: np.ndarray) -> np.ndarray:
    p[1, :3, :3] *= 1.01
    return p


def _reflected(p: np.ndarray) -> np.ndarray:
    p[1, :3, 0] *= -1.0
    return p


def _bottom(p: np.ndarray) -> np.ndarray:
    p[1, 3, 0] = 0.5
    return p


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: np.where(np.arange(16).reshape(4, 4) == 3, np.nan, p), "frame 0 holds NaN or inf"),
        (lambda p: np.concatenate([p[:2], np.full((1, 4, 4), np.inf)]), "frame 2 holds NaN or inf"),
        (_scaled, "frame 1 is not a rigid"),
        (_reflected, "frame 1 is not a rigid.*determinant -1"),
        (_bottom, "frame 1 is not a rigid"),
        (lambda p: p.reshape(3, 16), r"shape \(3, 16\)"),
        (lambda p: p.astype(str), "expected numbers"),
    ],
)
def test_bad_poses_are_named(tmp_path: Path, damage, message: str) -> None:
    path = _clip(tmp_path)
    poses = np.load(path / "poses.npy")
    np.save(path / "poses.npy", damage(poses.copy()))
    with pytest.raises(ClipFormatError, match=message) as err:
        ClipStore(tmp_path)
    assert "clip_000/poses.npy" in str(err.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("town", [1, 2]),
        ("backend", None),
        ("fov", 0),
        ("fov", 180.0),
        ("height", -4),
        ("width", 0),
        ("num_frames", 2.5),
        ("num_frames", True),
        ("fixed_delta_seconds", "0.1"),
        ("fixed_delta_seconds", 0.0),
        ("seed", "3"),
        ("split", 5),
        ("extra", []),
        ("classes", "Road"),
    ],
)
def test_meta_field_of_the_wrong_type_is_named(tmp_path: Path, field: str, value) -> None:
    path = _clip(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    meta[field] = value
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ClipFormatError, match=f"clip_000/meta.json: bad value in meta.json: field '{field}'"):
        ClipStore(tmp_path)


def test_valid_meta_keeps_its_values(tmp_path: Path) -> None:
    _clip(tmp_path)
    meta = ClipStore(tmp_path).clips()[0].meta
    assert (meta.town, meta.num_frames, meta.height, meta.width, meta.fov, meta.seed) == ("town_a", 3, 8, 16, 90.0, 3)
    assert isinstance(meta.fov, float) and isinstance(meta.classes, tuple)


# --- collect: resuming into a folder of clips recorded otherwise ---------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in sorted(root.rglob("*"))}


def test_collect_refuses_clips_recorded_with_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--towns", "grid_suburb", "--clips", "1", "--out", str(tmp_path), "--warmup", "0"]
    assert collect.main([*common, "--frames", "2", "--size", "16x32"]) == 0
    before = _snapshot(tmp_path)
    clip = tmp_path / "grid_suburb" / "clip_0000"
    for other, needles in [
        (
            ["--frames", "2", "--size", "8x16"],
            ["height: 16 on disk vs 8 requested", "width: 32 on disk vs 16 requested"],
        ),
        (["--frames", "3", "--size", "16x32"], ["num_frames: 2 on disk vs 3 requested"]),
        (["--frames", "2", "--size", "16x32", "--fov", "60"], ["fov: 90.0 on disk vs 60.0 requested"]),
        (["--frames", "2", "--size", "16x32", "--seed", "1"], ["seed: "]),
        (["--frames", "2", "--size", "16x32", "--every", "2"], ["extra.every: 1 on disk vs 2 requested"]),
    ]:
        with pytest.raises(SystemExit) as e:
            collect.main([*common, *other])
        message = str(e.value.code)
        assert str(clip) in message and "another --out" in message and "delete" in message
        assert all(n in message for n in needles), message
        assert _snapshot(tmp_path) == before  # nothing recorded, deleted or overwritten
    assert collect.main([*common, "--frames", "2", "--size", "16x32"]) == 0  # the same settings: complete
    assert "0 clip(s) written" in capsys.readouterr().out
    assert json.loads((clip / "meta.json").read_text())["extra"]["world_version"] >= 1


def test_collect_names_a_clip_folder_without_meta(tmp_path: Path) -> None:
    stray = tmp_path / "grid_suburb" / "clip_0000"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        collect.main(
            [*"--towns grid_suburb --clips 1 --frames 1 --size 16x32 --warmup 0".split(), "--out", str(tmp_path)]
        )
    assert f"{stray} exists but holds no meta.json" in str(e.value.code) and "another --out" in str(e.value.code)
    assert [p.name for p in stray.iterdir()] == ["notes.txt"] and (stray / "notes.txt").read_text() == "mine"


# --- train_perception --resume: damaged checkpoints and other settings ----------------------------------------

SEG_ONLY = ["--profile", "smoke", "--device", "cpu", "--no-eval", "--stages", "seg", "--epochs", "seg=1"]


@pytest.fixture(scope="module")
def seg_run(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch seg-only smoke run."""
    out = tmp_path_factory.mktemp("run")
    assert train_perception.main([*SEG_ONLY, "--data", str(smoke_data), "--out", str(out)]) == 0
    return out


def _resume_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_perception.main([*argv, "--resume"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err
    return err


def _plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"stage": Path("seg")}, protocol=2))  # code torch will not run


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _without(key: str):
    def damage(path: Path) -> None:
        state = torch.load(path, weights_only=True)
        del state[key]
        torch.save(state, path)

    return damage


def _other_network(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model"] = build_model("lite", num_classes=5).state_dict()
    torch.save(state, path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b""), "empty or cut short"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "damaged or not a checkpoint"),
        (_truncated, "damaged or not a checkpoint"),
        (_plain_pickle, "not only tensors and plain data"),
        (_without("model"), "lacks the entries model"),
        (_without("optimizer"), "lacks the entries optimizer"),
        (_other_network, "not those of this network"),
    ],
)
def test_damaged_checkpoint_is_named_and_kept(
    seg_run: Path, smoke_data: Path, tmp_path: Path, damage, message: str, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    shutil.copytree(seg_run, out)
    last = out / "checkpoints" / "last.pt"
    damage(last)
    kept = _snapshot(out)
    err = _resume_error([*SEG_ONLY, "--data", str(smoke_data), "--out", str(out)], capsys)
    assert str(last) in err and message in err and "Delete that file" in err and "new --out" in err
    assert _snapshot(out) == kept  # the failed run changed nothing


def test_resume_with_other_settings_is_refused(
    seg_run: Path, smoke_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    kept = _snapshot(seg_run)
    base = [*SEG_ONLY, "--out", str(seg_run)]
    err = _resume_error(
        [
            *base,
            "--data",
            str(smoke_data),
            "--lr",
            "1e-3,3e-4,3e-4,3e-4,3e-4",
            "--batch-size",
            "3,2,2,1,1",
            "--seed",
            "4",
        ],
        capsys,
    )
    for needle in [
        "stages.seg.lr: 0.0003 stored vs 0.001 now",
        "stages.seg.batch_size: 2 stored vs 3 now",
        "seed: 0 stored vs 4 now",
        "another --out",
        "last.pt",
    ]:
        assert needle in err, err
    assert "depth" not in err  # the stages this run does not train are not compared
    err = _resume_error([*base, "--data", str(smoke_data), "--stages", "seg,depth"], capsys)
    assert "stages: ['seg'] stored vs ['seg', 'depth'] now" in err
    other = tmp_path / "other"
    shutil.copytree(smoke_data, other)
    train_town = next(c.path.parent for c in ClipStore(other).clips(split="train"))
    shutil.rmtree(train_town)
    err = _resume_error([*base, "--data", str(other)], capsys)
    assert "data: " in err and str(other) in err and "not the same clips" in err
    assert _snapshot(seg_run) == kept
    # the same clips elsewhere and another worker count (nothing that changes results) resume
    same = tmp_path / "same"
    shutil.copytree(smoke_data, same)
    assert train_perception.main([*base, "--data", str(same), "--workers", "1", "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


# --- evaluate_perception: where the report goes ----------------------------------------------------------------


def test_evaluation_writes_under_the_working_folder(
    weights: Path, smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [str(weights), "--data", str(smoke_data), "--device", "cpu", "--no-corruptions", "--max-clips", "1"]
    assert evaluate_perception.main(argv) == 0
    assert (work / "perception_eval" / "mynet-test" / "report.json").is_file()
    assert sorted(p.name for p in weights.iterdir()) == ["config.json", "model.safetensors"]
    assert not (weights.parent / "eval-test").exists()


def test_evaluation_never_writes_into_the_package(
    weights: Path, smoke_data: Path, capsys: pytest.CaptureFixture
) -> None:
    package = Path(evaluate_perception.__file__).resolve().parent
    target = package / "weights" / "eval-all"
    with pytest.raises(SystemExit) as e:
        evaluate_perception.main([str(weights), "--data", str(smoke_data), "--out", str(target)])
    assert e.value.code == 2 and "inside the installed package" in capsys.readouterr().err
    assert not target.exists()
    assert (
        evaluate_perception.default_out(package / "weights" / "lite", "all")
        == Path.cwd() / "perception_eval" / "lite-all"
    )
