"""The curriculum loop's pieces: which checkpoint a run starts from, validation scores, stopping and resuming a stage,
ending a stage between its start and its training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perception.models import build_model
from perception.training import StageConfig, TrainingError, default_config
from perception.training.checkpoint import (
    BEST_FILE,
    CHECKPOINT_FILE,
    save_checkpoint,
    stage_checkpoint_file,
)
from perception.training.loop import (
    Dist,
    RunContext,
    StageResult,
    Validation,
    check_inputs,
    interpolate_weights,
    lr_scheduler,
    run_stage,
    snapshot,
    starting_checkpoint,
)


def _state(stage: str, epoch: int) -> dict:
    """The smallest checkpoint `load_checkpoint` accepts."""
    return {
        "stage": stage,
        "epoch": epoch,
        "step": 0,
        "model": {"w": torch.zeros(1)},
        "optimizer": {},
        "scheduler": {},
        "completed": [],
    }


@pytest.mark.parametrize(
    "stages, resume, files, expected",
    [
        (["seg", "depth"], False, ["last.pt"], None),  # a fresh run from seg never loads weights
        (["seg", "depth"], True, ["last.pt"], "last.pt"),
        (["seg"], True, [], None),
        (["seq"], False, ["after_ego.pt", "last.pt"], "after_ego.pt"),  # the end of the stage before...
        (["seq"], False, ["last.pt"], "last.pt"),  # ...else the newest weights
        (["seq"], False, [], None),
        (["seq"], True, ["after_ego.pt", "last.pt"], "last.pt"),  # resuming always continues last.pt
        (["drive"], False, ["after_ego.pt", "after_seq.pt", "last.pt"], "after_seq.pt"),
    ],
)
def test_starting_checkpoint(
    stages: list[str], resume: bool, files: list[str], expected: str | None, tmp_path: Path
) -> None:
    for name in files:
        save_checkpoint(tmp_path, _state(name, 1), (name,))
    cfg = default_config("lite", "smoke")
    cfg.stages = [cfg.stage(s) for s in stages]
    ckpt, path = starting_checkpoint(cfg, tmp_path, resume)
    assert (None if ckpt is None else ckpt["stage"]) == expected
    assert path.name == (expected or CHECKPOINT_FILE)


@pytest.mark.parametrize("metric, expected", [("miou", 0.5), ("abs_rel", 0.2), ("loss", 1.5)])
def test_validation_score(metric: str, expected: float) -> None:
    assert Validation(loss=1.5, miou=0.5, abs_rel=0.2, image=None).score(metric) == expected


@pytest.mark.parametrize("stages, needle", [([], "no stages to run"), (["seg", "flow"], "unknown stage 'flow'")])
def test_check_inputs_names_bad_stages(stages: list[str], needle: str, tmp_path: Path) -> None:
    cfg = default_config("lite", "smoke")
    cfg.stages = [StageConfig(name=s, epochs=1, batch_size=1) for s in stages]
    with pytest.raises(TrainingError, match=needle):
        check_inputs(cfg, tmp_path)


def _seg_stage(
    data: Path, out: Path, budgets: list[int | None], interpolate: float = 1.0, schedule: str = "plateau"
) -> tuple[dict, dict, list[StageResult], list[dict]]:
    """The smoke profile's seg stage for 2 epochs at a high learning rate, run in calls of `budgets` epochs, each
    resuming from the checkpoint the call before left; returns the weights before and after, each call's result
    and the checkpoint each call left."""
    cfg = default_config("lite", "smoke")
    stage = cfg.stage("seg")
    stage.epochs, stage.lr, stage.interpolate, stage.schedule = 2, 1e-2, interpolate, schedule
    cfg.stages = [stage]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.preset)
    before = snapshot(model)
    ctx = RunContext(cfg, data, out, torch.device("cpu"), Dist(), None, None, lambda _: None, {"data": {}})
    ckpt, results, ckpts = None, [], []
    for budget in budgets:
        results.append(run_stage(model, stage, ctx, ckpt, [], budget))
        ckpt = torch.load(ctx.folder / CHECKPOINT_FILE, weights_only=True)
        ckpts.append(ckpt)
    return before, model.state_dict(), results, ckpts


def test_stage_stops_after_its_epoch_budget_and_resumes(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """A 2-epoch seg stage given 1 epoch stops unfinished after it; resumed from its checkpoint it trains the other
    one, restoring the step count, and ends with the same weights and best epoch as an uninterrupted stage."""
    final, best = {}, {}
    for name, budgets in (("whole", [None]), ("split", [1, None])):
        _, final[name], results, ckpts = _seg_stage(smoke_data, tmp_path / name, budgets)
        ckpt = ckpts[-1]
        expected = [StageResult(2, True)] if budgets == [None] else [StageResult(1, False), StageResult(1, True)]
        assert results == expected
        assert (ckpt["epoch"], ckpt["step"], ckpt["completed"]) == (2, 4, ["seg"])  # 2 batches per epoch
        assert 0.0 < ckpt["seconds"] < 3600.0  # the run's wall time, counted from the context's creation
        folder = tmp_path / name / "checkpoints"
        assert (folder / stage_checkpoint_file("seg")).is_file()
        best[name] = torch.load(folder / BEST_FILE, weights_only=True)["epoch"]
    assert best["whole"] == best["split"]
    for k, v in final["whole"].items():
        assert torch.equal(v, final["split"][k]), k


def test_interpolate_weights_moves_floats_and_keeps_counts() -> None:
    start = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    end = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(5)}
    mixed = interpolate_weights(start, end, 0.25)
    assert torch.equal(mixed["w"], torch.tensor([1.0, 3.0])) and mixed["n"].item() == 5
    assert torch.equal(interpolate_weights(start, end, 1.0)["w"], end["w"])


def test_interpolated_stage_ends_between_its_start_and_its_training_also_when_resumed(
    smoke_data: Path, tmp_path: Path, one_thread
) -> None:
    before, trained, _, _ = _seg_stage(smoke_data, tmp_path / "full", [None])
    _, half, _, (half_ckpt,) = _seg_stage(smoke_data, tmp_path / "half", [None], interpolate=0.5)
    _, resumed, _, (_, resumed_ckpt) = _seg_stage(smoke_data, tmp_path / "resumed", [1, None], interpolate=0.5)
    assert "stage_start" not in half_ckpt and "stage_start" not in resumed_ckpt  # only a stage in progress has it
    moved = [k for k, v in trained.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(half[k], (before[k] + trained[k]) / 2)
    for k, v in half.items():
        assert torch.equal(v, resumed[k]), k


@pytest.mark.parametrize("epochs, batches, expected", [(1, 4, [0.8536, 0.5, 0.1464, 0.0]), (2, 1, [0.5, 0.0])])
def test_cosine_schedule_falls_to_zero_over_the_stage_batches(epochs: int, batches: int, expected: list) -> None:
    """lr 1 over N = epochs x batches batches: 0.5 (1 + cos(pi k / N)) after batch k = 1..N, whatever the epochs."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    stage = StageConfig("seg", epochs, 1, schedule="cosine")
    scheduler = lr_scheduler(optimizer, stage, batches, higher=True)
    seen = []
    for _ in range(epochs * batches):
        optimizer.step()
        scheduler.step()
        seen.append(optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx(expected, abs=1e-4)


def test_plateau_schedule_drops_after_patience_epochs_without_improvement() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = lr_scheduler(optimizer, StageConfig("seg", 5, 1, patience=1), 10, higher=True)
    lrs = []
    for score in (0.5, 0.4, 0.4):  # best first, then two epochs without improvement: the second drops it
        scheduler.step(score)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([1.0, 1.0, 0.1])


def test_cosine_stage_resumes_where_its_schedule_stopped(smoke_data: Path, tmp_path: Path, one_thread) -> None:
    """The smoke seg stage (2 epochs of 2 batches, lr 1e-2) with the cosine schedule: half the rate after its
    first epoch, 0 at its end; stopped after one epoch and resumed, it ends with the same weights."""
    _, whole, _, (end,) = _seg_stage(smoke_data, tmp_path / "whole", [None], schedule="cosine")
    _, split, _, (half, _) = _seg_stage(smoke_data, tmp_path / "split", [1, None], schedule="cosine")
    assert half["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.5e-2)
    assert end["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    for k, v in whole.items():
        assert torch.equal(v, split[k]), k
