"""benchmarks/interpolation_sweep.py: where the memory's update gate sits, on a hand-set ConvGRU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from benchmark_scripts import load_benchmark

from perception import build_model
from perception.data import ClipStore
from perception.training import default_config, train

interpolation_sweep = load_benchmark("interpolation_sweep")


@pytest.mark.parametrize("gate_bias", [-10.0, 0.0, 10.0])
def test_memory_gates_of_a_constant_gru(gate_bias: float, smoke_data: Path, one_thread) -> None:
    """With zero kernels the gate is z = sigmoid(gate_bias) and the candidate n = tanh(0.5) everywhere, so from the
    zero state h_t = n (1 - (1 - z)^t) at frame t."""
    model = build_model("lite").eval()
    cell = model.geometry_filter.convgru
    hidden = cell.hidden_channels
    with torch.no_grad():
        for conv in (cell.conv_gates, cell.conv_candidate):
            conv.weight.zero_()
        cell.conv_gates.bias[:hidden] = gate_bias  # the first half of the gates is z
        cell.conv_candidate.bias.fill_(0.5)
    clips = ClipStore(smoke_data).clips(split="val")[:2]
    gates = interpolation_sweep.memory_gates(model, clips)

    z, n = torch.sigmoid(torch.tensor(gate_bias)).item(), torch.tanh(torch.tensor(0.5)).item()
    later = [n * (1 - (1 - z) ** t) for clip in clips for t in range(6, len(clip) + 1)]
    for part, state in (("first_frame", z * n), ("frames_6_on", sum(later) / len(later))):
        assert gates[part]["z_mean"] == pytest.approx(z, abs=1e-6)
        assert gates[part]["z_near_1"] == (1.0 if z > 0.95 else 0.0)
        assert gates[part]["z_near_0"] == (1.0 if z < 0.05 else 0.0)
        assert gates[part]["state_abs_mean"] == pytest.approx(state, rel=1e-4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0,0.5,1", [0.0, 0.5, 1.0]), ("1", [1.0]), ("0,x", "not comma-separated numbers"), ("0,1.5", "in \\[0, 1\\]")],
)
def test_parse_fractions(text: str, expected: list[float] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            interpolation_sweep.parse_fractions(text)
    else:
        assert interpolation_sweep.parse_fractions(text) == expected


def test_val_drives_are_recorded_on_the_validation_town_at_the_recordings_size(
    smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARLA_GYM_CACHE", str(tmp_path))
    clips, drives = interpolation_sweep.validation_recordings(smoke_data, 7, 0, 4)
    own = len(drives)
    assert clips and all(len(c) <= 7 for c in clips) and all(len(d) > 7 for d in drives)
    clips2, drives2 = interpolation_sweep.validation_recordings(smoke_data, 7, 2, 4)
    paths = [c.path for c in clips2 + drives2[:own]]
    assert paths == [c.path for c in clips + drives] and len(drives2) == own + 2
    size = (clips[0].meta.height, clips[0].meta.width)
    assert all((d.meta.split, len(d), (d.meta.height, d.meta.width)) == ("val", 4, size) for d in drives2[own:])


def test_sweep_between_checkpoints_builds_the_runs_own_network(
    smoke_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    """Two checkpoints of a run with `--arch` changes are scored on that run's network, not the bare preset's."""
    cfg = default_config("lite", "smoke")
    cfg.stages = [cfg.stage("seg")]
    cfg.stages[0].epochs = 1
    cfg.architecture = ["seg_skip_names=s8,s4,s2", "seg_decoder_widths=64,48,32,16"]
    train(cfg, smoke_data, tmp_path / "run", device="cpu", log=lambda _: None)
    ckpt = tmp_path / "run" / "checkpoints" / "after_seg.pt"
    out = tmp_path / "sweep.json"
    argv = ["--start", str(ckpt), "--end", str(ckpt), "--data", str(smoke_data), "--fractions", "0"]
    monkeypatch.setattr(sys, "argv", ["interpolation_sweep.py", *argv, "--clip-frames", "7", "--json", str(out)])
    interpolation_sweep.main()
    scores = json.loads(out.read_text())["fractions"]["0"]
    assert 0.0 <= scores["clips"]["per_frame"] <= 1.0 and 0.0 <= scores["drives"]["per_frame"] <= 1.0
