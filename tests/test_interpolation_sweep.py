"""benchmarks/interpolation_sweep.py: where the memory's update gate sits, on a hand-set ConvGRU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from perception import build_model
from perception.data import ClipStore

_spec = importlib.util.spec_from_file_location(
    "interpolation_sweep", Path(__file__).resolve().parents[1] / "benchmarks" / "interpolation_sweep.py"
)
assert _spec is not None and _spec.loader is not None
interpolation_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(interpolation_sweep)


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
