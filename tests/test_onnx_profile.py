"""benchmarks/onnx_profile.py: ONNX Runtime's profile of the exported step, summed per op type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
onnx_profile = load_benchmark("onnx_profile")


def event(cat: str, name: str, ts: float, dur: float = 0.0, op: str = "") -> dict:
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "args": {"op_name": op, "input_type_shape": []}}


def test_node_times_sum_the_runs_after_the_warmup():
    profile = [
        event("Session", "model_run", 0),
        event("Node", "a_kernel_time", 1, 100.0, "Conv"),  # the warm-up run: left out
        event("Node", "b_kernel_time", 2, 50.0, "Softmax"),
        event("Session", "model_run", 10),
        event("Node", "a_kernel_time", 11, 6.0, "Conv"),
        event("Node", "b_kernel_time", 12, 2.0, "Softmax"),
        event("Node", "b_fence_before", 12, 9.0, "Softmax"),  # not a kernel time
        event("Session", "model_run", 20),
        event("Node", "a_kernel_time", 21, 4.0, "Conv"),
        event("Node", "c_kernel_time", 22, 8.0, "Conv"),
    ]
    nodes, runs = onnx_profile.node_times(profile, skip_runs=1)
    assert runs == 2 and {k: v["us"] for k, v in nodes.items()} == {"a": 10.0, "b": 2.0, "c": 8.0}
    ops = onnx_profile.by_op(nodes, runs)
    assert [(r["op"], r["nodes"]) for r in ops] == [("Conv", 2), ("Softmax", 1)]
    assert ops[0]["ms_per_step"] == pytest.approx(18.0 / 2 / 1e3) and ops[0]["share"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="holds 3 runs"):
        onnx_profile.node_times(profile, skip_runs=3)


def test_profiles_the_bundled_step(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    env = {**os.environ, "CARLA_PERCEPTION_GYM_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        script = str(ROOT / "benchmarks" / "onnx_profile.py")
        return subprocess.run([sys.executable, script, *argv], env=env, capture_output=True, text=True, cwd=ROOT)

    done = run("--size", "64x128", "--steps", "3", "--warmup", "1", "--top", "4", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["size"] == [64, 128] and result["steps"] == 3 and len(result["slowest"]) == 4
    ops = {r["op"]: r for r in result["ops"]}
    assert "Conv" in ops and "Softmax" not in ops  # the export writes its softmax out
    assert sum(r["share"] for r in result["ops"]) == pytest.approx(1.0)
    assert sum(r["ms_per_step"] for r in result["ops"]) == pytest.approx(result["ms_per_step"])
    bad = run("--weights", str(tmp_path))
    assert bad.returncode == 2 and f"--weights {tmp_path}: not a weights folder" in bad.stderr
    bad = run("--size", "64by128")
    assert bad.returncode == 2 and "--size 64by128: expected HxW" in bad.stderr
