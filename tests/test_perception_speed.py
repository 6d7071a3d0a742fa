"""benchmarks/perception_speed.py: both engines, and with --arch the changed network beside the preset, in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_arch_times_the_changed_network_beside_the_preset_on_each_engine(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    cache = str(tmp_path / "cache")
    env = {**os.environ, "CARLA_PERCEPTION_GYM_CACHE": cache, "OMP_NUM_THREADS": "1"}
    arch = ["seg_skip_names=s8,s4", "seg_decoder_widths=64,48,32"]
    argv = ["--sizes", "64x128", "--batches", "1", "--steps", "2", "--warmup", "1", "--arch", *arch, "--json", str(out)]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perception_speed.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["results"]
    assert sorted((r["engine"], tuple(r["arch"])) for r in rows) == [
        ("onnxruntime", ()),
        ("onnxruntime", tuple(arch)),
        ("torch", ()),
        ("torch", tuple(arch)),
    ]
    flops = {tuple(r["arch"]): r["gflops"] for r in rows}
    assert flops[()] > flops[tuple(arch)] > 0  # without the stride-2 decoder stage the head costs less
    assert all(r["frames_per_s"] > 0 for r in rows)
    assert "with --arch / as is" in run.stdout and "onnxruntime / torch" in run.stdout
