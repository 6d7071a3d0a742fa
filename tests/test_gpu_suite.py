"""benchmarks/gpu_suite.py runs on a CPU with small n (it is prepared here and run where a GPU is lent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_quick_on_cpu_writes_env_and_parity_sections(tmp_path):
    out = tmp_path / "suite.json"
    cache = str(tmp_path / "cache")
    env = {**os.environ, "CARLA_GYM_CACHE": cache, "CARLA_PERCEPTION_GYM_CACHE": cache, "OMP_NUM_THREADS": "1"}
    argv = ["--quick", "--ns", "1", "--steps", "25", "--skip", "egl", "perception", "full"]
    argv += ["--env-perception", "ground_truth", "--out", str(out)]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), *argv], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == {} and "CPUs, " in result["device"]
    (row,) = result["env"]
    assert row["n"] == 1 and row["perception"] == "ground_truth" and row["engine"] == "none"
    assert row["env_steps_per_s"] > 0
    parity = result["parity"]  # the CPU default engine (ONNX Runtime) against float32 PyTorch
    assert parity["frames"] == 20 and parity["engine"] == "onnxruntime" and parity["autocast_dtype"] is None
    assert parity["label_agreement"] >= 0.999 and parity["depth_rel_error_p99"] <= 1e-3
    assert parity["pose_max_abs_m"] <= 1e-4 and abs(parity["miou_default"] - parity["miou_reference"]) < 1e-3
