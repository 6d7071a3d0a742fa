"""Where the ONNX Runtime engine's streaming step spends its time: each op type's share and the slowest nodes.

Runs the exported step of a weights folder (default: the bundled `lite` weights) on the CPU with the engine's own
session options and ONNX Runtime's profiler on, over a stream of frames with the recurrent state fed back as
`TemporalPerception` does, and sums the kernel time the profiler gives each node over the steps after the warm-up.
Kernel time only: the Python around the session (making the input array, wrapping the outputs) is not in it, so
the shares are of the graph's time. Op types are ONNX Runtime's after its graph optimisations (fused convolutions,
and the `ReorderInput`/`ReorderOutput` nodes it inserts around ops that cannot run in its blocked NCHWc layout).

    python benchmarks/onnx_profile.py                                  # bundled weights, their size, 200 steps
    python benchmarks/onnx_profile.py --weights runs/v22/weights --size 256x512 --top 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carla_gym.env.perception_source import BUNDLED_WEIGHTS
from perception.onnx_engine import STATE_NAMES, OnnxStep, cpu_session
from perception.portable_paths import portable_path
from perception.provenance import command_line, cpu_description
from perception.streaming import TemporalPerception


def node_times(profile: list[dict[str, Any]], skip_runs: int) -> tuple[dict[str, dict[str, Any]], int]:
    """Kernel microseconds per node summed over the profiled runs after the first `skip_runs`, with each node's op
    type and shapes, and how many runs were summed. `profile` is ONNX Runtime's profiler JSON."""
    runs = sorted(e["ts"] for e in profile if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) <= skip_runs:
        raise ValueError(f"the profile holds {len(runs)} runs, not more than the {skip_runs} to skip")
    start = runs[skip_runs]
    nodes: dict[str, dict[str, Any]] = {}
    for e in profile:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        name = e["name"][: -len("_kernel_time")]
        node = nodes.setdefault(
            name, {"op": e["args"].get("op_name", "?"), "us": 0.0, "inputs": e["args"].get("input_type_shape")}
        )
        node["us"] += float(e["dur"])
    return nodes, len(runs) - skip_runs


def by_op(nodes: dict[str, dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """Milliseconds per step and share of the graph's kernel time per op type, largest first."""
    total = sum(n["us"] for n in nodes.values())
    ops: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for n in nodes.values():
        ops[n["op"]][0] += n["us"]
        ops[n["op"]][1] += 1
    rows = [
        {"op": op, "ms_per_step": us / runs / 1e3, "share": us / total, "nodes": count}
        for op, (us, count) in ops.items()
    ]
    return sorted(rows, key=lambda r: -r["ms_per_step"])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, help="weights folder (default: bundled)")
    p.add_argument("--size", default=None, help="input size HxW (default: the weights' own)")
    p.add_argument("--streams", type=int, default=1, help="streams per step (default 1)")
    p.add_argument("--steps", type=int, default=200, help="profiled steps after the warm-up (default 200)")
    p.add_argument("--warmup", type=int, default=10, help="steps first, left out of the sums (default 10)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--top", type=int, default=12, help="slowest nodes to list (default 12)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if not (args.weights / "config.json").is_file():
        p.error(f"--weights {args.weights}: not a weights folder (no config.json)")
    for name in ("streams", "steps", "warmup", "top"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name} {getattr(args, name)}: too small")
    if args.size is not None:
        parts = args.size.lower().split("x")
        if len(parts) != 2 or not all(v.isdigit() and int(v) > 0 for v in parts):
            p.error(f"--size {args.size}: expected HxW, e.g. 128x256")
        args.size = (int(parts[0]), int(parts[1]))
    return args


def profile_stream(
    weights: Path, size: tuple[int, int] | None, streams: int, steps: int
) -> tuple[list[dict[str, Any]], OnnxStep, tuple[int, int]]:
    """ONNX Runtime's profile of `steps` streaming steps of the exported step of `weights` (at `size`, default the
    weights' own), the state fed back; with the step and its input size."""
    perception = TemporalPerception.from_weights(weights, engine="torch", **({"input_size": size} if size else {}))
    step = OnnxStep(perception.model, perception.input_size, perception.mean, perception.std)  # the engine's cache
    if step.path is None:
        raise SystemExit(f"could not write the export to {step.cache_dir}: nothing to profile")
    with tempfile.TemporaryDirectory() as tmp:
        step.session = cpu_session(step.path, step.threads, profile_prefix=str(Path(tmp) / "profile"))
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (4, streams, 3, *perception.input_size)).astype(np.float32)
        state, first = step.zero_state(streams), np.ones(streams, dtype=bool)
        for i in range(steps):
            out = step.run(frames[i % len(frames)], state, first)
            state, first = {name: out[f"{name}_out"] for name in STATE_NAMES}, np.zeros(streams, dtype=bool)
        profile = json.loads(Path(step.session.end_profiling()).read_text())
    return profile, step, perception.input_size


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    profile, step, (h, w) = profile_stream(args.weights, args.size, args.streams, args.warmup + args.steps)
    nodes, runs = node_times(profile, args.warmup)
    ops = by_op(nodes, runs)
    total_ms = sum(r["ms_per_step"] for r in ops)
    device = f"{cpu_description()}, {step.threads} threads"
    print(f"{device}; {portable_path(args.weights)}, {h}x{w}, {args.streams} stream(s)")
    print(f"graph kernel time {total_ms:.2f} ms per step over {runs} steps\n")
    print(f"{'op type':<24} {'ms/step':>8} {'share':>7} {'nodes':>6}")
    for r in ops:
        print(f"{r['op']:<24} {r['ms_per_step']:8.3f} {r['share']:7.1%} {r['nodes']:6d}")
    slowest = sorted(nodes.items(), key=lambda kv: -kv[1]["us"])[: args.top]
    top = [
        {"node": name, "op": n["op"], "ms_per_step": n["us"] / runs / 1e3, "inputs": n["inputs"]} for name, n in slowest
    ]
    print(f"\nslowest {len(top)} nodes (first input's shape)")
    for t in top:
        first_input = list(t["inputs"][0].values())[0] if t["inputs"] else None
        print(f"{t['ms_per_step']:7.3f} ms  {t['op']:<16} {t['node'][:60]:<60} {first_input}")
    if args.json:
        result = {
            "command": command_line(),
            "device": device,
            "weights": portable_path(args.weights),
            "size": [h, w],
            "streams": args.streams,
            "steps": runs,
            "ms_per_step": total_ms,
            "ops": ops,
            "slowest": top,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
