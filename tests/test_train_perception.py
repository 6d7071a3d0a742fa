"""`python -m carla_gym.train_perception`: smoke profile end to end, resume, bad input, per-stage learning, DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from carla_gym import train_perception
from carla_gym.sim import backend_class
from perception import build_model
from perception.conventions import CLASS_IDS, matrix_to_pose6
from perception.data import ClipWindows
from perception.losses import depth_loss, near_pixel_weights, pose_loss
from perception.training import STAGE_NAMES, StageConfig, default_config, train
from perception.training.loop import bptt_chunks, is_better, prepare_rgb, stage_loss, window_slice
from perception.training.stages import param_groups, set_trainable

REPO = Path(__file__).resolve().parents[1]


def test_smoke_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    """record -> 4 stages -> weights -> report.json with every section, pictures, TensorBoard, checkpoint."""
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert train_perception.main(["--profile", "smoke", "--out", str(out), "--device", "cpu"]) == 0
    config = json.loads((out / "weights" / "config.json").read_text())
    assert config["preset"] == "lite" and config["training_data"]["towns"]["test"]
    assert "miou" in config["metrics"]["test"]["temporal"]
    assert (out / "weights" / "model.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["weights_config"]["preset"] == "lite"
    assert set(report["results"]) == {"clean", "noise", "lighting_drift", "clutter"}
    for condition in report["results"].values():
        assert set(condition) == {"per_frame", "temporal"}
        for r in condition.values():
            assert {"pixel_accuracy", "miou", "iou", "depth", "ego_motion", "temporal"} <= set(r)
            assert "Road" in r["iou"]
            assert {"abs_rel", "rmse", "delta1"} <= set(r["depth"])
            assert {"translation_error_m", "rotation_error_deg", "ate_m"} <= set(r["ego_motion"])
            assert {"tc", "tc_ceiling", "flicker"} <= set(r["temporal"])
    assert {p.name for p in (out / "pictures").iterdir()} == {
        "segmentation_per_frame_vs_temporal.gif",
        "depth_pred_vs_true.png",
        "point_cloud.ply",
    }
    assert any((out / "tb").iterdir())
    assert (out / "checkpoints" / "last.pt").is_file()
    cached = [p.name for p in (tmp_path / "cache" / "clips").iterdir()]  # the world's version keys the clip cache
    version = backend_class("embedded").WORLD_VERSION
    assert cached == [f"embedded-v{version}-64x128-7f-1clips-ep1-1x10drive-seed0"]


def test_resume_gives_same_weights(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """A run stopped after 6 epochs (inside the drive stage) and resumed ends with the uninterrupted run's weights,
    and its weights' `train_seconds` counts the time before the stop too."""
    common = [
        "--profile",
        "smoke",
        "--data",
        str(smoke_data),
        "--epochs",
        "2,1,1,1,2",
        "--device",
        "cpu",
        "--no-eval",
        "--mirror",
        "--zoom",
        "1.5",
        "--close-pedestrian-weight",
        "4",
        "--close-road-user-depth-weight",
        "3",
    ]  # seeded mirroring (the default) and zooming included, close pedestrians and road users' depth weighted
    assert train_perception.main([*common, "--out", str(tmp_path / "a")]) == 0
    assert train_perception.main([*common, "--out", str(tmp_path / "b"), "--stop-after-epochs", "6"]) == 0
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["stage"], ckpt["epoch"]) == ("drive", 1)
    assert 0 < ckpt["seconds"] < 600
    ckpt["seconds"] = 10_000.0  # as if the calls before had taken that long
    torch.save(ckpt, tmp_path / "b" / "checkpoints" / "last.pt")
    assert train_perception.main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    config = json.loads((tmp_path / "b" / "weights" / "config.json").read_text())
    assert 10_000 < config["extra"]["train_seconds"] < 10_600
    a = load_file(str(tmp_path / "a" / "weights" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "weights" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_ctrl_c_names_the_checkpoint_that_resume_goes_on_from(
    smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, one_thread
) -> None:
    common = ["--profile", "smoke", "--data", str(smoke_data), "--epochs", "1,1,1,1,1", "--device", "cpu"]
    common += ["--no-eval", "--out", str(tmp_path)]
    log_line = train_perception.log_line

    def ctrl_c_in_depth(message: str) -> None:
        if message.startswith("depth epoch 1/"):
            raise KeyboardInterrupt
        log_line(message)

    monkeypatch.setattr(train_perception, "log_line", ctrl_c_in_depth)
    assert train_perception.main(common) == 130
    monkeypatch.undo()
    assert f"checkpointed in {tmp_path / 'checkpoints'}" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["stage"] == "seg"
    assert not (tmp_path / "weights").exists()
    assert train_perception.main([*common, "--resume"]) == 0
    assert "loaded checkpoint: stage 'seg'" in capsys.readouterr().out
    assert (tmp_path / "weights" / "model.safetensors").is_file()


def test_later_stage_reruns_from_the_stage_before(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """Each stage's end is kept; `--stages drive` on a finished run starts from the seq stage's end, not from the
    drive-trained weights, so with the same seed it gives the full run's weights again."""
    common = ["--profile", "smoke", "--data", str(smoke_data), "--device", "cpu", "--no-eval", "--out", str(tmp_path)]
    assert train_perception.main(common) == 0
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("after_*.pt"))
    assert kept == ["after_depth.pt", "after_drive.pt", "after_ego.pt", "after_seg.pt", "after_seq.pt"]
    assert torch.load(tmp_path / "checkpoints" / "after_seq.pt", weights_only=True)["stage"] == "seq"
    full = load_file(str(tmp_path / "weights" / "model.safetensors"))
    assert train_perception.main([*common, "--stages", "drive"]) == 0
    again = load_file(str(tmp_path / "weights" / "model.safetensors"))
    for k in full:
        torch.testing.assert_close(again[k], full[k], rtol=1e-4, atol=1e-5, msg=k)
    extra = json.loads((tmp_path / "weights" / "config.json").read_text())["extra"]
    before = extra["started_from"]  # the weights name the run the drive stage started from
    assert before["checkpoint"] == "after_seq.pt" and before["completed"] == ["seg", "depth", "ego", "seq"]
    assert [s["name"] for s in before["train_config"]["stages"]] == [*STAGE_NAMES]
    assert [s["name"] for s in extra["train_config"]["stages"]] == ["drive"] and before["train_seconds"] > 0


def test_fine_tuned_weights_name_every_command_of_their_recipe(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    common = ["--profile", "smoke", "--data", str(smoke_data), "--device", "cpu", "--no-eval"]
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    assert train_perception.main([*common, "--out", str(first)]) == 0
    tune = [*common, "--stages", "drive", "--epochs", "drive=1"]
    assert train_perception.main([*tune, "--init-from", str(first / "weights"), "--out", str(second)]) == 0
    assert train_perception.main([*tune, "--init-from", str(second / "weights"), "--out", str(third)]) == 0
    extra = json.loads((third / "weights" / "config.json").read_text())["extra"]
    assert f"--init-from {second / 'weights'}" in extra["command"]
    assert f"--init-from {first / 'weights'}" in extra["init_from"]["command"]
    root = extra["init_from"]["init_from"]
    assert f"--out {first}" in root["command"] and "init_from" not in root and root["train_seconds"] > 0
    assert "init_from" not in json.loads((first / "weights" / "config.json").read_text())["extra"]


def test_stage_ends_with_its_best_validation_epoch(
    smoke_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, one_thread
) -> None:
    """The seg stage keeps the epoch with the best validation mIoU (as logged), not simply the last one."""
    args = [
        "--profile",
        "smoke",
        "--data",
        str(smoke_data),
        "--device",
        "cpu",
        "--no-eval",
        "--out",
        str(tmp_path),
        "--stages",
        "seg",
        "--epochs",
        "seg=4",
        "--lr",
        "seg=1e-2",
    ]
    assert train_perception.main(args) == 0
    logged = [
        float(line.split("val_miou=")[1].split()[0])
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("seg epoch")
    ]
    assert len(logged) == 4
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert logged[best["epoch"] - 1] == max(logged)
    assert round(best["score"], 3) == max(logged)
    final = load_file(str(tmp_path / "weights" / "model.safetensors"))
    for k, v in best["model"].items():
        if k in final:
            torch.testing.assert_close(final[k].float(), v.float(), msg=k)


def test_stage_without_keep_best_ends_with_its_last_epoch(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """Two identical seg runs whose best epoch is not the last: with `keep_best` the run goes back to the best
    epoch, without it (the memory stages' setting) the run keeps what its last epoch trained."""
    final = {}
    for keep_best in (True, False):
        cfg = default_config("lite", "smoke")
        cfg.stages = [cfg.stage("seg")]
        cfg.stages[0].epochs, cfg.stages[0].lr, cfg.stages[0].keep_best = 4, 3e-2, keep_best
        cfg.zoom = 1.0  # the seeded trajectory below (best epoch before the last) was found without zoom, at this lr
        out = tmp_path / str(keep_best)
        model = train(cfg, smoke_data, out, device="cpu", log=lambda _: None)
        final[keep_best] = {k: v.clone() for k, v in model.state_dict().items()}
        assert (out / "checkpoints" / "best.pt").is_file() is keep_best
    best = torch.load(tmp_path / "True" / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] < 4  # the setting this test needs: the best epoch is not the last
    assert any(not torch.equal(final[True][k], final[False][k]) for k in final[True])
    assert [s.name for s in default_config("lite").stages if not s.keep_best] == ["seq", "drive"]
    assert all(s.keep_best for s in default_config("full").stages if not s.memory)


def test_crop_trains_on_boxes_and_validates_on_whole_frames(
    smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    """With `crop` the training batches are boxes of the crop's size, validation sees whole frames."""
    from perception.training import loop

    seen: list[tuple[int, ...]] = []

    def recording_loss(model, stage, x, batch, *args, **kwargs):
        seen.append(tuple(x.shape[-2:]))
        return stage_loss(model, stage, x, batch, *args, **kwargs)

    monkeypatch.setattr(loop, "stage_loss", recording_loss)
    cfg = default_config("lite", "smoke")
    cfg.stages = [cfg.stage("seg")]
    cfg.stages[0].epochs, cfg.stages[0].max_batches, cfg.stages[0].val_batches = 1, 2, 1
    cfg.crop = (32, 48)
    train(cfg, smoke_data, tmp_path / "run", device="cpu", log=lambda _: None)
    assert seen == [(32, 48), (32, 48), tuple(cfg.size)]  # two training batches, then one validation batch


@pytest.mark.parametrize(
    "score, best, higher, expected",
    [
        (0.5, 0.4, True, True),
        (0.4, 0.5, True, False),
        (0.4, 0.4, True, False),  # mIoU: a tie keeps the earlier epoch
        (0.1, 0.2, False, True),
        (0.2, 0.1, False, False),  # AbsRel, loss: lower is better
        (float("nan"), 0.2, False, False),
        (0.3, float("nan"), True, True),  # NaN never wins, anything beats it
    ],
)
def test_is_better(score: float, best: float, higher: bool, expected: bool) -> None:
    assert is_better(score, best, higher) is expected


@pytest.mark.parametrize("damage", ["missing_frame", "garbage_frame", "garbage_meta"])
def test_broken_clip_is_named(
    damage: str, smoke_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, one_thread
) -> None:
    """A missing or unreadable frame, or a bad meta.json, ends the run with a one-line error naming the clip."""
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    broken = min(data.glob("*/clip_0000"))
    if damage == "missing_frame":
        (broken / "rgb" / "000003.png").unlink()
    elif damage == "garbage_frame":  # found only when the frame is read (the class weights read frame 0)
        (broken / "rgb" / "000000.png").write_bytes(b"not a png")
    else:
        (broken / "meta.json").write_text("{ not json")
    with pytest.raises(SystemExit) as e:
        train_perception.main(
            ["--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "o"), "--device", "cpu"]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--stages", "seg,flow"], "unknown stage 'flow'"),
        (["--data", "/nonexistent/clips"], "/nonexistent/clips"),
        (["--epochs", "1,2"], "--epochs"),
        (["--lr", "1e-3,x,1,1,1"], "--lr"),
        (["--window", "1"], "--window 1"),
        (["--bptt", "1"], "--bptt 1"),
        (["--zoom", "0.5"], "--zoom 0.5"),
        (["--close-pedestrian-weight", "0"], "--close-pedestrian-weight 0.0: a loss weight must be above 0"),
        (["--close-road-user-depth-weight", "-1"], "--close-road-user-depth-weight"),
        (["--clutter", "0.25,0.25,0.25,0.25,1.5"], "at most 1"),
        (["--interpolate", "seq=0"], "--interpolate seq=0: the fraction must be above 0"),
        (["--frames", "7", "--window", "12"], "12-frame window is longer"),
        (["--crop", "64", "512"], "crop 64x512 is larger than the recorded frames"),
        (["--crop", "0", "64"], "--crop 0 64: a crop needs at least 1 pixel"),
    ],
)
def test_bad_arguments_one_line(argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        train_perception.main(["--profile", "smoke", "--out", str(tmp_path), *argv])
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_stage_overrides_from_the_command_line() -> None:
    """--lr, --clutter and --window reach the stages they name; the per-frame stages keep one-frame windows."""
    parser = train_perception.build_parser()
    args = parser.parse_args(
        [
            "--lr",
            "1e-3,2e-3,3e-4,3e-5,1e-5",
            "--clutter",
            "0.1,0.2,0.3,0.5,0.6",
            "--window",
            "10",
            "--stages",
            "seg,drive",
        ]
    )
    cfg = train_perception.make_config(args, parser)
    assert [(s.name, s.lr, s.clutter_p, s.window) for s in cfg.stages] == [
        ("seg", 1e-3, 0.1, 1),
        ("drive", 1e-5, 0.6, 10),
    ]


def test_bptt_chunks_carry_the_state_not_the_graph(smoke_data: Path, one_thread) -> None:
    """A 6-frame seq window in chunks of 4 and 2 frames: the second chunk continues from the first's (detached)
    state, so its outputs match the whole window's frames 4-5, its loss scores the pose pair across the border,
    and its gradient does not reach the first chunk's frames."""
    torch.manual_seed(0)
    stage = default_config("lite", "smoke").stage("seq")
    stage.window, stage.bptt, stage.pose_weight = 6, 4, 1.0
    assert bptt_chunks(stage) == [slice(0, 4), slice(4, 6)]
    model = build_model("lite").eval()
    ds = ClipWindows(smoke_data, window=6, split="train")
    batch = {k: torch.stack([ds[0][k]]) for k in ds[0]}
    x = prepare_rgb(batch["rgb"], None, 0).requires_grad_(True)
    whole = model(x)
    first, second = bptt_chunks(stage)
    _, _, out = stage_loss(model, stage, x[:, first], window_slice(batch, first), None, "silog")
    loss, parts, out2 = stage_loss(
        model, stage, x[:, second], window_slice(batch, second), None, "silog", out["state"].detach()
    )
    torch.testing.assert_close(out2["seg_logits"], whole["seg_logits"][:, 4:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out2["pose6"], whole["pose6"][:, 4:], rtol=1e-4, atol=1e-4)
    expected_pose = pose_loss(whole["pose6"][:, 4:].detach(), matrix_to_pose6(batch["rel_pose"][:, 4:]))
    assert parts["pose"] == pytest.approx(float(expected_pose), rel=1e-3)  # pairs (3, 4) and (4, 5)
    loss.backward()
    assert x.grad[:, :4].abs().sum() == 0 and x.grad[:, 4:].abs().sum() > 0
    assert [s.name for s in default_config("lite").stages if s.bptt] == ["drive"]


def test_bptt_run_takes_a_step_per_chunk(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """`--bptt 5` on the smoke profile's 10-frame drive windows: two optimizer steps per batch, against one for
    the whole window (the checkpoint counts them)."""
    steps = {}
    for extra in (["--bptt", "none"], ["--bptt", "5"]):
        out = tmp_path / extra[1]
        assert (
            train_perception.main(
                [
                    "--profile",
                    "smoke",
                    "--data",
                    str(smoke_data),
                    "--device",
                    "cpu",
                    "--no-eval",
                    "--stages",
                    "drive",
                    "--epochs",
                    "drive=1",
                    "--out",
                    str(out),
                    *extra,
                ]
            )
            == 0
        )
        steps[extra[1]] = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert steps == {"none": 2, "5": 4}  # the smoke profile's 2 batches per epoch


def _fixed_batch_losses(
    preset: str, data: Path, stage_name: str, steps: int, size: tuple[int, int] | None = None
) -> list[float]:
    """Losses of `steps` Adam steps of one stage on one fixed batch."""
    torch.manual_seed(0)
    cfg = default_config(preset, "smoke")
    stage = cfg.stage(stage_name)
    model = build_model(preset)
    ds = ClipWindows(data, window=stage.window, split="train")
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ds[0]}
    if size is not None:
        h, w = size
        batch["rgb"] = batch["rgb"][..., :h, :w]
        batch["semantic"], batch["depth"] = batch["semantic"][..., :h, :w], batch["depth"][..., :h, :w]
    params = set_trainable(model, stage.name)
    opt = torch.optim.Adam(params, lr=1e-3)
    x = prepare_rgb(batch["rgb"], None, 0)
    losses = []
    for _ in range(steps):
        loss, _, _ = stage_loss(model, stage, x, batch, None, "silog")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("stage", ["seg", "depth", "ego", "seq", "drive"])
def test_loss_decreases_on_fixed_batch(stage: str, smoke_data: Path, one_thread) -> None:
    losses = _fixed_batch_losses("lite", smoke_data, stage, 8)
    assert min(losses[-3:]) < losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["seg", "depth", "ego", "seq"])
def test_full_preset_one_step_per_stage(stage: str, smoke_data: Path) -> None:
    """The `full` preset (ResNet50, 2048-channel ConvGRU) trains one step of each stage at a tiny input."""
    losses = _fixed_batch_losses("full", smoke_data, stage, 2, size=(32, 64))
    assert all(torch.isfinite(torch.tensor(losses)))


def test_torchrun_two_cpu_processes(smoke_data: Path, tmp_path: Path) -> None:
    """Data-parallel smoke run: 2 CPU processes (gloo) under torchrun, weights written by rank 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "carla_gym.train_perception",
        "--profile",
        "smoke",
        "--data",
        str(smoke_data),
        "--out",
        str(tmp_path / "ddp"),
        "--device",
        "cpu",
        "--no-eval",
    ]
    result = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "weights" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "stage, expected",
    [
        (StageConfig("seg", 1, 8), True),
        (StageConfig("seg", 1, 4, window=2), True),
        (StageConfig("depth", 1, 4, window=3, depth_weight=1.0), True),
        (StageConfig("ego", 1, 4, window=6, seg_weight=0.0, pose_weight=1.0), False),
        (StageConfig("seq", 1, 2, window=20, pose_weight=1.0), False),
        (StageConfig("drive", 1, 2, window=300), False),
    ],
)
def test_only_stages_without_poses_or_memory_mirror_and_zoom(stage: StageConfig, expected: bool) -> None:
    assert stage.mirrors_and_zooms is expected


def test_a_seg_stage_on_short_windows_mirrors_and_zooms_whole_windows(
    smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    """A seg stage on 2-frame windows (the memory carried from the first frame to the second) gets the same seeded
    mirroring and zooming as one on single frames, one choice per window."""
    from perception.training import loop

    seen: dict[str, list[tuple[int, ...]]] = {"mirror": [], "zoom": []}
    for name, fn in (("mirror", loop.mirror_frames), ("zoom", loop.zoom_frames)):

        def record(batch: dict, *args: object, _name: str = name, _fn=fn, **kwargs: object) -> dict:
            seen[_name].append(tuple(batch["rgb"].shape))
            return _fn(batch, *args, **kwargs)

        monkeypatch.setattr(loop, f"{name}_frames", record)
    cfg = default_config("lite", "smoke")
    cfg.stages = [dataclasses.replace(cfg.stage("seg"), window=2, batch_size=2, max_batches=2)]
    train(cfg, smoke_data, tmp_path / "run", device="cpu", log=lambda _: None)
    assert seen["mirror"] and seen["zoom"]
    assert all(shape[:2] == (2, 2) for shape in seen["mirror"] + seen["zoom"])  # (batch, window, ...)


@pytest.mark.parametrize("memory_lr, rates", [(1.0, [1e-3]), (0.1, [1e-3, 1e-4]), (0.0, [1e-3])])
def test_memory_lr_scales_or_freezes_the_memory(memory_lr: float, rates: list[float]) -> None:
    model = build_model("lite")
    stage = StageConfig("seg", 1, 1, lr=1e-3, memory_lr=memory_lr)
    trainable = set_trainable(model, stage)
    groups = param_groups(model, stage)
    assert [g["lr"] for g in groups] == pytest.approx(rates)
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(map(id, trainable))  # each once
    memory = list(model.geometry_filter.convgru.parameters())
    assert all(p.requires_grad is (memory_lr > 0) for p in memory)
    if len(groups) == 2:
        assert {id(p) for p in groups[1]["params"]} == set(map(id, memory))


def test_a_stage_with_its_memory_frozen_leaves_it_unchanged(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    cfg = default_config("lite", "smoke")
    seg = dataclasses.replace(cfg.stage("seg"), memory_lr=0.0, max_batches=2)
    weights = {}
    for epochs in (0, 1):  # 0: the seeded initial weights
        cfg.stages = [dataclasses.replace(seg, epochs=epochs)]
        model = train(cfg, smoke_data, tmp_path / f"run{epochs}", device="cpu", log=lambda _: None)
        weights[epochs] = model.state_dict()
    memory = [k for k in weights[0] if k.startswith("geometry_filter.convgru.")]
    assert memory and all(torch.equal(weights[0][k], weights[1][k]) for k in memory)
    head = "geometry_filter.seg_head.head.head.weight"
    assert not torch.equal(weights[0][head], weights[1][head])  # the rest of the stage trained


def test_close_depth_weighting_weights_the_depth_loss_of_close_road_users(smoke_data: Path, one_thread) -> None:
    """The depth stage's loss with `close_depth` is the SILog weighted by `near_pixel_weights` on the road users."""
    torch.manual_seed(0)
    stage = default_config("lite", "smoke").stage("depth")
    model = build_model("lite").eval()
    ds = ClipWindows(smoke_data, window=1, split="train")
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ds[0]}
    x = prepare_rgb(batch["rgb"], None, 0)
    with torch.no_grad():
        _, plain, out = stage_loss(model, stage, x, batch, None, "silog")
        _, weighted, _ = stage_loss(model, stage, x, batch, None, "silog", close_depth=(10.0, 1000.0))
    sem, depth_m = batch["semantic"].flatten(0, 1), batch["depth"].flatten(0, 1)
    weights = near_pixel_weights(sem, depth_m, [CLASS_IDS["Vehicles"], CLASS_IDS["Pedestrian"]], 1000.0, 10.0)
    assert (weights > 1).any()  # the smoke clips show road users
    expected = depth_loss(out["log_depth"].flatten(0, 2), depth_m, "silog", pixel_weights=weights)
    assert weighted["depth"] == pytest.approx(float(expected), rel=1e-4)
    assert plain["depth"] == pytest.approx(float(depth_loss(out["log_depth"].flatten(0, 2), depth_m)), rel=1e-4)
    assert weighted["depth"] != pytest.approx(plain["depth"], rel=1e-3)
